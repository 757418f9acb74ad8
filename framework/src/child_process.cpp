#include "shmutils/framework/child_process.hpp"

#include <unistd.h>

#include <array>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"

namespace shmutils::framework {

ChildProcess ChildProcess::fork(const std::function<int()>& body) {
  pid_t parent = sys::getpid();
  // Unflushed stdio buffers would otherwise be written twice: by the child too.
  (void)std::fflush(nullptr);
  pid_t pid = sys::fork("child process");
  if (pid == 0) {
    int code = 70;
    try {
      sys::set_parent_death_signal(SIGKILL);
      // The parent may have died before prctl took effect.
      if (sys::getppid() != parent) sys::exit_now(71);
      code = body();
    } catch (const std::exception& e) {
      (void)std::fprintf(stderr, "child %d: uncaught exception: %s\n",
                         static_cast<int>(sys::getpid()), e.what());
    } catch (...) {
      (void)std::fprintf(stderr, "child %d: uncaught non-standard exception\n",
                         static_cast<int>(sys::getpid()));
    }
    (void)std::fflush(stdout);
    (void)std::fflush(stderr);
    sys::exit_now(code);  // no atexit handlers or static destructors of the parent's image
  }
  return ChildProcess(pid);
}

namespace {

// How a process ended, as an exit code a parent can pass on (128 + signal
// for a death by signal, as shells do).
int code_of(const sys::ExitStatus& status) {
  return status.exited ? status.exit_code : 128 + status.signal;
}

// Ends this process as `status` says: by the same signal where it can.
[[noreturn]] void end_as(const sys::ExitStatus& status) {
  if (!status.exited && status.signal != 0) {
    sys::set_signal_handler(status.signal, SIG_DFL, 0);
    sys::raise_signal(status.signal);
  }
  sys::exit_now(code_of(status));
}

}  // namespace

ChildProcess ChildProcess::fork_in_new_pid_namespace(const std::function<int()>& body) {
  auto [read_end, write_end] = sys::pipe(/*nonblocking_read=*/true);
  const int report = write_end.get();
  // The body starts only once we know its pid: a short body would otherwise
  // end, and take its namespace with it, before we could find it in /proc.
  std::pair<UniqueFd, UniqueFd> go_pipe = sys::pipe();
  UniqueFd& go_read = go_pipe.first;
  UniqueFd& go_write = go_pipe.second;
  // The carrier: unshares, forks the namespace's init, tells us its pid,
  // then ends as the body ended.
  ChildProcess carrier = fork([&body, report, &go_read, &go_write]() -> int {
    go_write.reset();
    if (int err = sys::unshare_pid_namespace(); err != 0) {
      std::fprintf(stderr, "%s\n",
                   Error(ErrorKind::System, "pid namespace", "unshare", "", err).what());
      return 72;
    }
    pid_t init = sys::fork("pid namespace init");
    if (init == 0) {
      // (Its parent is outside the namespace: getppid() is 0 here, so the
      // carrier cannot be checked; it outlives us unless this run ends.)
      sys::set_parent_death_signal(SIGKILL);
      // pid 1 here: a signal it sends itself is ignored, so the body runs in
      // a child of it, where self-stops and crashes behave as anywhere.
      ChildProcess worker = fork([&body, &go_read] {
        std::array<std::byte, 1> byte{};
        if (!sys::read_exact(go_read.get(), byte)) return 72;  // the caller gave up on us
        go_read.reset();
        return body();
      });
      go_read.reset();
      ExitStatus status = worker.wait();
      sys::exit_now(code_of(status));  // init cannot raise a signal on itself
    }
    (void)sys::write_all(report, std::to_string(init) + "\n");
    ExitStatus status = sys::wait(init);
    // The init passes a death by signal on as 128 + signal.
    if (status.exited && status.exit_code > 128 && status.exit_code < 128 + 65) {
      status = ExitStatus{false, 0, status.exit_code - 128};
    }
    end_as(status);
  });
  write_end.reset();
  go_read.reset();
  // The init's pid, then the body's: the init's only child, listed in /proc.
  // (The pipe stays open in the carrier: the line's end ends the message.)
  std::string init_text;
  const std::uint64_t deadline = sys::monotonic_ns() + 10'000'000'000ULL;
  while (init_text.find('\n') == std::string::npos && sys::monotonic_ns() < deadline) {
    if (sys::wait_readable(read_end.get(), 100) &&
        !sys::read_available(read_end.get(), init_text, 64)) {
      break;  // the carrier ended without a word
    }
  }
  pid_t init = static_cast<pid_t>(std::strtol(init_text.c_str(), nullptr, 10));
  pid_t body_pid = 0;
  while (init > 0 && body_pid == 0 && sys::monotonic_ns() < deadline) {
    std::vector<pid_t> children = sys::child_pids(init);
    if (!children.empty()) body_pid = children.front();
    if (body_pid == 0) {
      if (carrier.poll() == State::Ended) break;
      sys::sleep_ns(200'000);
    }
  }
  if (body_pid == 0) {
    ExitStatus status = carrier.kill();
    throw Error(ErrorKind::System, "pid namespace", "fork",
                "its process did not start (" + status.to_string() + ")");
  }
  (void)sys::write_all(go_write.get(), "g");
  pid_t carrier_pid = std::exchange(carrier.pid_, -1);
  carrier.wait_pid_ = -1;
  return ChildProcess(body_pid, carrier_pid);
}

ChildProcess ChildProcess::spawn(const std::string& path, const std::vector<std::string>& argv,
                                 const std::vector<std::string>* environment,
                                 const std::vector<std::pair<int, int>>& redirect) {
  return ChildProcess(sys::spawn(path, argv, environment, redirect));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      wait_pid_(std::exchange(other.wait_pid_, -1)),
      status_(other.status_) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (running()) {
      try {
        kill();
      } catch (...) {
      }
    }
    pid_ = std::exchange(other.pid_, -1);
    wait_pid_ = std::exchange(other.wait_pid_, -1);
    status_ = other.status_;
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (running()) {
    try {
      kill();
    } catch (...) {  // a destructor must not throw; the child is gone or unreapable
    }
  }
}

bool ChildProcess::signal(int signal) {
  if (!running()) return false;
  return sys::kill(pid_, signal);
}

std::optional<ExitStatus> ChildProcess::wait_for(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  std::uint64_t deadline =
      sys::monotonic_ns() + static_cast<std::uint64_t>(timeout.count()) * 1'000'000ULL;
  std::uint64_t pause_ns = 50'000;
  for (;;) {
    if (auto status = sys::wait_nohang(wait_pid_)) {
      status_ = status;
      return status_;
    }
    std::uint64_t now = sys::monotonic_ns();
    if (now >= deadline) return std::nullopt;
    sys::sleep_ns(std::min(pause_ns, deadline - now));
    pause_ns = std::min<std::uint64_t>(pause_ns * 2, 10'000'000);
  }
}

ExitStatus ChildProcess::wait() {
  if (!status_) status_ = sys::wait(wait_pid_);
  return *status_;
}

ChildProcess::State ChildProcess::poll(int* stop_signal) {
  if (status_) return State::Ended;
  if (wait_pid_ != pid_) {
    // Namespaced: the body is not our child; its stops show in /proc.
    if (auto status = sys::wait_nohang(wait_pid_)) {
      status_ = status;
      return State::Ended;
    }
    if (sys::process_state(pid_) != sys::ProcessState::Stopped) return State::Running;
    if (stop_signal != nullptr) *stop_signal = SIGSTOP;
    return State::Stopped;
  }
  auto state = sys::wait_nohang_or_stopped(pid_);
  if (!state) return State::Running;
  if (state->stopped) {
    if (stop_signal != nullptr) *stop_signal = state->stop_signal;
    return State::Stopped;
  }
  status_ = state->status;
  return State::Ended;
}

ExitStatus ChildProcess::kill() {
  if (status_) return *status_;
  sys::kill(pid_, SIGKILL);
  return wait();
}

}  // namespace shmutils::framework
