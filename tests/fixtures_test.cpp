// The fixtures this suite (and any downstream suite) embeds: children whose
// assertion failures, crashes and hangs become the parent test's failures;
// spawned children; the fault-injection call; seeds; names removed when a
// test crashes.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <set>

#include "planted_bugs.hpp"
#include "shmutils/fixtures/children.hpp"
#include "shmutils/fixtures/crash_cleanup.hpp"
#include "shmutils/fixtures/fault_injection_test.hpp"
#include "shmutils/fixtures/segment_test.hpp"
#include "shmutils/fixtures/shared_objects_test.hpp"
#include "shmutils/fixtures/test_seed.hpp"
#include "shmutils/fixtures/unique_name.hpp"
#include "shmutils/framework/builtin_scenarios.hpp"
#include "shmutils/framework/child_process.hpp"
#include "shmutils/framework/pid_namespace.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/mutex.hpp"
#include "test_support.hpp"

namespace shmutils::fixtures {
namespace {

// The failures f reports, captured instead of recorded, as searchable text.
struct Intercepted {
  std::vector<::testing::TestPartResult> results;
  std::string text() const {
    std::string all;
    for (const auto& r : results) {
      all += std::string(r.file_name() != nullptr ? r.file_name() : "-") + ":" +
             std::to_string(r.line_number()) + ": " + r.message() + "\n";
    }
    return all;
  }
  bool says(std::string_view what) const { return text().find(what) != std::string::npos; }
};

template <class F>
Intercepted intercept(F&& f) {
  ::testing::TestPartResultArray results;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &results);
    f();
  }
  Intercepted out;
  for (int i = 0; i < results.size(); ++i) out.results.push_back(results.GetTestPartResult(i));
  return out;
}

// A lock, a counter and where each child mapped the segment.
struct Shared {
  Mutex lock;
  std::uint64_t counter;
  std::array<std::atomic<std::uintptr_t>, 8> bases;
};
Shared& shared_of(Segment& segment) {
  return *reinterpret_cast<Shared*>(segment.user_area().data());
}

void count_under_lock(Segment& segment, int times) {
  Shared& shared = shared_of(segment);
  for (int i = 0; i < times; ++i) {
    MutexGuard guard(shared.lock);
    ++shared.counter;
  }
}

[[gnu::noinline]] void crash_in_child() {
  // An unmapped address that is not null (UBSan would stop a null store
  // itself); volatile so the compiler keeps the store.
  auto* volatile nowhere =
      reinterpret_cast<volatile int*>(16);  // NOLINT(performance-no-int-to-ptr)
  *nowhere = 1;                             // SIGSEGV on purpose
}

[[gnu::noinline]] void hang_in_child() {
  for (;;) sys::sleep_ns(1'000'000'000);
}

TEST(ChildrenTest, AChildsAssertionFailureFailsTheParentAtItsFileAndLine) {
  Intercepted got = intercept([] {
    ChildrenReport report = run_children(3, [](ChildContext& child) {
      if (child.index() == 1) {
        EXPECT_EQ(child.index(), 7U) << "marker, line " << __LINE__;
      }
    });
    EXPECT_EQ(report.children.size(), 3U);
    EXPECT_TRUE(report.children[0].ok() && report.children[2].ok());
    EXPECT_FALSE(report.children[1].ok());
  });
  ASSERT_EQ(got.results.size(), 1U) << got.text();
  const ::testing::TestPartResult& failure = got.results[0];
  EXPECT_TRUE(failure.nonfatally_failed());
  EXPECT_NE(std::string(failure.file_name()).find("fixtures_test.cpp"), std::string::npos);
  std::string message = failure.message();
  EXPECT_NE(message.find("child 1 (pid "), std::string::npos) << message;
  EXPECT_NE(message.find("marker, line " + std::to_string(failure.line_number())),
            std::string::npos)
      << message;
}

TEST(ChildrenTest, ACrashedChildFailsTheParentWithItsSignalAndStack) {
  Intercepted got = intercept([] {
    run_children(2, [](ChildContext& child) {
      if (child.index() == 0) crash_in_child();
    });
  });
  ASSERT_EQ(got.results.size(), 1U) << got.text();
  EXPECT_TRUE(got.says("child 0")) << got.text();
  EXPECT_TRUE(got.says("crashed with SIGSEGV")) << got.text();
  EXPECT_TRUE(got.says("crash_in_child")) << "no stack frame names the function:\n" << got.text();
}

TEST(ChildrenTest, AHungChildIsKilledAtTheDeadlineWithItsStack) {
  ChildrenOptions options;
  options.deadline = std::chrono::milliseconds(300);
  Intercepted got = intercept([&] {
    ChildrenReport report = run_children(
        2,
        [](ChildContext& child) {
          if (child.index() == 1) hang_in_child();
        },
        options);
    EXPECT_TRUE(report.children[1].hung);
    EXPECT_TRUE(report.children[0].ok());
  });
  ASSERT_EQ(got.results.size(), 1U) << got.text();
  EXPECT_TRUE(got.says("child 1")) << got.text();
  EXPECT_TRUE(got.says("still running at the deadline")) << got.text();
  EXPECT_TRUE(got.says("hang_in_child")) << got.text();
}

TEST(ChildrenTest, AnEscapingExceptionAndAnExitCodeAreFailures) {
  Intercepted got = intercept([] {
    run_children(2, [](ChildContext& child) {
      if (child.index() == 0) throw std::runtime_error("thrown in the child");
      ::_exit(3);  // not exit(): that would run the parent's static destructors
    });
  });
  EXPECT_EQ(got.results.size(), 2U) << got.text();
  EXPECT_TRUE(got.says("uncaught exception: thrown in the child")) << got.text();
  EXPECT_TRUE(got.says("ended with exit code 3")) << got.text();
}

// The seed's example: two processes counting to 20,000 under a shared lock,
// each with the segment mapped at its own address.
TEST(ChildrenTest, ForkedChildrenCountExactlyAtTheirOwnAddresses) {
  Segment segment = Segment::create_anonymous(1 << 20);
  ChildrenOptions options;
  options.segment = &segment;
  ChildrenReport report = run_children(
      2,
      [](ChildContext& child) {
        Segment& own = child.segment();
        shared_of(own).bases[child.index()] =
            reinterpret_cast<std::uintptr_t>(own.user_area().data());
        count_under_lock(own, 10'000);
      },
      options);
  EXPECT_TRUE(report.ok());
  Shared& shared = shared_of(segment);
  EXPECT_EQ(shared.counter, 20'000U);
  std::set<std::uintptr_t> bases{reinterpret_cast<std::uintptr_t>(segment.user_area().data()),
                                 shared.bases[0], shared.bases[1]};
  EXPECT_EQ(bases.size(), 3U) << "every child maps the segment at its own address";
}

// Children of separate containers: each in a PID namespace of its own (where
// this process may create them), still counting exactly under one lock, and a
// crash among them still reported with its stack.
TEST(ChildrenTest, ChildrenInPidNamespacesOfTheirOwnCountExactlyAndCrashWithAStack) {
  if (auto why = framework::pid_namespaces_unavailable()) GTEST_SKIP() << *why;
  Segment segment = Segment::create_anonymous(1 << 20);
  ChildrenOptions options;
  options.segment = &segment;
  options.pid_namespaces = true;
  ChildrenReport report = run_children(
      3,
      [](ChildContext& child) {
        Segment& own = child.segment();
        Shared& shared = shared_of(own);
        shared.bases[child.index()] = sys::pid_namespace_id();
        count_under_lock(own, 5'000);
        // A namespace's id is reused once it is gone: all three stay until
        // each has recorded its own.
        std::atomic<std::uintptr_t>& arrived = shared.bases[7];
        arrived.fetch_add(1);
        const std::uint64_t deadline = sys::monotonic_ns() + 30'000'000'000ULL;
        while (arrived.load() < child.count() && sys::monotonic_ns() < deadline) {
          sys::sleep_ns(1'000'000);
        }
        ASSERT_EQ(arrived.load(), child.count()) << "the other children never arrived";
      },
      options);
  EXPECT_TRUE(report.ok()) << report.describe();
  Shared& shared = shared_of(segment);
  EXPECT_EQ(shared.counter, 15'000U);
  std::set<std::uintptr_t> namespaces{sys::pid_namespace_id(), shared.bases[0], shared.bases[1],
                                      shared.bases[2]};
  EXPECT_EQ(namespaces.size(), 4U) << "every child runs in a PID namespace of its own";
  Intercepted got = intercept([&] {
    run_children(
        2,
        [](ChildContext& child) {
          if (child.index() == 1) crash_in_child();
        },
        options);
  });
  ASSERT_EQ(got.results.size(), 1U) << got.text();
  EXPECT_TRUE(got.says("crashed with SIGSEGV")) << got.text();
  EXPECT_TRUE(got.says("crash_in_child")) << "no stack frame names the function:\n" << got.text();
}

TEST(ChildrenTest, SpawnedChildrenRefusePidNamespaces) {
  ChildrenOptions options;
  options.pid_namespaces = true;
  EXPECT_EQ(test::kind_of([&] { spawn_children(1, "count_to_ten_thousand", options); }),
            ErrorKind::NotSupported);
}

SHMUTILS_CHILD_ENTRY(count_to_ten_thousand) { count_under_lock(context.segment(), 10'000); }

SHMUTILS_CHILD_ENTRY(fail_in_spawned_child) {
  EXPECT_EQ(context.count(), 99U) << "spawned marker " << context.index();
}

TEST(ChildrenTest, SpawnedChildrenCountExactlyAndReportFailures) {
  Segment segment = Segment::create_anonymous(1 << 20);
  ChildrenOptions options;
  options.segment = &segment;
  ChildrenReport report = spawn_children(2, "count_to_ten_thousand", options);
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(shared_of(segment).counter, 20'000U);

  Intercepted got = intercept([] { spawn_children(2, "fail_in_spawned_child"); });
  EXPECT_EQ(got.results.size(), 2U) << got.text();
  EXPECT_TRUE(got.says("spawned marker 0") && got.says("spawned marker 1")) << got.text();
  EXPECT_TRUE(got.says("fixtures_test.cpp")) << got.text();
}

SHMUTILS_CHILD_ENTRY(crash_in_spawned_child) { crash_in_child(); }

// A child beside the test: its failure lands at its file:line when the test
// finishes it; one the test kills is expected to die of SIGKILL, and one that
// outlives a planned death is the failure.
TEST(ChildrenTest, AStartedChildIsReportedWhenFinishedOrKilled) {
  Intercepted failed = intercept([] {
    RunningChild child =
        start_child([](ChildContext&) { EXPECT_EQ(1 + 1, 3) << "started marker"; });
    EXPECT_FALSE(child.finish().ok());
  });
  EXPECT_TRUE(failed.says("started marker") && failed.says("fixtures_test.cpp")) << failed.text();

  Intercepted killed = intercept([] {
    RunningChild child = start_child([](ChildContext&) { hang_in_child(); });
    EXPECT_TRUE(child.kill().ok());
  });
  EXPECT_TRUE(killed.results.empty()) << killed.text();

  Intercepted outlived = intercept([] {
    RunningChild child = start_child([](ChildContext&) {}, {.expected_signal = SIGKILL});
    EXPECT_FALSE(child.finish().ok());
  });
  EXPECT_TRUE(outlived.says("the planned death never came")) << outlived.text();
}

class SharedObjectsFixtureTest : public SharedObjectsTest {};

// A child that hangs on a lock is reported with its stack and who holds it.
TEST_F(SharedObjectsFixtureTest, AHungChildIsReportedWithTheLockHolders) {
  auto* mutex = make<Mutex>();
  watch_lock("the test's mutex", [mutex] { return mutex->holder(); });
  ASSERT_EQ(mutex->acquire(), LockResult::Acquired);
  Intercepted got = intercept([&] {
    RunningChild child = start([mutex](ChildContext&) { MutexGuard guard(*mutex); },
                               {.deadline = std::chrono::milliseconds(300)});
    EXPECT_TRUE(child.finish().hung);
  });
  mutex->release();
  EXPECT_TRUE(got.says("still running at the deadline")) << got.text();
  EXPECT_TRUE(got.says("the test's mutex: pid " + std::to_string(sys::getpid()))) << got.text();
  EXPECT_TRUE(got.says("Mutex::acquire")) << "no stack names where it waits:\n" << got.text();
}

// A spawned child is supervised as a forked one is: its crash stops it, and
// the parent reports the signal and the faulting stack.
TEST(ChildrenTest, ASpawnedChildThatCrashesIsReportedWithItsStack) {
  ChildrenOptions options;
  options.fail_test = false;
  ChildrenReport report = spawn_children(1, "crash_in_spawned_child", options);
  ASSERT_EQ(report.children.size(), 1U);
  EXPECT_TRUE(report.children[0].crashed) << report.describe();
  EXPECT_EQ(report.children[0].status.signal, SIGSEGV) << report.describe();
  EXPECT_NE(report.children[0].stack.find("crash_in_child"), std::string::npos)
      << report.describe();
}

TEST(ChildrenTest, AnUnknownSpawnEntryIsAClearError) {
  EXPECT_EQ(test::kind_of([] { spawn_children(1, "no_such_entry"); }), ErrorKind::InvalidArgument);
}

TEST(TestSeedTest, StableWithinATestAndOverriddenForAReplay) {
  std::uint64_t seed = test_seed();
  EXPECT_EQ(seed, test_seed());
  EXPECT_NE(seed, 0U);
  ::setenv("SHMUTILS_TEST_SEED", "12345", 1);  // NOLINT(concurrency-mt-unsafe): test thread only
  EXPECT_EQ(test_seed(), 12345U);
  EXPECT_NE(replay_command(12345).find("SHMUTILS_TEST_SEED=12345 "), std::string::npos);
  EXPECT_NE(replay_command(12345).find("--gtest_filter='TestSeedTest.StableWithinATest"),
            std::string::npos)
      << replay_command(12345);
  ::setenv("SHMUTILS_TEST_SEED", "twelve", 1);  // NOLINT(concurrency-mt-unsafe)
  EXPECT_EQ(test::kind_of([] { test_seed(); }), ErrorKind::InvalidArgument);
  ::unsetenv("SHMUTILS_TEST_SEED");  // NOLINT(concurrency-mt-unsafe)
}

TEST(TestSeedTest, DependsOnTheShard) {
  // Put back afterwards: this very run may be a shard.
  const char* shard = std::getenv("GTEST_SHARD_INDEX");  // NOLINT(concurrency-mt-unsafe)
  const std::string saved = shard != nullptr ? shard : "";
  std::uint64_t before = test_seed();
  ::setenv("GTEST_SHARD_INDEX", saved == "3" ? "4" : "3", 1);  // NOLINT(concurrency-mt-unsafe)
  std::uint64_t other_shard = test_seed();
  if (shard != nullptr) {
    ::setenv("GTEST_SHARD_INDEX", saved.c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
  } else {
    ::unsetenv("GTEST_SHARD_INDEX");  // NOLINT(concurrency-mt-unsafe)
  }
  EXPECT_NE(before, other_shard);
  EXPECT_EQ(before, test_seed());
}

// Crashes with a SegmentTest segment open: the crash handler must remove it.
class CrashingSegmentTest : public SegmentTest {};
TEST_F(CrashingSegmentTest, DISABLED_CrashesWithTheSegmentOpen) {
  ASSERT_TRUE(segment_.valid());
  crash_in_child();
}

TEST(SegmentFixtureTest, TheSegmentIsRemovedWhenTheTestCrashes) {
  test::IsolatedRun run = test::run_alone("CrashingSegmentTest.DISABLED_CrashesWithTheSegmentOpen");
  // It dies of SIGSEGV (or, under AddressSanitizer, exits after its report).
  EXPECT_TRUE(run.failed) << run.output;
  EXPECT_EQ(run.output.find("[       OK ]"), std::string::npos) << run.output;
  std::string prefix = std::string(kTestNamePrefix) + std::to_string(run.pid) + "-";
  for (const std::string& name : sys::list_shm_names()) {
    EXPECT_NE(name.rfind(prefix, 0), 0U) << name << " survived the crash";
    if (name.rfind(prefix, 0) == 0) sys::shm_unlink_if_exists(name);
  }
}

// Hangs with a child that hangs too: the deadline listener must end it.
TEST(DeadlineSelfTest, DISABLED_HangsWithAChild) {
  framework::ChildProcess child = framework::ChildProcess::fork([] {
    hang_in_child();
    return 0;
  });
  hang_in_child();
}

// Hangs polling its hung child as fast as it can: the deadline's stack
// capture must not wait forever for a stop this thread's polls take first.
TEST(DeadlineSelfTest, DISABLED_HangsPollingAChild) {
  framework::ChildProcess child = framework::ChildProcess::fork([] {
    hang_in_child();
    return 0;
  });
  while (child.poll() != framework::ChildProcess::State::Ended) {
  }
}

TEST(DeadlineTest, AHungTestPollingItsChildEndsAtItsDeadlineWithTheChildsStack) {
  test::IsolatedRun run =
      test::run_alone("DeadlineSelfTest.DISABLED_HangsPollingAChild", "SHMUTILS_TEST_DEADLINE_S=1");
  EXPECT_TRUE(run.status.exited && run.status.exit_code == 124) << run.status.to_string();
  EXPECT_NE(run.output.find("hang_in_child"), std::string::npos) << "no stack of the hung child:\n"
                                                                 << run.output;
}

TEST(DeadlineTest, AHungTestEndsAtItsDeadlineWithItsChildrensStacks) {
  test::IsolatedRun run =
      test::run_alone("DeadlineSelfTest.DISABLED_HangsWithAChild", "SHMUTILS_TEST_DEADLINE_S=1");
  EXPECT_TRUE(run.status.exited && run.status.exit_code == 124) << run.status.to_string();
  EXPECT_NE(
      run.output.find("DeadlineSelfTest.DISABLED_HangsWithAChild exceeded its deadline of 1 s"),
      std::string::npos)
      << run.output;
  EXPECT_NE(run.output.find("hang_in_child"), std::string::npos) << "no stack of the hung child:\n"
                                                                 << run.output;
}

// The plan explores with the test's seed (a new one per run of the program,
// SHMUTILS_TEST_SEED to replay) unless the test names one.
TEST(FaultInjectionTest, ACorrectCounterSurvivesItsKillPlanSeededByTheTest) {
  framework::CounterScenario scenario;
  KillPlan plan;
  plan.run.workers = 3;
  plan.run.duration_s = 0.5;
  plan.run.max_kills = 30;
  plan.min_kills = 5;
  framework::RunReport report = expect_survives_kills(scenario, plan);
  EXPECT_GE(report.kills, 5U);
  EXPECT_EQ(report.seed, test_seed());
  plan.run.seed = 99;
  plan.run.max_kills = plan.min_kills;
  EXPECT_EQ(expect_survives_kills(scenario, plan).seed, 99U);
}

TEST(FaultInjectionTest, ASkippedRepairFailsWithTheSeedAndTheReplayCommand) {
  framework::SkipRepairCounter scenario;
  KillPlan plan;
  plan.run.seed = 77;
  plan.run.workers = 3;
  plan.run.duration_s = 3;
  plan.run.max_kills = 200;
  plan.run.program = "shmutils_tests";
  Intercepted got = intercept([&] { expect_survives_kills(scenario, plan); });
  ASSERT_EQ(got.results.size(), 1U) << "the planted bug went unnoticed";
  EXPECT_TRUE(got.says("seed 77")) << got.text();
  EXPECT_TRUE(got.says("SHMUTILS_TEST_SEED=77 ")) << got.text();
  EXPECT_TRUE(got.says("--replay shmutils1:counter-skip-repair")) << got.text();
}

}  // namespace
}  // namespace shmutils::fixtures
