// One harness run: starts the workers, kills and stalls them as the plan
// says, checks after every kill and at the end, and reports.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "checker.hpp"
#include "kill_plan.hpp"
#include "shmutils/framework/harness.hpp"
#include "shmutils/framework/supervised_child.hpp"
#include "shmutils/framework/witness.hpp"
#include "shmutils/shm/detail/sys.hpp"

namespace shmutils::framework::detail {

struct LiveWorker {
  std::uint32_t incarnation = 0;
  SupervisedChild process;
  UniqueFd output;
  std::string captured;
  std::uint64_t resume_at_ns = 0;  // stalled until then (0: running)
  bool dying = false;              // SIGKILLed, not yet reaped
  std::string death;               // how it was ended, for the log
};

constexpr std::size_t kOutputKept = 16 << 10;
constexpr std::size_t kViolationsKept = 50;

class Run {
 public:
  Run(Scenario& scenario, const RunOptions& options, const Harness::ProgressCallback& progress)
      : scenario_(scenario), options_(options), progress_(progress), plan_(options_) {}

  RunReport execute();

 private:
  void prepare();
  void run_loop();
  void conclude();
  double now_s() const { return static_cast<double>(sys::monotonic_ns() - start_ns_) / 1e9; }
  void event(std::uint32_t incarnation, EventKind kind, std::string detail = {}) {
    report_.events.push_back({now_s(), incarnation, kind, std::move(detail)});
  }
  void violation(std::string text) {
    if (report_.violations.size() < kViolationsKept) {
      event(0, EventKind::Violation, text);
      report_.violations.push_back(std::move(text));
    }
  }
  void start_worker();
  SupervisedChild start_process(std::uint32_t incarnation, int output_fd);
  void drain_output(LiveWorker& worker);
  void kill_worker(std::size_t index, EventKind why, const std::string& detail, bool keep_stack);
  void log_end(LiveWorker& worker, std::string end);
  void after_kill();
  // Scenario::check in the checker process, within the watchdog's bound.
  void run_check(bool final);
  // Who a lock's holder is to this run: a worker (alive, stopped, or dead:
  // how and when), the checker, or another process.
  std::string holder_state(const LockHolder& holder) const;
  void handle_crash(std::size_t index);
  void kill_at_point(std::size_t index, bool keep_stack);
  bool reap_or_keep(std::size_t index);  // false when the worker was removed
  void poll_workers();
  void scheduled_actions();
  void end_due_stalls(std::uint64_t now);
  void kill_when_due(std::uint64_t now);
  bool watchdog();
  void finish();
  void kill_all(const std::string& why);
  void resume_all();
  std::size_t dying_count() const;
  void top_up();
  std::string lock_report();
  // Whether `holder` (as a lock records it, in the holder's namespace) is
  // this worker.
  bool holds(const LiveWorker& worker, const LockHolder& holder) const;
  // Whether a stopped worker stopped itself at its planned fault point.
  bool stopped_at_point(const LiveWorker& worker) const;
  // Attached and running its scenario (not starting, stopped at a point or done).
  bool at_work(const LiveWorker& worker) const;
  std::string all_stacks_and_holders();
  void sample_lock_holds(bool final);

  struct OpenHold {
    pid_t pid = 0;
    std::uint32_t incarnation = 0;
    double since_s = 0;
  };
  std::map<std::string, OpenHold> open_holds_;

  Scenario& scenario_;
  RunOptions options_;
  const Harness::ProgressCallback& progress_;
  KillPlan plan_;
  RunReport report_;
  Segment witness_segment_;
  Witness* witness_ = nullptr;
  Segment segment_;
  std::vector<LiveWorker> live_;
  std::optional<Checker> checker_;
  std::uint32_t next_incarnation_ = 0;
  std::uint64_t start_ns_ = 0;
  std::uint64_t next_kill_ns_ = 0;
  std::uint64_t next_stall_ns_ = 0;
  std::uint64_t last_operations_ = 0;
  std::uint64_t last_progress_ns_ = 0;
  std::uint64_t progress_reported_ns_ = 0;
  bool hung_ = false;
  bool crashed_ = false;
  bool cannot_start_ = false;       // a worker exited 64: replacements would too
  bool use_zygote_ = false;         // fork mode from a threaded caller
  std::string worker_program_;      // spawn mode
  std::string witness_descriptor_;  // spawn and zygote: inheritable descriptors
  std::string segment_descriptor_;
};

}  // namespace shmutils::framework::detail
