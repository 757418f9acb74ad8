#include "run.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <new>
#include <optional>

#include "shmutils/framework/address_perturbation.hpp"
#include "shmutils/framework/pid_namespace.hpp"
#include "shmutils/framework/stack_capture.hpp"
#include "shmutils/framework/zygote.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "worker_main.hpp"
#include "zygote_request.hpp"

namespace shmutils::framework::detail {

void Run::start_worker() {
  std::uint32_t incarnation = next_incarnation_++;
  if (incarnation >= Witness::kMaxWorkers) {
    throw Error(ErrorKind::NoSpace, "harness", "start worker",
                "more than " + std::to_string(Witness::kMaxWorkers) + " worker incarnations");
  }
  WorkerRecord& record = witness_->worker(incarnation);
  KillPlan::PointDeath death = plan_.plan_incarnation(witness_->point_count());
  record.planned_point.store(death.point);
  record.planned_hit.store(death.hit);
  record.stopped_at_point.store(-1);
  record.state.store(static_cast<std::uint32_t>(WorkerState::Starting));
  record.started_ns.store(sys::monotonic_ns());
  witness_->scenario(kIncarnations).store(next_incarnation_);
  auto [read_end, write_end] = sys::pipe(/*nonblocking_read=*/true);
  LiveWorker worker;
  worker.incarnation = incarnation;
  worker.process = start_process(incarnation, write_end.get());
  record.pid.store(worker.process.pid());
  worker.output = std::move(read_end);
  event(incarnation, EventKind::Start, "pid " + std::to_string(worker.process.pid()));
  live_.push_back(std::move(worker));
}

// Starts the worker process in the run's way: forked, spawned, or forked by
// the zygote; its output (stdout and stderr) goes to output_fd.
SupervisedChild Run::start_process(std::uint32_t incarnation, int output_fd) {
  if (options_.mode == WorkerMode::Fork && !use_zygote_) {
    Scenario& scenario = scenario_;
    Segment& segment = segment_;
    Witness& witness = *witness_;
    const RunOptions& options = options_;
    return SupervisedChild::fork(
        [&scenario, &segment, &witness, incarnation, &options, output_fd] {
          return run_forked_worker(scenario, segment, witness, incarnation, options, output_fd);
        },
        options_.pid_namespaces);
  }
  WorkerArguments arguments{.scenario = std::string(scenario_.name()),
                            .incarnation = incarnation,
                            .run_seed = options_.seed,
                            .perturb = options_.perturb,
                            .nice = options_.worker_nice,
                            .witness_descriptor = witness_descriptor_,
                            .segment_descriptor = segment_descriptor_,
                            .harness_base = reinterpret_cast<std::uintptr_t>(segment_.base()),
                            .harness_size = segment_.mapped_size()};
  if (use_zygote_) {
    auto [crash_read, crash_write] = SupervisedChild::crash_channel();
    pid_t pid = zygote_fork_worker(arguments, witness_segment_.fd(), segment_.fd(), output_fd,
                                   crash_write.get());
    return SupervisedChild::adopt(pid, std::move(crash_read));
  }
  std::vector<std::string> argv{worker_program_, std::string(kWorkerFlag)};
  for (std::string& field : arguments.to_strings()) argv.push_back(std::move(field));
  return SupervisedChild::spawn(worker_program_, argv, {{output_fd, 1}, {output_fd, 2}});
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
    text += lock.holder.tid == 0
                ? std::string("free")
                : "held by " + to_string(lock.holder) + " = " + holder_state(lock.holder);
    if (lock.holder.owner_died) text += " (owner died, repair pending)";
    text += "\n";
  }
  return text;
}

std::string Run::holder_state(const LockHolder& holder) const {
  if (checker_ && holder.pid == checker_->pid() && holder.pid_namespace == sys::pid_namespace_id())
    return "the harness's checker (pid " + std::to_string(holder.pid) + ")";
  for (std::uint32_t i = 0; i < next_incarnation_; ++i) {
    const WorkerRecord& record = witness_->worker(i);
    if (holder.pid == 0 || record.own_pid.load(std::memory_order_acquire) != holder.pid ||
        record.pid_namespace.load(std::memory_order_relaxed) != holder.pid_namespace)
      continue;
    const std::string who = "worker " + std::to_string(i);
    for (const LiveWorker& worker : live_) {
      if (worker.incarnation != i) continue;
      const std::string pid = " (pid " + std::to_string(worker.process.pid()) + ")";
      if (worker.dying) return who + pid + ", dead (not yet reaped): " + worker.death;
      if (worker.resume_at_ns != 0) return who + pid + ", stopped (a stall)";
      if (stopped_at_point(worker)) return who + pid + ", stopped at its planned fault point";
      return who + pid + ", alive";
    }
    for (const WorkerSummary& ended : report_.worker_log) {
      if (ended.incarnation != i) continue;
      std::array<char, 32> when{};
      (void)std::snprintf(when.data(), when.size(), "%.3f", ended.ended_s);
      return who + " (pid " + std::to_string(ended.pid) + "), dead: " + ended.end + " at " +
             when.data() + " s";
    }
    return who + ", dead";
  }
  return "pid " + std::to_string(holder.pid) + ", not a process of this run";
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

// The worker crashed and its supervision took its stack and killed it.
void Run::handle_crash(std::size_t index) {
  LiveWorker& worker = live_[index];
  WorkerRecord& record = witness_->worker(worker.incarnation);
  std::array<char, 32> base{};
  (void)std::snprintf(base.data(), base.size(), "0x%llx",
                      static_cast<unsigned long long>(record.mapped_base.load()));
  std::string what = "worker " + std::to_string(worker.incarnation) + " (pid " +
                     std::to_string(worker.process.pid()) + ", segment mapped at " + base.data() +
                     ") crashed with " + sys::signal_name(worker.process.crash_signal());
  report_.diagnostics += what + ":\n" + worker.process.stack();
  violation(what);
  worker.dying = true;  // already dead and reaped: reap_or_keep logs and removes it
  worker.death = "crash: " + what;
  event(worker.incarnation, EventKind::Crash, what);
  crashed_ = true;  // a crash is a bug in the code under test: stop and report it
}

// The worker stopped itself at its planned fault point hit: kill it there.
void Run::kill_at_point(std::size_t index, bool keep_stack) {
  LiveWorker& worker = live_[index];
  WorkerRecord& record = witness_->worker(worker.incarnation);
  std::int32_t point = record.stopped_at_point.load();
  if (point < 0) return;
  witness_->kills(point).fetch_add(1);
  kill_worker(index, EventKind::KillAtPoint,
              "at " + std::string(witness_->point_name(point)) + " hit #" +
                  std::to_string(record.planned_hit.load()),
              keep_stack);
}

// Reaps a worker that ended; false when it was removed from live_.
bool Run::reap_or_keep(std::size_t index) {
  LiveWorker& worker = live_[index];
  drain_output(worker);
  using State = SupervisedChild::State;
  State state = worker.process.poll();
  if (state == State::Running || state == State::Stopped) return true;
  if (state == State::Crashed && !worker.dying) return true;  // poll_workers reports it first
  const ExitStatus& status = *worker.process.status();
  if (worker.dying) {
    log_end(worker, worker.death);
  } else {
    const bool cannot_start = status.exited && status.exit_code == 64;
    if (!status.success() && !(cannot_start && cannot_start_)) {  // that one is said once
      violation("worker " + std::to_string(worker.incarnation) +
                " ended unexpectedly: " + status.to_string() +
                (worker.captured.empty() ? "" : "; it printed: " + worker.captured.substr(0, 500)));
      // 64: the worker could not be started as asked (its program cannot
      // build the scenario, or its arguments were refused): every
      // replacement would end the same way.
      if (cannot_start) cannot_start_ = true;
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
  if (hung_ || crashed_) return;  // the run is ending: the final check follows
  std::uint64_t before = witness_->scenario(kRecoveries).load();
  run_check(false);
  if (witness_->scenario(kRecoveries).load() > before)
    event(0, EventKind::Recovery, "by the harness check");
}

void Run::run_check(bool final) {
  if (!checker_) checker_.emplace(scenario_, segment_, *witness_);
  const auto bound = std::chrono::milliseconds(std::llround(options_.watchdog_s * 1000));
  const std::string which = final ? "the final check" : "the check after a kill";
  std::array<char, 32> bound_text{};
  (void)std::snprintf(bound_text.data(), bound_text.size(), "%g s", options_.watchdog_s);
  const std::string after = bound_text.data();
  Checker::Result result;
  // A check may wait for a lock a stalled worker, or one stopped at its
  // planned point, holds: end those stalls and kills while it waits.
  auto meanwhile = [this] {
    end_due_stalls(sys::monotonic_ns());
    for (std::size_t i = 0; i < live_.size(); ++i) {
      if (!live_[i].dying && stopped_at_point(live_[i])) kill_at_point(i, true);
    }
  };
  switch (checker_->check(final, bound, result, meanwhile)) {
    case Checker::Outcome::Done:
      for (std::string& v : result.violations) violation(std::move(v));
      if (final) report_.leaked_bytes = result.leaked_bytes;
      return;  // the checker serves the next check
    case Checker::Outcome::Blocked: {
      std::string holders;
      for (const NamedLockHolder& lock : scenario_.lock_holders(segment_)) {
        if (lock.holder.pid == 0) continue;
        holders +=
            (holders.empty() ? "" : "; ") + lock.lock + " held by " + holder_state(lock.holder);
      }
      report_.diagnostics += which + " (checker pid " + std::to_string(checker_->pid()) +
                             ") was still running after " + after + "; its stack:\n" +
                             checker_->stack() + "lock holders:\n" + lock_report();
      violation(
          "hang: " + which + " blocked for " + after +
          (holders.empty() ? std::string(" with every named lock free") : " (" + holders + ")") +
          (final ? "" : "; a check between kills must not block: take locks with a bound"));
      event(0, EventKind::Hang, which + " blocked");
      hung_ = true;
      break;
    }
    case Checker::Outcome::Crashed:
      report_.diagnostics +=
          which + " " + checker_->ending() + "; its stack:\n" + checker_->stack();
      violation(which + " " + checker_->ending() + " (its stack is in the diagnostics)");
      event(0, EventKind::Crash, which);
      crashed_ = true;
      break;
  }
  checker_.reset();  // a checker that did not finish is gone: the next check forks another
}

void Run::poll_workers() {
  for (std::size_t i = 0; i < live_.size();) {
    LiveWorker& worker = live_[i];
    if (worker.dying) {
      if (reap_or_keep(i)) ++i;
      continue;
    }
    drain_output(worker);
    switch (worker.process.poll()) {
      case SupervisedChild::State::Crashed: handle_crash(i); return;
      case SupervisedChild::State::Exited: reap_or_keep(i); continue;  // top_up() replaces it
      case SupervisedChild::State::Stopped:
        // At its planned point (else a stall of ours): top_up() replaces it.
        if (stopped_at_point(worker)) kill_at_point(i, true);
        break;
      default: break;
    }
    ++i;
  }
}

bool Run::at_work(const LiveWorker& worker) const {
  return static_cast<WorkerState>(
             witness_->worker(worker.incarnation).state.load(std::memory_order_acquire)) ==
         WorkerState::Running;
}

bool Run::stopped_at_point(const LiveWorker& worker) const {
  return static_cast<WorkerState>(
             witness_->worker(worker.incarnation).state.load(std::memory_order_acquire)) ==
         WorkerState::StoppedAtFaultPoint;
}

void Run::end_due_stalls(std::uint64_t now) {
  for (LiveWorker& worker : live_) {
    if (worker.resume_at_ns != 0 && now >= worker.resume_at_ns) {
      worker.process.signal(SIGCONT);
      worker.resume_at_ns = 0;
      event(worker.incarnation, EventKind::Resume);
    }
  }
}

void Run::kill_when_due(std::uint64_t now) {
  // Victims take a moment to finish dying (longer on a loaded machine), and
  // each holds its registry slot until then: never let them pile up.
  if (now < next_kill_ns_ || dying_count() >= options_.workers) return;
  // Victims are workers at work, neither stalled nor dying: a kill before
  // a worker attaches tests its start alone, and on a loaded machine (an
  // exec'd worker under a sanitizer) the start is most of a worker's life.
  // With none at work, the kill waits for one.
  std::vector<std::size_t> eligible;
  for (std::size_t i = 0; i < live_.size(); ++i) {
    if (live_[i].resume_at_ns == 0 && !live_[i].dying && at_work(live_[i])) eligible.push_back(i);
  }
  if (eligible.empty()) return;
  next_kill_ns_ = now + plan_.next_kill_in_ns();
  std::optional<std::size_t> victim;
  std::string detail;
  if (plan_.kill_a_holder()) {
    for (const NamedLockHolder& lock : scenario_.lock_holders(segment_)) {
      for (std::size_t i : eligible) {
        if (holds(live_[i], lock.holder)) {
          victim = i;
          detail = "holder of " + lock.lock;
        }
      }
    }
  }
  const bool by_holder = victim.has_value();
  if (!victim) victim = eligible[plan_.pick(eligible.size())];
  kill_worker(*victim, by_holder ? EventKind::KillHolder : EventKind::KillRandom, detail, true);
}

void Run::scheduled_actions() {
  std::uint64_t now = sys::monotonic_ns();
  end_due_stalls(now);
  if (live_.empty()) return;
  kill_when_due(now);
  if (now >= next_stall_ns_ && !live_.empty()) {
    next_stall_ns_ = now + plan_.next_stall_in_ns();
    LiveWorker& worker = live_[plan_.pick(live_.size())];
    if (worker.resume_at_ns == 0 && worker.process.signal(SIGSTOP)) {
      worker.resume_at_ns = now + plan_.stall_length_ns();
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
        SupervisedChild::State state = worker.process.poll();
        if (state == SupervisedChild::State::Crashed) {
          handle_crash(i);
        } else if (state == SupervisedChild::State::Stopped && stopped_at_point(worker)) {
          kill_at_point(i, false);  // it reached its planned point while finishing
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
  next_kill_ns_ = start_ns_ + plan_.next_kill_in_ns();
  next_stall_ns_ = start_ns_ + plan_.next_stall_in_ns();
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
      worker_program_ =
          options_.worker_program.empty() ? sys::self_executable() : options_.worker_program;
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
    if (crashed_ || hung_ || cannot_start_) break;
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
  run_check(true);
  checker_.reset();
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

}  // namespace shmutils::framework::detail
