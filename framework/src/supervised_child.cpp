#include "shmutils/framework/supervised_child.hpp"

#include <array>
#include <csignal>
#include <cstdlib>
#include <string_view>

#include "shmutils/framework/stack_capture.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX declares it nowhere

namespace shmutils::framework {
namespace {

constexpr const char* kCrashFdVariable = "SHMUTILS_CRASH_FD";
constexpr std::array<int, 5> kCrashSignals{SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

int g_crash_fd = -1;  // a signal handler can reach nothing else

void crash_stop(int signal) {
  const char record = static_cast<char>(signal);
  (void)sys::write_all(g_crash_fd, std::string_view(&record, 1));
  sys::raise_signal(SIGSTOP);  // the supervisor takes this stack, then kills
  // Let go (no supervisor, or it resumed us): die of the signal after all.
  sys::set_signal_handler(signal, SIG_DFL, 0);
  sys::raise_signal(signal);
}

}  // namespace

std::uint64_t mix_seed(std::uint64_t value) noexcept {
  value += 0x9E3779B97F4A7C15ULL;
  value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ULL;
  value = (value ^ (value >> 27)) * 0x94D049BB133111EBULL;
  return value ^ (value >> 31);
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index) noexcept {
  return mix_seed(seed ^ mix_seed(index + 1));
}

void install_crash_stop(int crash_fd) noexcept {
  g_crash_fd = crash_fd;
  for (int signal : kCrashSignals)
    sys::set_signal_handler(signal, &crash_stop, static_cast<int>(SA_RESETHAND | SA_NODEFER));
}

bool supervise_spawned_process() {
  // Called first thing in main, before any thread exists.
  const char* text = std::getenv(kCrashFdVariable);  // NOLINT(concurrency-mt-unsafe)
  if (text == nullptr) return false;
  char* end = nullptr;
  long fd = std::strtol(text, &end, 10);
  // Not for this program's own children: they get a channel of their own.
  (void)::unsetenv(kCrashFdVariable);  // NOLINT(concurrency-mt-unsafe): still single threaded
  if (end == text || *end != '\0' || fd <= 2 || fd > 1 << 20) return false;
  try {
    sys::set_cloexec(static_cast<int>(fd), true, "crash channel");
  } catch (const Error&) {
    return false;  // no such fd: whoever set the variable did not open it
  }
  install_crash_stop(static_cast<int>(fd));
  return true;
}

std::pair<UniqueFd, UniqueFd> SupervisedChild::crash_channel() {
  return sys::pipe(/*nonblocking_read=*/true);
}

SupervisedChild SupervisedChild::fork(const std::function<int()>& body, bool in_new_pid_namespace) {
  auto [crash_read, crash_write] = crash_channel();
  const int crash_fd = crash_write.get();
  auto supervised_body = [&body, crash_fd] {
    install_crash_stop(crash_fd);
    return body();
  };
  ChildProcess process = in_new_pid_namespace
                             ? ChildProcess::fork_in_new_pid_namespace(supervised_body)
                             : ChildProcess::fork(supervised_body);
  return SupervisedChild(std::move(process), std::move(crash_read));
}

SupervisedChild SupervisedChild::spawn(const std::string& path,
                                       const std::vector<std::string>& argv,
                                       const std::vector<std::pair<int, int>>& redirect) {
  auto [crash_read, crash_write] = crash_channel();
  // A number no redirection overwrites in the child, inherited (only) by it.
  int lowest = 3;
  for (const auto& [from, to] : redirect) lowest = std::max(lowest, std::max(from, to) + 1);
  UniqueFd inherited = sys::dup_cloexec(crash_write.get(), "crash channel", lowest);
  sys::set_cloexec(inherited.get(), false, "crash channel");
  std::vector<std::string> environment;
  for (char** variable = environ; *variable != nullptr; ++variable) {
    if (std::string_view(*variable).starts_with(std::string(kCrashFdVariable) + "=")) continue;
    environment.emplace_back(*variable);
  }
  environment.push_back(std::string(kCrashFdVariable) + "=" + std::to_string(inherited.get()));
  ChildProcess process = ChildProcess::spawn(path, argv, &environment, redirect);
  return SupervisedChild(std::move(process), std::move(crash_read));
}

SupervisedChild SupervisedChild::adopt(pid_t pid, UniqueFd crash_read) {
  return SupervisedChild(ChildProcess::adopt(pid), std::move(crash_read));
}

int SupervisedChild::read_crash_record() {
  if (!crash_.valid()) return 0;
  std::string record;
  if (!sys::read_available(crash_.get(), record, 1)) crash_.reset();  // every writer is gone
  return record.empty() ? 0 : static_cast<unsigned char>(record[0]);
}

SupervisedChild::State SupervisedChild::poll() {
  if (state_ == State::Exited || state_ == State::Crashed || state_ == State::Hung) return state_;
  switch (process_.poll()) {
    case ChildProcess::State::Running: state_ = State::Running; break;
    case ChildProcess::State::Ended: state_ = State::Exited; break;
    case ChildProcess::State::Stopped:
      // Written before the stop, so a crash stop always has its record.
      if (int signal = read_crash_record(); signal != 0) {
        crash_signal_ = signal;
        stack_ = capture_stack(process_.pid()).to_string();
        (void)process_.kill();
        state_ = State::Crashed;
      } else {
        state_ = State::Stopped;
      }
      break;
  }
  return state_;
}

SupervisedChild::State SupervisedChild::hang() {
  if (poll() == State::Exited || state_ == State::Crashed) return state_;
  stack_ = capture_stack(process_.pid()).to_string();
  (void)process_.kill();
  state_ = State::Hung;
  return state_;
}

ExitStatus SupervisedChild::kill() {
  ExitStatus status = process_.kill();
  if (state_ == State::Running || state_ == State::Stopped) state_ = State::Exited;
  return status;
}

ExitStatus SupervisedChild::wait() {
  ExitStatus status = process_.wait();
  if (state_ == State::Running || state_ == State::Stopped) state_ = State::Exited;
  return status;
}

}  // namespace shmutils::framework
