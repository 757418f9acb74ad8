#include "shmutils/framework/zygote.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <cstdio>
#include <mutex>

#include "shmutils/framework/supervised_child.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "worker_main.hpp"
#include "zygote_request.hpp"

namespace shmutils::framework {

namespace {

struct ZygoteHandle {
  pid_t pid = 0;
  UniqueFd socket;
  std::mutex mutex;  // one request at a time
};

ZygoteHandle& handle() {
  static ZygoteHandle zygote;
  return zygote;
}

std::string join(const std::vector<std::string>& args) {
  std::string text;
  for (const std::string& a : args) text += a + "\n";
  return text;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> args;
  std::string current;
  for (char c : text) {
    if (c == '\n') {
      args.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  return args;
}

// The zygote's loop: one worker per request, until the harness goes away.
[[noreturn]] void serve(int socket, pid_t harness, const ScenarioFactory& make) {
  for (;;) {
    sys::ReceivedFds request;
    try {
      request = sys::receive_with_fds(socket, 64 << 10);
    } catch (const Error&) {
      sys::exit_now(0);  // the harness closed its end: it is gone
    }
    if (request.fds.size() != 4) sys::exit_now(3);
    auto [report_read, report_write] = sys::pipe();
    pid_t middle = sys::fork("zygote worker");
    if (middle == 0) {
      // The intermediate forks the worker and exits, so that the worker is
      // orphaned and handed to the harness (a child subreaper).
      pid_t worker = sys::fork("worker");
      if (worker == 0) {
        // Handed to the harness once the intermediate has exited: that can
        // take seconds on a loaded machine, so wait as long as the harness
        // lives (two minutes at most), not a fixed few seconds.
        std::uint64_t until = sys::monotonic_ns() + 120'000'000'000ULL;
        while (sys::getppid() != harness && sys::monotonic_ns() < until &&
               sys::process_state(harness) != sys::ProcessState::Gone)
          sys::sleep_ns(100'000);
        sys::set_parent_death_signal(SIGKILL);
        if (sys::getppid() != harness) sys::exit_now(71);  // the harness is gone already
        sys::dup2(request.fds[2].get(), STDOUT_FILENO);
        sys::dup2(request.fds[2].get(), STDERR_FILENO);
        install_crash_stop(request.fds[3].release());
        int status = 64;
        try {
          status = detail::run_worker_from_arguments(
              detail::WorkerArguments::from_strings(split(request.message)), make,
              request.fds[0].get(), request.fds[1].get());
        } catch (const Error& e) {
          (void)std::fprintf(stderr, "shmutils worker: %s\n", e.what());
        }
        (void)std::fflush(nullptr);
        sys::exit_now(status);
      }
      (void)sys::write_all(report_write.get(),
                           {reinterpret_cast<const char*>(&worker), sizeof worker});
      sys::exit_now(0);
    }
    report_write.reset();
    pid_t worker = -1;
    if (!sys::read_exact(report_read.get(), std::as_writable_bytes(std::span(&worker, 1)))) {
      worker = -1;  // the intermediate died before telling: the harness hears "could not fork"
    }
    (void)sys::wait(middle);
    std::string reply = std::to_string(worker);
    if (!sys::write_all(socket, reply)) sys::exit_now(0);  // the harness is gone
  }
}

}  // namespace

void start_zygote(const ScenarioFactory& factory) {
  ZygoteHandle& zygote = handle();
  if (zygote.pid != 0) return;
  auto [ours, theirs] = sys::socket_pair();
  pid_t harness = sys::getpid();
  pid_t pid = sys::fork("zygote");
  if (pid == 0) {
    sys::set_parent_death_signal(SIGKILL);
    if (sys::getppid() != harness) sys::exit_now(0);
    ours.reset();
    serve(theirs.get(), harness, factory);
  }
  zygote.pid = pid;
  zygote.socket = std::move(ours);
}

bool zygote_started() noexcept { return handle().pid != 0; }
pid_t zygote_pid() noexcept { return handle().pid; }

namespace detail {

pid_t zygote_fork_worker(const WorkerArguments& arguments, int witness_fd, int segment_fd,
                         int output_fd, int crash_fd) {
  ZygoteHandle& zygote = handle();
  std::lock_guard lock(zygote.mutex);
  sys::send_with_fds(zygote.socket.get(), join(arguments.to_strings()),
                     {witness_fd, segment_fd, output_fd, crash_fd});
  char reply[32] = {};
  const std::size_t n = sys::read_some(zygote.socket.get(),
                                       std::as_writable_bytes(std::span(reply, sizeof reply - 1)));
  if (n == 0) throw Error(ErrorKind::ProcessGone, "zygote", "fork worker", "the zygote is gone");
  pid_t pid = static_cast<pid_t>(std::strtol(reply, nullptr, 10));
  if (pid <= 0)
    throw Error(ErrorKind::System, "zygote", "fork worker", "the zygote could not fork");
  return pid;
}

}  // namespace detail

}  // namespace shmutils::framework
