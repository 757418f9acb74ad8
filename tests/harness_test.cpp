// The harness must catch planted bugs — a skipped repair, a non-atomic
// update, an absolute pointer in shared memory, a hang — and its replay
// command must reproduce them; correct scenarios must pass.
#include "shmutils/framework/harness.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <new>
#include <set>
#include <stdexcept>
#include <thread>

#include "planted_bugs.hpp"
#include "shmutils/fixtures/children.hpp"
#include "shmutils/framework/builtin_scenarios.hpp"
#include "shmutils/framework/scenario.hpp"
#include "shmutils/framework/witness.hpp"
#include "shmutils/shm/detail/sys.hpp"

namespace shmutils::framework {
namespace {

// Runs bounded by kills: on a loaded (or sanitized) machine a run takes
// longer, never sees less. The duration is the deadline (a run that cannot
// reach its kills gives up after 50 times it, with a violation).
RunOptions quick_options(std::uint64_t seed, std::uint64_t kills = 40) {
  RunOptions options;
  options.seed = seed;
  options.workers = 3;
  options.max_kills = kills;
  options.duration_s = 2;
  options.watchdog_s = 5;
  options.victim_stacks_kept = 2;
  return options;
}

std::string describe(const RunReport& report) {
  std::string text = report.summary();
  if (!report.diagnostics.empty()) text += report.diagnostics;
  return text;
}

// A run that names no seed picks a fresh one and reports it: runs explore,
// and the report replays.
TEST(HarnessTest, ARunWithoutASeedPicksAFreshOneAndReportsIt) {
  CounterScenario scenario;
  RunOptions options = quick_options(0, 3);
  RunReport first = Harness().run(scenario, options);
  RunReport second = Harness().run(scenario, options);
  EXPECT_NE(first.seed, 0U);
  EXPECT_NE(first.seed, second.seed);
  EXPECT_NE(first.replay_command.find(":seed=" + std::to_string(first.seed) + ":"),
            std::string::npos)
      << first.replay_command;
}

TEST(HarnessTest, EveryBuiltInScenarioPassesUnderKillsWithItsFaultPointsExercised) {
  for (auto& scenario : builtin_scenarios()) {
    RunOptions options = quick_options(42);
    // Planned deaths early and few random kills, so that even a slow (sanitized,
    // loaded) run reaches its fault points before the random kills get there.
    // Every incarnation plans its death at an early point and random kills are
    // rare, so the first of the 11 kills that bound the run come at points even
    // on a slow (sanitized, loaded) machine. Bounded by kills, not by time; the
    // duration is only the deadline (50 x 1.5 s) past which it gives up.
    options.max_planned_hit = 20;
    options.point_death_share = 1.0;
    options.kills_per_s = 10;
    options.max_kills = 11;
    RunReport report = Harness().run(*scenario, options);
    SCOPED_TRACE(std::string(scenario->name()));
    EXPECT_TRUE(report.ok()) << describe(report);
    EXPECT_GE(report.kills, 11U) << describe(report);
    EXPECT_GT(report.operations, 0U);
    std::uint64_t point_kills = 0;
    for (const auto& [name, counts] : report.fault_points) point_kills += counts.kills;
    EXPECT_GT(point_kills, 0U) << "no worker died at a planned fault point";
    EXPECT_FALSE(report.victim_stacks.empty());
    EXPECT_EQ(report.leaked_bytes, 0U);
  }
}

TEST(HarnessTest, APublishThatIsNotAtomicWithTheAllocationShowsUpAsLeakedBytes) {
  auto leaky = make_leaky_churn_scenario();
  RunOptions options = quick_options(5);
  options.max_kills = 200;
  RunReport report = Harness().run(*leaky, options);
  EXPECT_FALSE(report.ok()) << describe(report);
  EXPECT_GT(report.leaked_bytes, 0U) << describe(report);
  bool named = false;
  for (const std::string& v : report.violations) named |= v.find("leaked") != std::string::npos;
  EXPECT_TRUE(named) << describe(report);
}

// This test program has threads (the deadline watchdog) and started a zygote
// in main(): fork-mode workers come from the zygote.
TEST(HarnessTest, AThreadedCallerGetsItsWorkersFromTheZygote) {
  ASSERT_GT(sys::thread_count(), 1U);
  CounterScenario scenario;
  RunOptions options = quick_options(8, 10);
  RunReport report = Harness().run(scenario, options);
  EXPECT_EQ(report.worker_source, "zygote");
  EXPECT_TRUE(report.ok()) << describe(report);
  EXPECT_GT(report.kills, 0U);
  for (const auto& worker : report.worker_log) {
    EXPECT_EQ(worker.end.find("ended unexpectedly"), std::string::npos) << worker.end;
  }
}

TEST(HarnessTest, WorkersMapTheSegmentAtTheirOwnAddresses) {
  CounterScenario scenario;
  RunReport report = Harness().run(scenario, quick_options(7));
  ASSERT_TRUE(report.ok()) << describe(report);
  std::set<std::uint64_t> bases;
  // A worker killed before it finished attaching has no base yet (0).
  for (const auto& worker : report.worker_log) {
    if (worker.mapped_base != 0) bases.insert(worker.mapped_base);
  }
  EXPECT_GT(bases.size(), report.worker_log.size() / 2) << "bases are random per worker";
  RunOptions same = quick_options(7);
  same.perturb = false;
  RunReport unperturbed = Harness().run(scenario, same);
  std::set<std::uint64_t> one;
  for (const auto& worker : unperturbed.worker_log) {
    if (worker.mapped_base != 0) one.insert(worker.mapped_base);
  }
  EXPECT_EQ(one.size(), 1U) << "without perturbation every worker uses the inherited mapping";
}

TEST(HarnessTest, ASkippedRepairIsCaughtAndItsReplayCatchesItAgain) {
  SkipRepairCounter broken;
  RunOptions options = quick_options(1234, 120);
  RunReport report = Harness().run(broken, options);
  ASSERT_FALSE(report.ok()) << "a counter whose repair is skipped passed:\n" << describe(report);
  EXPECT_NE(report.violations.front().find("increments completed"), std::string::npos);
  EXPECT_NE(report.replay_command.find("--replay shmutils1:counter-skip-repair:seed=1234:"),
            std::string::npos)
      << report.replay_command;
  EXPECT_NE(report.summary().find("replay: "), std::string::npos);
  // Replay from the printed token, as a user would.
  std::string token = report.replay_command.substr(report.replay_command.find("shmutils1:"));
  ReplaySpec spec = parse_replay_token(token);
  EXPECT_EQ(spec.scenario, "counter-skip-repair");
  RunReport replayed = Harness().run(broken, spec.options);
  EXPECT_FALSE(replayed.ok()) << "the replay did not reproduce the failure";
}

TEST(HarnessTest, ANonAtomicCounterUpdateIsCaught) {
  UnlockedIncrementCounter broken;
  RunReport report = Harness().run(broken, quick_options(99));
  ASSERT_FALSE(report.ok()) << describe(report);
  EXPECT_NE(report.violations.front().find("counter = "), std::string::npos);
}

// Stores the absolute address (in the harness's mapping) of a value in the
// segment, and has workers read through it: wrong in any process that maps
// the segment elsewhere.
class AbsolutePointerScenario : public Scenario {
 public:
  struct Root {
    std::uint64_t value;
    std::uint64_t* absolute;  // the planted bug
  };
  std::string_view name() const override { return "absolute_pointer"; }
  std::string_view description() const override {
    return "stores an absolute pointer (planted bug)";
  }
  std::vector<std::string> fault_points() const override { return {}; }
  void setup(Segment& segment, Witness&) override {
    auto* root = new (segment.user_area().data()) Root{7, nullptr};
    root->absolute = &root->value;
  }
  void work(WorkerContext& ctx) override {
    auto& root = ctx.root<Root>();
    while (!ctx.should_stop()) {
      if (*root.absolute != 7) return;
      ctx.operation_done();
    }
  }
  std::vector<std::string> check(Segment&, Witness&, bool) override { return {}; }
  std::vector<NamedLockHolder> lock_holders(Segment&) override { return {}; }
};

TEST(HarnessTest, AnAbsolutePointerInTheSegmentIsCaughtByAddressPerturbation) {
  AbsolutePointerScenario scenario;
  RunOptions options = quick_options(5);
  // No kills: every worker's first operation crashes, and the run ends at the
  // first crash however slowly workers start; the duration is a deadline.
  options.kills_per_s = 0;
  options.stalls_per_s = 0;
  options.point_death_share = 0;
  options.max_kills = 0;
  options.duration_s = 120;
  options.watchdog_s = 120;
  RunReport report = Harness().run(scenario, options);
  ASSERT_FALSE(report.ok()) << describe(report);
  EXPECT_NE(report.violations.front().find("crashed with SIGSEGV"), std::string::npos)
      << describe(report);
  EXPECT_NE(report.diagnostics.find("AbsolutePointerScenario::work"), std::string::npos)
      << "the crash comes with the faulting stack:\n"
      << report.diagnostics;
  options.perturb = false;
  options.kills_per_s = 400;
  options.max_kills = 20;
  options.duration_s = 2;
  EXPECT_TRUE(Harness().run(scenario, options).ok()) << "without perturbation the bug hides";
}

// A worker's arguments are read field by field: a missing or malformed one
// is a usage error (64) naming it, never a worker that runs something else.
TEST(HarnessTest, AWorkerWithMalformedArgumentsRefusesToRun) {
  const std::vector<std::vector<std::string>> malformed{
      {"counter", "0"},
      {"counter", "zero", "1", "1", "0", "-", "-", "7f00", "4096"},
      {"counter", "0", "1", "maybe", "0", "-", "-", "7f00", "4096"},
      {"counter", "0", "1", "1", "0", "-", "-", "not-hex", "4096"}};
  for (const auto& fields : malformed) {
    EXPECT_TRUE(fixtures::run_in_child([&](fixtures::ChildContext&) {
                  std::vector<std::string> argv{"worker", "--shmutils-worker"};
                  argv.insert(argv.end(), fields.begin(), fields.end());
                  std::vector<char*> pointers;
                  for (std::string& arg : argv) pointers.push_back(arg.data());
                  EXPECT_EQ(run_spawned_worker(static_cast<int>(pointers.size()), pointers.data(),
                                               &make_builtin_scenario),
                            64)
                      << fields.size() << " fields, the second " << fields[1];
                }).ok());
  }
}

// A spawned worker is supervised as a forked one: its crash comes with its stack.
TEST(HarnessTest, ASpawnedWorkerThatCrashesIsReportedWithItsStack) {
  AbsolutePointerScenario scenario;
  RunOptions options = quick_options(5);
  // No kills: a spawned worker starts slowly (an exec; longer under ASan on a
  // loaded machine) and must reach its first operation, which crashes. The
  // run ends at the crash; the duration is only a deadline.
  options.kills_per_s = 0;
  options.stalls_per_s = 0;
  options.point_death_share = 0;
  options.max_kills = 0;
  options.duration_s = 120;
  options.watchdog_s = 120;
  options.mode = WorkerMode::Spawn;
  RunReport report = Harness().run(scenario, options);
  ASSERT_FALSE(report.ok()) << describe(report);
  EXPECT_NE(report.violations.front().find("crashed with SIGSEGV"), std::string::npos)
      << describe(report);
  EXPECT_NE(report.diagnostics.find("AbsolutePointerScenario::work"), std::string::npos)
      << "the crash comes with the faulting stack:\n"
      << report.diagnostics;
}

// Workers take the lock and stop making progress.
class HangScenario : public Scenario {
 public:
  std::string_view name() const override { return "hang"; }
  std::string_view description() const override { return "a worker that hangs (planted bug)"; }
  std::vector<std::string> fault_points() const override { return {}; }
  void setup(Segment& segment, Witness&) override { new (segment.user_area().data()) Mutex(); }
  void work(WorkerContext& ctx) override {
    auto& mutex = ctx.root<Mutex>();
    MutexGuard guard(mutex);
    for (;;) ::pause();  // holds the lock forever
  }
  std::vector<std::string> check(Segment&, Witness&, bool) override { return {}; }
  std::vector<NamedLockHolder> lock_holders(Segment& segment) override {
    return {{"the mutex", Scenario::root<Mutex>(segment).holder()}};
  }
};

TEST(HarnessTest, AHangIsCaughtByTheWatchdogWithStacksAndLockHolders) {
  HangScenario scenario;
  RunOptions options = quick_options(3);
  options.duration_s = 30;
  options.watchdog_s = 1;
  options.kills_per_s = 0;
  options.stalls_per_s = 0;
  std::uint64_t start = sys::monotonic_ns();
  RunReport report = Harness().run(scenario, options);
  EXPECT_LT(sys::monotonic_ns() - start, 10'000'000'000ULL) << "the watchdog ended the run";
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.violations.front().find("hang"), std::string::npos) << describe(report);
  EXPECT_NE(report.diagnostics.find("HangScenario::work"), std::string::npos) << report.diagnostics;
  EXPECT_NE(report.diagnostics.find("lock the mutex: held by pid"), std::string::npos)
      << report.diagnostics;
}

// A lock that is not robust, as a user's own (or Boost.Interprocess's) may
// be: a holder killed with it held leaves it held for ever. The check takes
// it without a bound, as a first check often does.
class NonRobustLockScenario : public Scenario {
 public:
  struct Root {
    std::atomic<pid_t> holder{0};  // the lock: its holder's pid, 0 when free
    std::atomic<std::uint64_t> holder_namespace{0};
    std::uint64_t value = 0;
  };
  std::string_view name() const override { return "non-robust-lock"; }
  std::string_view description() const override { return "a lock a dead holder keeps"; }
  std::vector<std::string> fault_points() const override { return {}; }
  void setup(Segment& segment, Witness&) override {
    new (segment.user_area().data()) Root();
    Scenario::root<Root>(segment).holder_namespace.store(sys::pid_namespace_id());
  }
  void work(WorkerContext& ctx) override {
    auto& root = ctx.root<Root>();
    while (!ctx.should_stop()) {
      take(root);
      ++root.value;
      ctx.operation_done();
      root.holder.store(0);
    }
  }
  std::vector<std::string> check(Segment& segment, Witness&, bool) override {
    auto& root = Scenario::root<Root>(segment);
    take(root);
    root.holder.store(0);
    return {};
  }
  std::vector<NamedLockHolder> lock_holders(Segment& segment) override {
    auto& root = Scenario::root<Root>(segment);
    pid_t pid = root.holder.load();
    return {
        {"naive.lock", {.pid = pid, .tid = pid, .pid_namespace = root.holder_namespace.load()}}};
  }

 private:
  static void take(Root& root) {
    pid_t expected = 0;
    while (!root.holder.compare_exchange_weak(expected, sys::getpid())) {
      expected = 0;
      sys::yield();
    }
  }
};

// A check that blocks can never wedge the harness: it runs in a checker
// process, and one still blocked at the watchdog's bound ends the run with a
// violation naming the lock, its holder and that the holder is dead.
TEST(HarnessTest, ACheckBlockedOnALockItsDeadHolderKeepsIsReportedNotWaitedFor) {
  NonRobustLockScenario scenario;
  RunOptions options = quick_options(21, 200);
  options.duration_s = 60;  // only the deadline: the first holder killed ends the run
  options.watchdog_s = 0.5;
  options.stalls_per_s = 0;
  RunReport report = Harness().run(scenario, options);
  ASSERT_FALSE(report.ok()) << describe(report);
  const std::string& first = report.violations.front();
  EXPECT_NE(first.find("hang: the check after a kill blocked for"), std::string::npos) << first;
  EXPECT_NE(first.find("naive.lock held by worker "), std::string::npos) << first;
  EXPECT_NE(first.find(", dead"), std::string::npos) << first;
  EXPECT_NE(first.find(": kill ("), std::string::npos) << "how it died: " << first;
  EXPECT_NE(report.diagnostics.find("NonRobustLockScenario::check"), std::string::npos)
      << "the checker's stack:\n"
      << report.diagnostics;
  EXPECT_NE(report.replay_command.find("--replay shmutils1:non-robust-lock:"), std::string::npos);
}

// Workers that count; a check that throws after kills and crashes at the end.
class MisbehavingCheckScenario : public Scenario {
 public:
  std::string_view name() const override { return "misbehaving-check"; }
  std::string_view description() const override { return "a check that throws and crashes"; }
  std::vector<std::string> fault_points() const override { return {}; }
  void setup(Segment&, Witness&) override {}
  void work(WorkerContext& ctx) override {
    while (!ctx.should_stop()) {
      ctx.operation_done();
      sys::yield();
    }
  }
  std::vector<std::string> check(Segment&, Witness&, bool final) override {
    if (!final) throw std::runtime_error("the structure is unreadable");
    sys::raise_signal(SIGSEGV);
    return {};
  }
  std::vector<NamedLockHolder> lock_holders(Segment&) override { return {}; }
};

TEST(HarnessTest, ACheckThatThrowsOrCrashesIsAViolationAndTheHarnessLives) {
  MisbehavingCheckScenario scenario;
  RunOptions options = quick_options(22, 3);
  RunReport report = Harness().run(scenario, options);
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.violations.front().find("a check threw: the structure is unreadable"),
            std::string::npos)
      << describe(report);
  EXPECT_NE(report.violations.back().find("the final check crashed with SIGSEGV"),
            std::string::npos)
      << describe(report);
  EXPECT_NE(report.diagnostics.find("MisbehavingCheckScenario::check"), std::string::npos)
      << report.diagnostics;
}

// The checker is a process of the segment in its own right: locks it takes
// and its liveness are its own, not the harness's (workers in other PID
// namespaces judge a holder's liveness by its registry slot).
class RegisteredCheckCounter : public CounterScenario {
 public:
  std::string_view name() const override { return "counter-registered-check"; }
  std::vector<std::string> check(Segment& segment, Witness& witness, bool final) override {
    std::vector<std::string> violations = CounterScenario::check(segment, witness, final);
    bool registered = false;
    for (const SlotInfo& slot : segment.registry().slots())
      registered = registered || (slot.pid == sys::getpid() && slot.state == SlotState::Live);
    if (!registered) violations.emplace_back("the check's process holds no registry slot");
    return violations;
  }
};

TEST(HarnessTest, TheCheckRunsInAProcessRegisteredInTheSegment) {
  RegisteredCheckCounter scenario;
  RunReport report = Harness().run(scenario, quick_options(23, 5));
  EXPECT_TRUE(report.ok()) << describe(report);
}

// A spawn-mode worker program that cannot build the scenario says so, and
// the run stops there with that message (it used to look like a hang).
TEST(HarnessTest, SpawnModeWithoutAFactoryIsAClearErrorNamingTheScenario) {
  CounterScenario scenario;
  RunOptions options = quick_options(24, 5);
  options.mode = WorkerMode::Spawn;
  options.worker_program = SHMUTILS_NO_FACTORY_PATH;
  RunReport report = Harness().run(scenario, options);
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.violations.front().find("cannot build scenario \"counter\""), std::string::npos)
      << describe(report);
  EXPECT_NE(report.violations.front().find("no ScenarioFactory"), std::string::npos)
      << describe(report);
  EXPECT_EQ(report.violations.size(), 1U) << "the run stops at the first such worker\n"
                                          << describe(report);
}

TEST(HarnessTest, ARequiredFaultPointThatIsNeverReachedFailsTheRun) {
  CounterScenario scenario;
  RunOptions options = quick_options(11);
  options.duration_s = 0.3;
  options.required_points = {"registry.reap.before_free"};
  RunReport report = Harness().run(scenario, options);
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.violations.back().find("registry.reap.before_free was never reached"),
            std::string::npos)
      << describe(report);
}

TEST(HarnessTest, AFaultPointDeathIsPlannedFromTheSeedAndLandsWhereItWasPlanned) {
  CounterScenario scenario;
  RunOptions options = quick_options(2024);
  options.kills_per_s = 0;  // only planned deaths
  options.stalls_per_s = 0;
  options.point_death_share = 1.0;
  // Bounded by time: a worker planned at a point it never reaches (a repair
  // no kill calls for) lives on, so no number of kills is sure to come. What
  // is asserted holds for any number of them.
  options.max_kills = 0;
  RunReport report = Harness().run(scenario, options);
  ASSERT_TRUE(report.ok()) << describe(report);
  std::uint64_t point_kills = 0;
  for (const auto& [name, counts] : report.fault_points) point_kills += counts.kills;
  EXPECT_EQ(point_kills, report.kills) << "every kill happened at its planned point";
  for (const auto& worker : report.worker_log) {
    if (worker.end.rfind("kill (fault point)", 0) == 0) {
      EXPECT_NE(worker.end.find(" hit #"), std::string::npos) << worker.end;
    }
  }
}

}  // namespace

// Every scenario this test program runs, by name: the zygote (started in
// main, see main.cpp) rebuilds a worker's scenario from its name.
std::unique_ptr<Scenario> make_test_scenario(std::string_view name) {
  if (name == "counter-skip-repair") return std::make_unique<SkipRepairCounter>();
  if (name == "counter-unlocked-increment") {
    return std::make_unique<UnlockedIncrementCounter>();
  }
  if (name == "absolute_pointer") return std::make_unique<AbsolutePointerScenario>();
  if (name == "hang") return std::make_unique<HangScenario>();
  if (name == "non-robust-lock") return std::make_unique<NonRobustLockScenario>();
  if (name == "misbehaving-check") return std::make_unique<MisbehavingCheckScenario>();
  if (name == "counter-registered-check") return std::make_unique<RegisteredCheckCounter>();
  if (name == "allocator_churn-leaky") return make_leaky_churn_scenario();
  return make_builtin_scenario(name);
}

}  // namespace shmutils::framework

namespace shmutils::framework {
namespace {

// A lone worker (RunOptions::workers = 1) has nobody to take turns with: the
// queue scenario's single worker must produce and consume by itself rather
// than wait on a full queue. Bounded by operations; time is only a deadline.
TEST(LoneWorkerTest, TheQueueScenarioKeepsALoneWorkerBusy) {
  auto scenario = make_builtin_scenario("condition_variable");
  ASSERT_NE(scenario, nullptr);
  Segment segment = Segment::create_anonymous(scenario->segment_size(), {.heap = true});
  auto witness = std::make_unique<Witness>();
  scenario->setup(segment, *witness);
  witness->scenario(kWorkerCount).store(1);
  WorkerContext context(segment, *witness, 0, 1);
  std::thread worker([&] { scenario->work(context); });
  constexpr std::uint64_t kOperations = 5'000;
  const std::uint64_t deadline = sys::monotonic_ns() + 60'000'000'000ULL;
  while (context.record().operations.load() < kOperations && sys::monotonic_ns() < deadline) {
    sys::sleep_ns(1'000'000);
  }
  witness->scenario(kStopFlag).store(1);
  worker.join();
  EXPECT_GE(context.record().operations.load(), kOperations)
      << "the lone worker stopped making progress";
  EXPECT_TRUE(scenario->check(segment, *witness, true).empty());
}

}  // namespace
}  // namespace shmutils::framework
