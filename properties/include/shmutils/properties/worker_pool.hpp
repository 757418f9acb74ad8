// shmutils::properties::WorkerPool — the worker processes of a state-machine
// case: each runs the tasks it is sent against its own mapping of the case's
// segment, and can be killed at a chosen fault-point hit of a task.
//
// Contract
//   Lives:       in the process that runs a case (single-threaded: the
//                crash-proof runner's child). Workers are forked on first
//                use and after each death; each maps the segment at a random
//                address and guards the inherited range (address
//                perturbation), and dies with its owner (PR_SET_PDEATHSIG).
//   Tasks:       a task is an object that exists before the pool forks (a
//                command of the case); its address is what is sent, so it
//                must outlive the pool and never move.
//   Kill:        with kill_at_hit = k > 0 the worker SIGKILLs itself at the
//                k-th fault point it reaches during the task (any point: the
//                structure's own, or shmutils' locks and heap); a task that
//                ends before that hit returns normally and the worker is
//                then killed by the pool.
//   Outcome:     Done (the task's reply bytes), Failed (an exception's
//                message), Killed (at which point and hit), Crashed (signal
//                and stack) or Hung (still running at the deadline: stack).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shmutils/framework/supervised_child.hpp"
#include "shmutils/shm/segment.hpp"
#include "shmutils/shm/unique_fd.hpp"

namespace shmutils::properties {

class RemoteTask {
 public:
  virtual ~RemoteTask() = default;
  // Runs in a worker; the reply is returned to the pool's caller.
  virtual std::string execute(Segment& segment, unsigned worker) const = 0;
};

struct TaskOutcome {
  enum class Kind { Done, Failed, Killed, Crashed, Hung } kind = Kind::Done;
  std::string reply;  // Done: the task's bytes; Failed: the message
  std::string point;  // Killed: the fault point it died at
  std::string stack;  // Crashed, Hung
  int signal = 0;     // Crashed
};

class WorkerPool {
 public:
  WorkerPool(Segment& segment, std::uint64_t seed, std::chrono::milliseconds task_deadline);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  TaskOutcome run(unsigned worker, const RemoteTask& task, std::uint64_t kill_at_hit = 0);
  // SIGKILLs the worker (if it runs) and waits for it.
  void kill(unsigned worker);

 private:
  struct Worker {
    framework::SupervisedChild process;
    UniqueFd requests;  // write end
    UniqueFd replies;   // read end
  };
  Worker& ensure(unsigned worker);
  std::optional<TaskOutcome> await_reply(Worker& slot);

  Segment& segment_;
  std::uint64_t seed_;
  std::chrono::milliseconds task_deadline_;
  std::uint64_t forks_ = 0;
  std::vector<Worker> workers_;
};

}  // namespace shmutils::properties
