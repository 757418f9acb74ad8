// Liveness across PID namespaces: a process in another namespace (a container
// sharing /dev/shm) is never taken for dead while it lives, and its death is
// still detected.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>

#include "namespace_support.hpp"
#include "shmctl_support.hpp"
#include "shmutils/fixtures/children.hpp"
#include "shmutils/fixtures/segment_test.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/segment.hpp"
#include "shmutils/shm/semaphore.hpp"

namespace shmutils {
namespace {

using namespace std::chrono_literals;

// What the holder in the other namespace and the checker here share.
struct Shared {
  Mutex mutex;
  Semaphore units{2};
  std::atomic<std::uint32_t> phase;  // 1: holder holds; 2: checker done; 3: holder released
  std::atomic<std::int32_t> holder_pid_there;
};

// Waits (bounded) until phase reaches at least `wanted`.
bool await_phase(const Shared& shared, std::uint32_t wanted) {
  const std::uint64_t until = sys::monotonic_ns() + 20'000'000'000ULL;
  while (shared.phase.load() < wanted) {
    if (sys::monotonic_ns() > until) return false;
    sys::sleep_ns(1'000'000);
  }
  return true;
}

// The parameter: whether the other namespace has a /proc of its own.
class PidNamespaceTest : public fixtures::SegmentTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    SegmentTest::SetUp();
    new (segment_.user_area().data()) Shared();
    if (auto why = test::pid_namespaces_unavailable()) GTEST_SKIP() << *why;
  }
  Shared& shared() { return *reinterpret_cast<Shared*>(segment_.user_area().data()); }
};

TEST_P(PidNamespaceTest, AHolderInAnotherNamespaceIsNeitherTimedOutNorReaped) {
  const std::string name = name_;
  const bool own_proc = GetParam();
  fixtures::ChildrenOptions options;
  options.segment = &segment_;
  fixtures::run_children(
      2,
      [name, own_proc](fixtures::ChildContext& child) {
        if (child.index() == 0) {
          int status = test::run_in_foreign_pid_namespace(
              [name] {
                Segment mine = Segment::open(name);
                auto& s = *reinterpret_cast<Shared*>(mine.user_area().data());
                MutexGuard guard(s.mutex);
                s.units.acquire(1);
                s.holder_pid_there = sys::getpid();
                s.phase = 1;
                if (!await_phase(s, 2)) return 2;
                guard.unlock();
                s.phase = 3;
                return 0;
              },
              own_proc);
          EXPECT_EQ(status, 0) << "the holder in the other namespace";
          return;
        }
        auto& s = *reinterpret_cast<Shared*>(child.segment().user_area().data());
        ASSERT_TRUE(await_phase(s, 1));
        const pid_t there = s.holder_pid_there.load();
        ASSERT_FALSE(sys::process_start_time(there).has_value())
            << "the test needs a pid that names no process here";
        // Several liveness-check periods: the holder still holds it.
        EXPECT_EQ(s.mutex.acquire_for(700ms), LockResult::TimedOut);
        bool seen = false;
        for (const SlotInfo& slot : child.segment().registry().slots()) {
          if (slot.pid != there) continue;
          seen = true;
          EXPECT_TRUE(slot.alive) << "slot " << slot.index << " of a live process";
          EXPECT_NE(slot.pid_namespace, sys::pid_namespace_id());
        }
        EXPECT_TRUE(seen) << "no registry slot names pid " << there;
        test::ToolRun inspect = test::shmctl({"--json", "inspect", name});
        ASSERT_EQ(inspect.code, 0) << inspect.out;
        bool shown = false;
        const nlohmann::json facts = inspect.json();
        for (const auto& process : facts["processes"]) {
          if (process["pid"].get<pid_t>() != there) continue;
          shown = true;
          EXPECT_TRUE(process["alive"].get<bool>()) << process.dump();
          EXPECT_EQ(process["namespace"], "another") << process.dump();
        }
        EXPECT_TRUE(shown) << inspect.out;
        EXPECT_EQ(child.segment().registry().reap_dead(), 0U) << "a live process was reaped";
        EXPECT_EQ(s.units.reclaim_dead(), 0U) << "a live process's semaphore unit was taken back";
        EXPECT_EQ(s.units.available(), 1U);
        s.phase = 2;
        ASSERT_TRUE(await_phase(s, 3));
        MutexGuard after(s.mutex);
        EXPECT_FALSE(after.owner_died()) << "the holder released it itself";
      },
      options);
}

TEST_P(PidNamespaceTest, AHolderKilledInAnotherNamespaceIsDetectedAndReaped) {
  const std::string name = name_;
  int status = test::run_in_foreign_pid_namespace(
      [name] {
        Segment mine = Segment::open(name);
        auto& s = *reinterpret_cast<Shared*>(mine.user_area().data());
        MutexGuard guard(s.mutex);
        s.units.acquire(2);
        s.holder_pid_there = sys::getpid();
        sys::raise_signal(SIGKILL);
        return 0;
      },
      GetParam());
  EXPECT_EQ(status, 128 + SIGKILL);
  EXPECT_EQ(shared().mutex.acquire_for(5s), LockResult::OwnerDied);
  shared().mutex.mark_consistent();
  shared().mutex.release();
  auto dead = segment_.registry().dead_slots();
  ASSERT_EQ(dead.size(), 1U);
  EXPECT_EQ(dead[0].pid, shared().holder_pid_there.load());
  EXPECT_EQ(segment_.registry().reap_dead(), 1U);
  // Reaped first: with its slot gone, its units are still known to be dead.
  EXPECT_EQ(shared().units.reclaim_dead(), 2U) << "the dead process's units came back";
  EXPECT_EQ(shared().units.available(), 2U);
  EXPECT_EQ(segment_.registry().slots().size(), 1U) << "only our own slot is left";
}

INSTANTIATE_TEST_SUITE_P(, PidNamespaceTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return param.param ? "WithItsOwnProc" : "SeeingOurProc";
                         });

}  // namespace
}  // namespace shmutils
