// shmutils::framework::SupervisedChild — a child process watched the one way
// every part of shmutils watches its children: the harness its workers, the
// fixtures a test's children, the properties their worker pool.
//
// Contract
//   Crash:       a supervised process that receives SIGSEGV, SIGBUS, SIGFPE,
//                SIGILL or SIGABRT writes the signal to its crash channel and
//                stops itself; poll() then takes the stack of the faulting
//                frame, kills it and reports Crashed (crash_signal(), stack()).
//   Start:       fork() installs the crash stop before `body` runs (in a PID
//                namespace of its own when asked: pid_namespace.hpp says when
//                that is permitted); a spawned program calls
//                supervise_spawned_process() first thing (child_main and
//                run_spawned_worker do); adopt() takes a child forked
//                elsewhere (the zygote's) that installed the crash stop itself
//                on the write end of crash_channel().
//   Polling:     poll() is non-blocking: Running; Stopped by anything but a
//                crash (a stall, a planned stop at a fault point: the caller
//                decides what it means); Exited (status(): an exit or a death
//                by signal); Crashed. hang() takes the stack of a child that
//                is still running and kills it: Hung. Crashed, Exited and Hung
//                are final.
//   Seeds:       derive_seed(seed, index) is how a child's seed is made from
//                its parent's: distinct, well mixed, replayable.
//   Lives:       as ChildProcess: the destructor kills and reaps a child
//                still running; a child dies with its parent.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/unique_fd.hpp"

namespace shmutils::framework {

// splitmix64: a well-mixed 64-bit value from any input.
std::uint64_t mix_seed(std::uint64_t value) noexcept;
// The seed of child `index` of a parent whose seed is `seed`.
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index) noexcept;

// In a supervised process: on a crash, write the signal to crash_fd and stop.
void install_crash_stop(int crash_fd) noexcept;
// In a program started by SupervisedChild::spawn: installs the crash stop on
// the channel its environment names. False when it was not started so.
bool supervise_spawned_process();

class SupervisedChild {
 public:
  enum class State { Running, Stopped, Exited, Crashed, Hung };

  static SupervisedChild fork(const std::function<int()>& body, bool in_new_pid_namespace = false);
  static SupervisedChild spawn(const std::string& path, const std::vector<std::string>& argv,
                               const std::vector<std::pair<int, int>>& redirect = {});
  // A crash channel for a child forked elsewhere: {read end (non-blocking),
  // write end (for the child's install_crash_stop)}.
  static std::pair<UniqueFd, UniqueFd> crash_channel();
  static SupervisedChild adopt(pid_t pid, UniqueFd crash_read);

  SupervisedChild() = default;

  State poll();
  State hang();

  pid_t pid() const noexcept { return process_.pid(); }
  bool running() const noexcept { return process_.running(); }
  bool signal(int signal) { return process_.signal(signal); }
  // SIGKILL and reap (a child that already ended: its status).
  ExitStatus kill();
  ExitStatus wait();
  int crash_signal() const noexcept { return crash_signal_; }
  const std::string& stack() const noexcept { return stack_; }
  const std::optional<ExitStatus>& status() const noexcept { return process_.status(); }

 private:
  SupervisedChild(ChildProcess process, UniqueFd crash_read)
      : process_(std::move(process)), crash_(std::move(crash_read)) {}
  // The signal a crash record names, or 0 when none has arrived.
  int read_crash_record();

  ChildProcess process_;
  UniqueFd crash_;
  State state_ = State::Running;
  int crash_signal_ = 0;
  std::string stack_;
};

}  // namespace shmutils::framework
