// shmutils::framework::ChildProcess — the one owner of a child process.
//
// Contract
//   Lives:       process-local, move-only. The destructor SIGKILLs and reaps a
//                child still running, so no child outlives its owner; a forked
//                child also gets PR_SET_PDEATHSIG=SIGKILL, so it dies when the
//                parent dies, even by SIGKILL.
//   Fork:        the child runs `body` and _exit()s with its return value (an
//                exception escaping it prints what() and exits 70). Fork from a
//                process with threads only when `body` is async-signal-safe
//                enough (no locks other threads may hold).
//   Deadline:    wait_for() returns nullopt when the child is still running
//                at the deadline; the caller decides to kill and report.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "shmutils/shm/exit_status.hpp"

namespace shmutils::framework {

using ExitStatus = shmutils::ExitStatus;

class ChildProcess {
 public:
  static ChildProcess fork(const std::function<int()>& body);
  // Forks a child that runs body in a new PID namespace of its own, as a
  // process of a container would (pid_namespace.hpp says when it is
  // permitted). pid() is the body's process as this namespace numbers it
  // (signals, ptrace, stop detection through /proc); its end is reported as
  // the body's own, carried by the two processes that hold the namespace: a
  // carrier here, and the namespace's init, whose only child the body is.
  static ChildProcess fork_in_new_pid_namespace(const std::function<int()>& body);
  // Exec's `path`; `redirect` maps fds of this process onto the child's
  // (e.g. {pipe, 1}). The child should set its own PR_SET_PDEATHSIG (posix_spawn
  // cannot): run_spawned_worker does.
  static ChildProcess spawn(const std::string& path, const std::vector<std::string>& argv,
                            const std::vector<std::string>* environment = nullptr,
                            const std::vector<std::pair<int, int>>& redirect = {});

  // Takes ownership of a child this process did not fork itself (one handed
  // to it as a child subreaper: the zygote's workers).
  static ChildProcess adopt(pid_t pid) noexcept { return ChildProcess(pid); }

  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const noexcept { return pid_; }
  bool running() const noexcept { return pid_ > 0 && !status_; }

  // Sends a signal; false when the child already ended.
  bool signal(int signal);
  // Waits until the child ends or the timeout passes (nullopt).
  std::optional<ExitStatus> wait_for(std::chrono::milliseconds timeout);
  ExitStatus wait();
  // SIGKILL and reap.
  ExitStatus kill();

  // Non-blocking look that also reports stops (SIGSTOP, a self-stop):
  // Running, Stopped (stop_signal set) or Ended (status() set).
  enum class State { Running, Stopped, Ended };
  State poll(int* stop_signal = nullptr);
  // The status once reaped.
  const std::optional<ExitStatus>& status() const noexcept { return status_; }

 private:
  explicit ChildProcess(pid_t pid) noexcept : pid_(pid), wait_pid_(pid) {}
  ChildProcess(pid_t pid, pid_t wait_pid) noexcept : pid_(pid), wait_pid_(wait_pid) {}
  pid_t pid_ = -1;
  pid_t wait_pid_ = -1;  // the child this process waits for (pid_ unless namespaced)
  std::optional<ExitStatus> status_;
};

}  // namespace shmutils::framework
