#include "shmutils/framework/harness.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <map>
#include <new>
#include <optional>
#include <random>
#include <sstream>

#include "shmutils/framework/address_perturbation.hpp"
#include "shmutils/framework/child_process.hpp"
#include "shmutils/framework/pid_namespace.hpp"
#include "shmutils/framework/zygote.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/sys.hpp"

namespace shmutils::framework {

std::string_view to_string(EventKind kind) {
  switch (kind) {
    case EventKind::Start: return "start";
    case EventKind::Exit: return "exit";
    case EventKind::KillRandom: return "kill (random time)";
    case EventKind::KillHolder: return "kill (lock holder)";
    case EventKind::KillAtPoint: return "kill (fault point)";
    case EventKind::Crash: return "crash";
    case EventKind::Stall: return "stall";
    case EventKind::Resume: return "resume";
    case EventKind::Recovery: return "recovery";
    case EventKind::Violation: return "violation";
    case EventKind::Hang: return "hang";
  }
  return "?";
}

// ---------------------------------------------------------------- worker side

namespace {

// Set in each worker process before its hook is installed; the hook is a
// plain function pointer, so its state lives here.
Witness* g_witness = nullptr;
WorkerRecord* g_record = nullptr;
std::array<const FaultPoint*, Witness::kMaxPoints> g_points{};
std::int32_t g_point_count = 0;
std::int32_t g_planned_point = -1;
std::uint64_t g_planned_hit = 0;

FaultAction worker_fault_hook(const FaultPoint& point, std::uint64_t hit) {
  for (std::int32_t i = 0; i < g_point_count; ++i) {
    if (g_points[static_cast<std::size_t>(i)] != &point) continue;
    g_witness->hits(i).fetch_add(1, std::memory_order_relaxed);
    if (i == g_planned_point && hit == g_planned_hit) {
      g_record->stopped_at_point.store(i, std::memory_order_relaxed);
      g_record->state.store(static_cast<std::uint32_t>(WorkerState::StoppedAtFaultPoint),
                            std::memory_order_release);
      sys::raise_signal(SIGSTOP);  // the harness captures the stack here, then kills
    }
    break;
  }
  return FaultAction::Continue;
}

void crash_handler(int signal) {
  if (g_record != nullptr) {
    g_record->crash_signal.store(signal, std::memory_order_relaxed);
    g_record->state.store(static_cast<std::uint32_t>(WorkerState::Crashed),
                          std::memory_order_release);
    sys::raise_signal(SIGSTOP);  // the harness captures the stack of the faulting frame
  }
  sys::set_signal_handler(signal, SIG_DFL, 0);
  sys::raise_signal(signal);
}

void install_crash_handlers() {
  for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT})
    sys::set_signal_handler(signal, &crash_handler, static_cast<int>(SA_RESETHAND | SA_NODEFER));
}

std::uint64_t worker_seed(std::uint64_t seed, std::uint32_t incarnation) {
  return seed ^ (0x9E3779B97F4A7C15ULL * (incarnation + 1));
}

// Everything a worker does once its segment is attached, in either mode.
int run_worker(Scenario& scenario, Segment& segment, Witness& witness, std::uint32_t incarnation,
               std::uint64_t seed, int nice) {
  // Workers run at a lower priority than the harness: with more busy workers
  // than cores, the harness would otherwise wait a scheduler slice for every
  // kill, reap and check, and the kill rate would be the scheduler's.
  (void)::setpriority(PRIO_PROCESS, 0, nice);
  WorkerRecord& record = witness.worker(incarnation);
  g_witness = &witness;
  g_record = &record;
  install_crash_handlers();
  record.mapped_base.store(reinterpret_cast<std::uintptr_t>(segment.base()));
  record.pid_namespace.store(sys::pid_namespace_id(), std::memory_order_relaxed);
  record.own_pid.store(sys::getpid(), std::memory_order_release);
  g_point_count = 0;
  for (std::uint32_t i = 0; i < witness.point_count(); ++i) {
    FaultPoint* point = find_fault_point(witness.point_name(static_cast<std::int32_t>(i)));
    if (point != nullptr) point->reset_hits();
    g_points[i] = point;
    g_point_count = static_cast<std::int32_t>(i + 1);
  }
  g_planned_point = record.planned_point.load();
  g_planned_hit = record.planned_hit.load();
  record.state.store(static_cast<std::uint32_t>(WorkerState::Running), std::memory_order_release);
  set_fault_hook(&worker_fault_hook);
  WorkerContext context(segment, witness, incarnation, seed);
  scenario.work(context);
  set_fault_hook(nullptr);
  record.state.store(static_cast<std::uint32_t>(WorkerState::Finished), std::memory_order_release);
  return 0;
}

int fork_worker_main(Scenario& scenario, Segment& inherited, Witness& witness,
                     std::uint32_t incarnation, const RunOptions& options, int output_fd) {
  sys::dup2(output_fd, STDOUT_FILENO);
  sys::dup2(output_fd, STDERR_FILENO);
  std::uint64_t seed = worker_seed(options.seed, incarnation);
  std::mt19937_64 random(seed);
  if (!options.perturb) {
    return run_worker(scenario, inherited, witness, incarnation, seed, options.worker_nice);
  }
  Segment perturbed = attach_perturbed(inherited, random);
  return run_worker(scenario, perturbed, witness, incarnation, seed, options.worker_nice);
}

constexpr std::string_view kWorkerFlag = "--shmutils-worker";

std::string self_program() { return sys::self_executable(); }

// ---------------------------------------------------------------- harness side

struct LiveWorker {
  std::uint32_t incarnation = 0;
  ChildProcess process;
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
      : scenario_(scenario), options_(options), progress_(progress), random_(options.seed) {}

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
  void drain_output(LiveWorker& worker);
  void kill_worker(std::size_t index, EventKind why, const std::string& detail, bool keep_stack);
  void log_end(LiveWorker& worker, std::string end);
  void after_kill();
  void handle_crash(std::size_t index);
  bool reap_or_keep(std::size_t index);  // false when the worker was removed
  void poll_workers();
  void scheduled_actions();
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
  std::mt19937_64 random_;
  RunReport report_;
  Segment witness_segment_;
  Witness* witness_ = nullptr;
  Segment segment_;
  std::vector<LiveWorker> live_;
  std::uint32_t next_incarnation_ = 0;
  std::uint64_t start_ns_ = 0;
  std::uint64_t next_kill_ns_ = 0;
  std::uint64_t next_stall_ns_ = 0;
  std::uint64_t last_operations_ = 0;
  std::uint64_t last_progress_ns_ = 0;
  std::uint64_t progress_reported_ns_ = 0;
  bool hung_ = false;
  bool crashed_ = false;
  bool use_zygote_ = false;         // fork mode from a threaded caller
  std::string worker_program_;      // spawn mode
  std::string witness_descriptor_;  // spawn mode: inheritable descriptors
  std::string segment_descriptor_;
};

std::uint64_t exponential_ns(std::mt19937_64& random, double per_s) {
  if (per_s <= 0) return UINT64_MAX / 2;
  double seconds = std::exponential_distribution<double>(per_s)(random);
  return static_cast<std::uint64_t>(seconds * 1e9);
}

void Run::start_worker() {
  std::uint32_t incarnation = next_incarnation_++;
  if (incarnation >= Witness::kMaxWorkers) {
    throw Error(ErrorKind::NoSpace, "harness", "start worker",
                "more than " + std::to_string(Witness::kMaxWorkers) + " worker incarnations");
  }
  WorkerRecord& record = witness_->worker(incarnation);
  record.planned_point.store(-1);
  if (witness_->point_count() > 0 &&
      std::uniform_real_distribution<double>(0, 1)(random_) < options_.point_death_share) {
    record.planned_point.store(static_cast<std::int32_t>(
        std::uniform_int_distribution<std::uint32_t>(0, witness_->point_count() - 1)(random_)));
    record.planned_hit.store(std::uniform_int_distribution<std::uint64_t>(
        1, std::max<std::uint64_t>(1, options_.max_planned_hit))(random_));
  }
  record.stopped_at_point.store(-1);
  record.state.store(static_cast<std::uint32_t>(WorkerState::Starting));
  record.started_ns.store(sys::monotonic_ns());
  witness_->scenario(kIncarnations).store(next_incarnation_);
  auto [read_end, write_end] = sys::pipe(/*nonblocking_read=*/true);
  Scenario& scenario = scenario_;
  Segment& segment = segment_;
  Witness& witness = *witness_;
  const RunOptions& options = options_;
  int out = write_end.get();
  LiveWorker worker;
  worker.incarnation = incarnation;
  if (options_.mode == WorkerMode::Spawn || use_zygote_) {
    char base[32];
    std::snprintf(
        base, sizeof base, "%llx",
        static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(segment_.base())));
    std::vector<std::string> args{std::string(scenario_.name()),
                                  std::to_string(incarnation),
                                  std::to_string(options_.seed),
                                  options_.perturb ? "1" : "0",
                                  std::to_string(options_.worker_nice),
                                  witness_descriptor_,
                                  segment_descriptor_,
                                  base,
                                  std::to_string(segment_.mapped_size())};
    if (use_zygote_) {
      worker.process = ChildProcess::adopt(
          detail::zygote_fork_worker(args, witness_segment_.fd(), segment_.fd(), out));
    } else {
      std::vector<std::string> argv{worker_program_, std::string(kWorkerFlag)};
      argv.insert(argv.end(), args.begin(), args.end());
      worker.process = ChildProcess::spawn(worker_program_, argv, nullptr, {{out, 1}, {out, 2}});
    }
  } else {
    auto body = [&scenario, &segment, &witness, incarnation, &options, out] {
      return fork_worker_main(scenario, segment, witness, incarnation, options, out);
    };
    worker.process = options_.pid_namespaces ? ChildProcess::fork_in_new_pid_namespace(body)
                                             : ChildProcess::fork(body);
  }
  record.pid.store(worker.process.pid());
  worker.output = std::move(read_end);
  event(incarnation, EventKind::Start, "pid " + std::to_string(worker.process.pid()));
  live_.push_back(std::move(worker));
}

void Run::drain_output(LiveWorker& worker) {
  if (worker.output.valid() &&
      !sys::read_available(worker.output.get(), worker.captured, kOutputKept)) {
    worker.output.reset();  // end of file: the worker and its copies of the pipe are gone
  }
}

void Run::sample_lock_holds(bool final) {
  constexpr std::size_t kHoldsKept = 20000;
  double now = now_s();
  for (const NamedLockHolder& lock :
       final ? std::vector<NamedLockHolder>{} : scenario_.lock_holders(segment_)) {
    OpenHold& open = open_holds_[lock.lock];
    if (open.pid == lock.holder.pid) continue;
    if (open.pid != 0 && report_.lock_holds.size() < kHoldsKept) {
      report_.lock_holds.push_back({open.incarnation, lock.lock, open.since_s, now});
    }
    open = OpenHold{};
    for (const LiveWorker& worker : live_) {
      if (holds(worker, lock.holder)) open = OpenHold{lock.holder.pid, worker.incarnation, now};
    }
  }
  if (final) {
    for (auto& [name, open] : open_holds_) {
      if (open.pid != 0 && report_.lock_holds.size() < kHoldsKept) {
        report_.lock_holds.push_back({open.incarnation, name, open.since_s, now});
      }
    }
    open_holds_.clear();
  }
}

std::string Run::all_stacks_and_holders() {
  std::string text;
  for (LiveWorker& worker : live_) {
    text += "worker " + std::to_string(worker.incarnation) + " (pid " +
            std::to_string(worker.process.pid()) + "):\n" +
            capture_stack(worker.process.pid()).to_string();
  }
  return text + "lock holders:\n" + lock_report();
}

bool Run::holds(const LiveWorker& worker, const LockHolder& holder) const {
  if (holder.pid == 0) return false;
  const WorkerRecord& record = witness_->worker(worker.incarnation);
  return record.own_pid.load(std::memory_order_acquire) == holder.pid &&
         record.pid_namespace.load(std::memory_order_relaxed) == holder.pid_namespace;
}

std::string Run::lock_report() {
  std::string text;
  for (const NamedLockHolder& lock : scenario_.lock_holders(segment_)) {
    text += "  lock " + lock.lock + ": ";
    text += lock.holder.tid == 0 ? std::string("free") : "held by " + to_string(lock.holder);
    for (const LiveWorker& worker : live_) {
      if (holds(worker, lock.holder)) {
        text += " = worker " + std::to_string(worker.incarnation) + " (pid " +
                std::to_string(worker.process.pid()) + " here)";
      }
    }
    if (lock.holder.owner_died) text += " (owner died, repair pending)";
    text += "\n";
  }
  return text;
}

// Kills without waiting for the victim to finish dying: its exit takes a
// scheduler slice or two on a busy machine, and the harness has work to do.
// poll_workers reaps it and runs the checks that need its locks released.
void Run::kill_worker(std::size_t index, EventKind why, const std::string& detail,
                      bool keep_stack) {
  LiveWorker& worker = live_[index];
  if (keep_stack && options_.capture_victim_stacks &&
      report_.victim_stacks.size() < options_.victim_stacks_kept) {
    StackTrace trace = capture_stack(worker.process.pid());
    report_.victim_stacks.push_back("worker " + std::to_string(worker.incarnation) + " (pid " +
                                    std::to_string(worker.process.pid()) + "), " + detail + ":\n" +
                                    trace.to_string());
  }
  worker.process.signal(SIGKILL);
  worker.dying = true;
  worker.death = std::string(to_string(why)) + (detail.empty() ? "" : ": " + detail);
  if (why != EventKind::Crash && why != EventKind::Hang) {
    ++report_.kills;
    witness_->scenario(kKills).fetch_add(1);
  }
  event(worker.incarnation, why, detail);
}

void Run::log_end(LiveWorker& worker, std::string end) {
  drain_output(worker);
  WorkerRecord& record = witness_->worker(worker.incarnation);
  record.ended_ns.store(sys::monotonic_ns());
  WorkerSummary summary;
  summary.incarnation = worker.incarnation;
  summary.pid = worker.process.pid();
  summary.mapped_base = record.mapped_base.load();
  summary.started_s = static_cast<double>(record.started_ns.load() - start_ns_) / 1e9;
  summary.ended_s = now_s();
  summary.end = std::move(end);
  summary.output = std::move(worker.captured);
  report_.worker_log.push_back(std::move(summary));
}

void Run::handle_crash(std::size_t index) {
  LiveWorker& worker = live_[index];
  WorkerRecord& record = witness_->worker(worker.incarnation);
  char base[32];
  std::snprintf(base, sizeof base, "0x%llx",
                static_cast<unsigned long long>(record.mapped_base.load()));
  std::string what = "worker " + std::to_string(worker.incarnation) + " (pid " +
                     std::to_string(worker.process.pid()) + ", segment mapped at " + base +
                     ") crashed with " +
                     sys::ExitStatus{false, 0, record.crash_signal.load()}.to_string().substr(10);
  report_.diagnostics += what + ":\n" + capture_stack(worker.process.pid()).to_string();
  violation(what);
  kill_worker(index, EventKind::Crash, what, false);
  crashed_ = true;  // a crash is a bug in the code under test: stop and report it
}

// Reaps a worker that ended; false when it was removed from live_.
bool Run::reap_or_keep(std::size_t index) {
  LiveWorker& worker = live_[index];
  drain_output(worker);
  int stop_signal = 0;
  ChildProcess::State state = worker.process.poll(&stop_signal);
  if (state != ChildProcess::State::Ended) return true;
  const ExitStatus& status = *worker.process.status();
  if (worker.dying) {
    log_end(worker, worker.death);
  } else {
    if (!status.success()) {
      violation("worker " + std::to_string(worker.incarnation) +
                " ended unexpectedly: " + status.to_string() +
                (worker.captured.empty() ? "" : "; it printed: " + worker.captured.substr(0, 500)));
    }
    event(worker.incarnation, EventKind::Exit, status.to_string());
    log_end(worker, status.to_string());
  }
  bool was_killed = worker.dying;
  live_.erase(live_.begin() + static_cast<std::ptrdiff_t>(index));
  if (was_killed) after_kill();  // its locks are released now: check the repair
  return false;
}

void Run::after_kill() {
  std::uint64_t before = witness_->scenario(kRecoveries).load();
  for (std::string& v : scenario_.check(segment_, *witness_, false)) violation(std::move(v));
  if (witness_->scenario(kRecoveries).load() > before)
    event(0, EventKind::Recovery, "by the harness check");
}

void Run::poll_workers() {
  for (std::size_t i = 0; i < live_.size();) {
    LiveWorker& worker = live_[i];
    if (worker.dying) {
      if (reap_or_keep(i)) ++i;
      continue;
    }
    drain_output(worker);
    int stop_signal = 0;
    ChildProcess::State state = worker.process.poll(&stop_signal);
    if (state == ChildProcess::State::Ended) {
      reap_or_keep(i);  // top_up() replaces it
      continue;
    }
    if (state == ChildProcess::State::Stopped) {
      WorkerRecord& record = witness_->worker(worker.incarnation);
      auto recorded = static_cast<WorkerState>(record.state.load(std::memory_order_acquire));
      if (recorded == WorkerState::Crashed) {
        handle_crash(i);
        return;
      }
      if (recorded == WorkerState::StoppedAtFaultPoint) {
        std::int32_t point = record.stopped_at_point.load();
        witness_->kills(point).fetch_add(1);
        kill_worker(i, EventKind::KillAtPoint,
                    "at " + std::string(witness_->point_name(point)) + " hit #" +
                        std::to_string(record.planned_hit.load()),
                    true);
        // top_up() starts its replacement.
      }
    }
    ++i;
  }
}

void Run::scheduled_actions() {
  std::uint64_t now = sys::monotonic_ns();
  for (LiveWorker& worker : live_) {
    if (worker.resume_at_ns != 0 && now >= worker.resume_at_ns) {
      worker.process.signal(SIGCONT);
      worker.resume_at_ns = 0;
      event(worker.incarnation, EventKind::Resume);
    }
  }
  if (live_.empty()) return;
  // Victims take a moment to finish dying (longer on a loaded machine), and
  // each holds its registry slot until then: never let them pile up.
  if (now >= next_kill_ns_ && dying_count() < options_.workers) {
    next_kill_ns_ = now + exponential_ns(random_, options_.kills_per_s);
    bool by_holder = std::uniform_int_distribution<int>(0, 1)(random_) == 1;
    std::optional<std::size_t> victim;
    std::string detail;
    if (by_holder) {
      for (const NamedLockHolder& lock : scenario_.lock_holders(segment_)) {
        for (std::size_t i = 0; i < live_.size(); ++i) {
          if (holds(live_[i], lock.holder) && live_[i].resume_at_ns == 0 && !live_[i].dying) {
            victim = i;
            detail = "holder of " + lock.lock;
          }
        }
      }
    }
    if (!victim) {
      by_holder = false;
      victim = std::uniform_int_distribution<std::size_t>(0, live_.size() - 1)(random_);
      // Leave stalled and dying ones be.
      if (live_[*victim].resume_at_ns != 0 || live_[*victim].dying) victim.reset();
    }
    if (victim) {
      kill_worker(*victim, by_holder ? EventKind::KillHolder : EventKind::KillRandom, detail, true);
    }
  }
  if (now >= next_stall_ns_ && !live_.empty()) {
    next_stall_ns_ = now + exponential_ns(random_, options_.stalls_per_s);
    LiveWorker& worker =
        live_[std::uniform_int_distribution<std::size_t>(0, live_.size() - 1)(random_)];
    if (worker.resume_at_ns == 0 && worker.process.signal(SIGSTOP)) {
      worker.resume_at_ns =
          now + std::uniform_int_distribution<std::uint64_t>(2, 30)(random_) * 1'000'000;
      ++report_.stalls;
      event(worker.incarnation, EventKind::Stall);
    }
  }
}

std::size_t Run::dying_count() const {
  std::size_t dying = 0;
  for (const LiveWorker& worker : live_) dying += worker.dying ? 1 : 0;
  return dying;
}

// Keeps `workers` workers running: replaces the killed and the ended, but
// waits while as many victims as workers are still dying.
void Run::top_up() {
  if (witness_->scenario(kStopFlag).load() != 0) return;
  std::size_t dying = dying_count();
  while (live_.size() - dying < options_.workers && dying < options_.workers) start_worker();
}

void Run::resume_all() {
  for (LiveWorker& worker : live_) {
    if (worker.resume_at_ns != 0) {
      worker.process.signal(SIGCONT);
      worker.resume_at_ns = 0;
    }
  }
}

bool Run::watchdog() {
  std::uint64_t operations = 0;
  for (std::uint32_t i = 0; i < next_incarnation_; ++i)
    operations += witness_->worker(i).operations.load();
  std::uint64_t now = sys::monotonic_ns();
  if (operations != last_operations_) {
    last_operations_ = operations;
    last_progress_ns_ = now;
    return false;
  }
  if (static_cast<double>(now - last_progress_ns_) / 1e9 < options_.watchdog_s) return false;
  std::string text =
      "no progress for " + std::to_string(options_.watchdog_s) + " s; stacks of all workers:\n";
  text += all_stacks_and_holders();
  report_.diagnostics += text;
  violation("hang: no operation completed for " + std::to_string(options_.watchdog_s) +
            " s (stacks and lock holders in the diagnostics)");
  event(0, EventKind::Hang);
  return true;
}

void Run::finish() {
  resume_all();
  witness_->scenario(kStopFlag).store(1);
  std::uint64_t deadline = sys::monotonic_ns() + 5'000'000'000ULL;
  while (!live_.empty()) {
    for (std::size_t i = 0; i < live_.size();) {
      LiveWorker& worker = live_[i];
      if (!worker.dying) {
        int stop_signal = 0;
        if (worker.process.poll(&stop_signal) == ChildProcess::State::Stopped) {
          WorkerRecord& record = witness_->worker(worker.incarnation);
          auto recorded = static_cast<WorkerState>(record.state.load());
          if (recorded == WorkerState::Crashed) {
            handle_crash(i);
          } else if (recorded == WorkerState::StoppedAtFaultPoint) {
            // it reached its planned point while finishing: kill it as planned
            std::int32_t point = record.stopped_at_point.load();
            if (point >= 0) witness_->kills(point).fetch_add(1);
            kill_worker(i, EventKind::KillAtPoint, "at " + std::string(witness_->point_name(point)),
                        false);
          }
        }
      }
      if (reap_or_keep(i)) ++i;
    }
    if (live_.empty()) break;
    if (sys::monotonic_ns() > deadline) {
      report_.diagnostics +=
          "workers did not stop within 5 s of being asked:\n" + all_stacks_and_holders();
      violation("hang: workers did not stop when asked (stacks in the diagnostics)");
      kill_all("did not stop");
      break;
    }
    sys::sleep_ns(1'000'000);
  }
}

void Run::kill_all(const std::string& why) {
  for (std::size_t i = 0; i < live_.size(); ++i) {
    if (!live_[i].dying) kill_worker(i, EventKind::Hang, why, false);
  }
  for (LiveWorker& worker : live_) {
    try {
      worker.process.kill();
    } catch (const Error&) {
    }
    log_end(worker, worker.death);
  }
  live_.clear();
}

RunReport Run::execute() {
  prepare();
  start_ns_ = sys::monotonic_ns();
  last_progress_ns_ = start_ns_;
  next_kill_ns_ = start_ns_ + exponential_ns(random_, options_.kills_per_s);
  next_stall_ns_ = start_ns_ + exponential_ns(random_, options_.stalls_per_s);
  for (unsigned i = 0; i < options_.workers; ++i) start_worker();
  run_loop();
  if (hung_) {
    kill_all("hung");
  } else {
    finish();
  }
  conclude();
  return report_;
}

// The witness, the segment and the scenario's setup; how workers start.
void Run::prepare() {
  report_.scenario = std::string(scenario_.name());
  report_.seed = options_.seed;
  report_.workers = options_.workers;
  report_.replay_command = replay_command(report_.scenario, options_);
  witness_segment_ = Segment::create_anonymous(Segment::minimum_size() + sizeof(Witness) + 4096,
                                               {.register_process = false});
  witness_ = new (witness_segment_.user_area().data()) Witness();
  for (const std::string& point : scenario_.fault_points()) {
    if (find_fault_point(point) == nullptr) {
      violation("the scenario names fault point \"" + point + "\", which is not compiled in");
      continue;
    }
    witness_->add_point(point);
  }
  for (const std::string& point : options_.required_points) witness_->add_point(point);
  witness_->scenario(kWorkerCount).store(options_.workers);
  // Room in the registry for the workers, the victims still dying and the harness.
  segment_ = Segment::create_anonymous(scenario_.segment_size(),
                                       {.max_processes = 256, .heap = scenario_.uses_heap()});
  scenario_.setup(segment_, *witness_);
  use_zygote_ = options_.mode == WorkerMode::Fork && zygote_started() && sys::thread_count() > 1;
  if (options_.pid_namespaces) {
    if (options_.mode == WorkerMode::Spawn || use_zygote_) {
      throw Error(ErrorKind::NotSupported, "harness", "run",
                  "PID namespaces are for workers forked by a single-threaded caller, not for "
                  "spawned workers or the zygote's");
    }
    if (auto why = pid_namespaces_unavailable()) {
      throw Error(ErrorKind::NotSupported, "harness", "run", *why);
    }
  }
  if (options_.mode == WorkerMode::Spawn || use_zygote_) {
    if (options_.mode == WorkerMode::Spawn) {
      worker_program_ = options_.worker_program.empty() ? self_program() : options_.worker_program;
    }
    witness_descriptor_ = witness_segment_.inheritable_descriptor().to_string();
    segment_descriptor_ = segment_.inheritable_descriptor().to_string();
  }
  // Zygote workers are orphaned on purpose and must land here.
  if (use_zygote_) sys::set_child_subreaper(true);
  report_.worker_source = options_.mode == WorkerMode::Spawn ? "spawn"
                          : use_zygote_                      ? "zygote"
                                                             : "fork";
}

// Polls, tops up, kills and stalls until the run's bound (kills, or time),
// an interruption, a crash or a hang.
void Run::run_loop() {
  for (;;) {
    double elapsed = now_s();
    if (options_.max_kills != 0 ? report_.kills >= options_.max_kills
                                : elapsed >= options_.duration_s)
      break;
    if (options_.max_kills != 0 && elapsed >= options_.duration_s * 50) {
      violation("gave up after " + std::to_string(elapsed) + " s with " +
                std::to_string(report_.kills) + " kills");
      break;
    }
    if (options_.stop_requested != nullptr &&
        options_.stop_requested->load(std::memory_order_relaxed) != 0) {
      report_.interrupted = true;
      break;
    }
    poll_workers();
    if (crashed_) break;
    top_up();
    sample_lock_holds(false);
    scheduled_actions();
    if (watchdog()) {
      hung_ = true;
      break;
    }
    std::uint64_t now = sys::monotonic_ns();
    if (progress_ && now - progress_reported_ns_ > 100'000'000) {
      progress_reported_ns_ = now;
      progress_({elapsed, last_operations_, report_.kills, witness_->scenario(kRecoveries).load(),
                 report_.violations.size()});
    }
    sys::sleep_ns(100'000);
  }
}

// With every worker gone: the scenario's final checks, leaks, counts and
// required points.
void Run::conclude() {
  report_.duration_s = now_s();
  sample_lock_holds(true);
  if (use_zygote_) sys::set_child_subreaper(false);
  // Every worker is dead: reap their slots (heap holdings included) first.
  segment_.reap_dead();
  for (std::string& v : scenario_.check(segment_, *witness_, true)) violation(std::move(v));
  report_.leaked_bytes = scenario_.leaked_bytes(segment_, *witness_);
  if (report_.leaked_bytes != 0) {
    violation(std::to_string(report_.leaked_bytes) +
              " heap bytes leaked: live, but unreachable from the scenario's data");
  }
  for (std::uint32_t i = 0; i < next_incarnation_; ++i)
    report_.operations += witness_->worker(i).operations.load();
  report_.recoveries = witness_->scenario(kRecoveries).load();
  for (std::uint32_t i = 0; i < witness_->point_count(); ++i) {
    auto index = static_cast<std::int32_t>(i);
    report_.fault_points[std::string(witness_->point_name(index))] = {witness_->hits(index),
                                                                      witness_->kills(index)};
  }
  for (const std::string& point : options_.required_points) {
    const PointCounts& counts = report_.fault_points[point];
    if (counts.hits == 0) violation("required fault point " + point + " was never reached");
  }
  if (progress_) {
    progress_({report_.duration_s, report_.operations, report_.kills, report_.recoveries,
               report_.violations.size()});
  }
}

}  // namespace

namespace detail {

// args: scenario, incarnation, seed, perturb, nice, witness descriptor,
// segment descriptor, harness base (hex), harness mapped size. Anonymous
// descriptors name fds; witness_fd / segment_fd (>= 0) replace them.
int run_worker_from_args(const std::vector<std::string>& args, const ScenarioFactory& make,
                         int witness_fd, int segment_fd) {
  try {
    if (args.size() != 9) {
      std::fprintf(stderr, "shmutils worker: expected 9 arguments, got %zu\n", args.size());
      return 64;
    }
    std::unique_ptr<Scenario> scenario = make(args[0]);
    if (!scenario) {
      std::fprintf(stderr, "shmutils worker: unknown scenario %s\n", args[0].c_str());
      return 64;
    }
    auto incarnation = static_cast<std::uint32_t>(std::stoul(args[1]));
    std::uint64_t seed = worker_seed(std::stoull(args[2]), incarnation);
    bool perturb = args[3] == "1";
    int nice = std::stoi(args[4]);
    SegmentDescriptor witness_descriptor = SegmentDescriptor::parse(args[5]);
    SegmentDescriptor descriptor = SegmentDescriptor::parse(args[6]);
    if (witness_fd >= 0) witness_descriptor.fd = witness_fd;
    if (segment_fd >= 0) descriptor.fd = segment_fd;
    // An address of the harness, to keep free here: never dereferenced.
    std::uintptr_t parent_address = std::stoull(args[7], nullptr, 16);
    void* parent_base =
        reinterpret_cast<void*>(parent_address);  // NOLINT(performance-no-int-to-ptr)
    std::size_t parent_size = std::stoull(args[8]);
    Segment witness_segment = Segment::attach(witness_descriptor, {.register_process = false});
    auto* witness = reinterpret_cast<Witness*>(witness_segment.user_area().data());
    if (!perturb) {
      // Where the harness has it, as a forked worker would (else anywhere).
      try {
        Segment segment = Segment::attach(descriptor, {.address_hint = parent_base});
        return run_worker(*scenario, segment, *witness, incarnation, seed, nice);
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::AlreadyExists) throw;
      }
      Segment segment = Segment::attach(descriptor);
      return run_worker(*scenario, segment, *witness, incarnation, seed, nice);
    }
    // Reserve the harness's range here too: a pointer valid only there faults.
    Mapping guard;
    try {
      guard = Mapping::map({.size = parent_size,
                            .protection = Protection::None,
                            .flags = MapFlags::Private | MapFlags::FixedNoReplace,
                            .hint = parent_base,
                            .name = "harness range guard"});
    } catch (const Error&) {  // something already lives there: nothing can map over it either
    }
    std::mt19937_64 random(seed);
    Segment segment = attach_at_random_base(random, [&](const SegmentOptions& options) {
      return Segment::attach(descriptor, options);
    });
    return run_worker(*scenario, segment, *witness, incarnation, seed, nice);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shmutils worker: %s\n", e.what());
    return 70;
  }
}

}  // namespace detail

int run_spawned_worker(int argc, char** argv, const ScenarioFactory& make) {
  if (argc < 2 || argv[1] != kWorkerFlag) return -1;
  try {
    sys::set_parent_death_signal(SIGKILL);  // posix_spawn could not set it for us
  } catch (const Error& e) {
    std::fprintf(stderr, "shmutils worker: %s\n", e.what());
    return 70;
  }
  return detail::run_worker_from_args(std::vector<std::string>(argv + 2, argv + argc), make, -1,
                                      -1);
}

RunReport Harness::run(Scenario& scenario, const RunOptions& options,
                       const ProgressCallback& progress) {
  check_run_options(options);
  Run run(scenario, options, progress);
  return run.execute();
}

namespace {
// Why the options are out of bounds, or empty.
std::string run_options_problem(const RunOptions& o) {
  std::string problem;
  auto bad = [&](const std::string& why) {
    if (problem.empty()) problem = why;
  };
  auto within = [](double value, double low, double high) {
    return value >= low && value <= high;  // false for NaN
  };
  if (o.workers < 1 || o.workers > RunLimits::kMaxWorkers) {
    bad("workers must be 1 to " + std::to_string(RunLimits::kMaxWorkers) + ", not " +
        std::to_string(o.workers));
  }
  if (o.max_kills > RunLimits::kMaxKills) {
    bad("kills must be at most " + std::to_string(RunLimits::kMaxKills) +
        " (a run has an incarnation per kill), not " + std::to_string(o.max_kills));
  }
  if (!within(o.duration_s, RunLimits::kMinDurationS, RunLimits::kMaxDurationS)) {
    bad("duration must be " + std::to_string(RunLimits::kMinDurationS) + " to " +
        std::to_string(RunLimits::kMaxDurationS) + " s, not " + std::to_string(o.duration_s));
  }
  if (!within(o.kills_per_s, 0, RunLimits::kMaxKillRate)) bad("kill rate out of 0 to 1e9 per s");
  if (!within(o.stalls_per_s, 0, RunLimits::kMaxStallRate)) bad("stall rate out of 0 to 1e6 per s");
  if (!within(o.point_death_share, 0, 1)) bad("point share must be 0 to 1");
  if (o.max_planned_hit < 1 || o.max_planned_hit > RunLimits::kMaxPlannedHit) {
    bad("max planned hit must be 1 to " + std::to_string(RunLimits::kMaxPlannedHit));
  }
  if (!within(o.watchdog_s, 0.01, RunLimits::kMaxDurationS)) bad("watchdog must be 0.01 s or more");
  return problem;
}
}  // namespace

void check_run_options(const RunOptions& options) {
  if (std::string problem = run_options_problem(options); !problem.empty()) {
    throw Error(ErrorKind::InvalidArgument, "run options", "check", problem);
  }
}

namespace {
// The shortest text that reads back as exactly `value`.
std::string exact(double value) {
  std::array<char, 32> text{};
  auto [end, error] = std::to_chars(text.data(), text.data() + text.size(), value);
  (void)error;  // 32 characters hold any double
  return std::string(text.data(), end);
}
}  // namespace

// The token's last field: a checksum of everything before it, so a token
// cut short or altered anywhere is refused instead of replaying another run.
namespace {
std::string token_check(std::string_view body) {
  std::uint32_t hash = 2166136261U;
  for (char c : body) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619U;
  std::array<char, 9> text{};
  (void)std::snprintf(text.data(), text.size(), "%08x", hash);
  return text.data();
}
}  // namespace

std::string replay_token(const std::string& scenario, const RunOptions& options) {
  std::ostringstream out;
  out << "shmutils1:" << scenario << ":seed=" << options.seed << ":workers=" << options.workers
      << ":kills=" << options.max_kills << ":duration=" << exact(options.duration_s)
      << ":perturb=" << (options.perturb ? 1 : 0)
      << ":pid_namespaces=" << (options.pid_namespaces ? 1 : 0)
      << ":mode=" << (options.mode == WorkerMode::Spawn ? "spawn" : "fork")
      << ":kill_rate=" << exact(options.kills_per_s)
      << ":stall_rate=" << exact(options.stalls_per_s)
      << ":point_share=" << exact(options.point_death_share)
      << ":max_hit=" << options.max_planned_hit;
  std::string body = out.str();
  return body + ":check=" + token_check(body);
}

ReplaySpec parse_replay_token(std::string_view token) {
  auto bad = [&](const std::string& why) -> ReplaySpec {
    throw Error(ErrorKind::InvalidArgument, "replay token \"" + std::string(token) + "\"", "parse",
                why);
  };
  constexpr std::string_view kPrefix = "shmutils1:";
  if (token.substr(0, kPrefix.size()) != kPrefix) return bad("does not start with shmutils1:");
  constexpr std::string_view kCheck = ":check=";
  const std::size_t check_at = token.rfind(kCheck);
  if (check_at == std::string_view::npos) return bad("no check field (the token was cut?)");
  if (token.substr(check_at + kCheck.size()) != token_check(token.substr(0, check_at))) {
    return bad("its check field does not match (the token was cut or altered)");
  }
  std::vector<std::string> parts;
  std::string current;
  for (char c : token.substr(kPrefix.size(), check_at - kPrefix.size())) {
    if (c == ':') {
      parts.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  parts.push_back(current);
  if (parts.size() < 2 || parts[0].empty()) return bad("no scenario name");
  ReplaySpec spec;
  spec.scenario = parts[0];
  RunOptions& o = spec.options;
  // Every field, once, each a whole number or a finite decimal: a cut or
  // altered token must not replay some other run.
  auto whole = [&](const std::string& key, const std::string& value) {
    std::uint64_t result = 0;
    auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), result);
    if (value.empty() || error != std::errc() || end != value.data() + value.size()) {
      bad(key + "=" + value + " is not a whole number");
    }
    return result;
  };
  auto decimal = [&](const std::string& key, const std::string& value) {
    double result = 0;
    auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), result);
    if (value.empty() || error != std::errc() || end != value.data() + value.size() ||
        !std::isfinite(result)) {
      bad(key + "=" + value + " is not a finite number");
    }
    return result;
  };
  const std::vector<std::string> expected{"seed",       "workers",        "kills",  "duration",
                                          "perturb",    "pid_namespaces", "mode",   "kill_rate",
                                          "stall_rate", "point_share",    "max_hit"};
  std::vector<std::string> seen;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    std::size_t eq = parts[i].find('=');
    if (eq == std::string::npos) return bad("field without '=': " + parts[i]);
    std::string key = parts[i].substr(0, eq);
    std::string value = parts[i].substr(eq + 1);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) return bad(key + " given twice");
    seen.push_back(key);
    if (key == "seed") {
      o.seed = whole(key, value);
    } else if (key == "workers") {
      std::uint64_t workers = whole(key, value);
      if (workers > RunLimits::kMaxWorkers) bad("workers=" + value + " is out of bounds");
      o.workers = static_cast<unsigned>(workers);
    } else if (key == "kills") {
      o.max_kills = whole(key, value);
    } else if (key == "duration") {
      o.duration_s = decimal(key, value);
    } else if (key == "perturb") {
      if (value != "0" && value != "1") return bad("perturb must be 0 or 1");
      o.perturb = value == "1";
    } else if (key == "pid_namespaces") {
      if (value != "0" && value != "1") return bad("pid_namespaces must be 0 or 1");
      o.pid_namespaces = value == "1";
    } else if (key == "mode") {
      if (value != "fork" && value != "spawn") return bad("mode must be fork or spawn");
      o.mode = value == "spawn" ? WorkerMode::Spawn : WorkerMode::Fork;
    } else if (key == "kill_rate") {
      o.kills_per_s = decimal(key, value);
    } else if (key == "stall_rate") {
      o.stalls_per_s = decimal(key, value);
    } else if (key == "point_share") {
      o.point_death_share = decimal(key, value);
    } else if (key == "max_hit") {
      o.max_planned_hit = whole(key, value);
    } else {
      return bad("unknown field " + key);
    }
  }
  for (const std::string& key : expected) {
    if (std::find(seen.begin(), seen.end(), key) == seen.end()) {
      return bad("no " + key + " field (the token was cut?)");
    }
  }
  if (std::string problem = run_options_problem(o); !problem.empty()) return bad(problem);
  return spec;
}

std::string replay_command(const std::string& scenario, const RunOptions& options) {
  return options.program + " --replay " + replay_token(scenario, options);
}

std::string RunReport::summary() const {
  std::ostringstream out;
  out << scenario << ": " << operations << " operations, " << kills << " kills, " << recoveries
      << " recoveries, " << stalls << " stalls in " << duration_s << " s (" << kill_cycles_per_s()
      << " kill cycles/s), " << leaked_bytes << " bytes leaked, " << violations.size()
      << " violations\n";
  for (const std::string& v : violations) out << "  VIOLATION: " << v << "\n";
  if (!violations.empty()) out << "  replay: " << replay_command << "\n";
  return out.str();
}

}  // namespace shmutils::framework
