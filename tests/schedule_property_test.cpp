// The schedule generators shrink towards the smallest failure: fewer steps,
// fewer workers, fewer and earlier kills. Each test follows rapidcheck's own
// shrinking (the first shrink that still fails, until none does) from a
// failing value and checks where it ends.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <algorithm>

#include "shmutils/fixtures/test_seed.hpp"
#include "shmutils/properties/schedules.hpp"

namespace shmutils::properties {
namespace {

// The value rapidcheck would report for a property that fails on `fails`:
// generate until a value fails, then take failing shrinks while there are any.
template <class T, class Fails>
T minimal_failure(const rc::Gen<T>& gen, Fails fails) {
  const std::uint64_t seed = fixtures::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (replay: SHMUTILS_TEST_SEED)");
  for (std::uint64_t attempt = 0; attempt < 10'000; ++attempt) {
    rc::Shrinkable<T> current = gen(rc::Random(seed + attempt), 100);
    if (!fails(current.value())) continue;
    for (bool moved = true; moved;) {
      moved = false;
      rc::Seq<rc::Shrinkable<T>> shrinks = current.shrinks();
      while (rc::Maybe<rc::Shrinkable<T>> next = shrinks.next()) {
        if (fails(next->value())) {
          current = *next;
          moved = true;
          break;
        }
      }
    }
    return current.value();
  }
  ADD_FAILURE() << "no generated value failed";
  return {};
}

TEST(ScheduleShrinkTest, AKillScheduleShrinksToOneKillAsEarlyAsTheFailureAllows) {
  // Fails when worker 1 or above is killed at step 3 or later.
  KillSchedule minimal = minimal_failure(kill_schedule(20, 4, 3), [](const KillSchedule& s) {
    return std::any_of(s.kills.begin(), s.kills.end(),
                       [](const Kill& k) { return k.at_step >= 3 && k.worker >= 1; });
  });
  ASSERT_EQ(minimal.kills.size(), 1U) << minimal;
  EXPECT_EQ(minimal.kills[0].at_step, 3U) << minimal;
  EXPECT_EQ(minimal.kills[0].worker, 1U) << minimal;
  EXPECT_EQ(minimal.kills[0].hit, 1U) << minimal;
}

TEST(ScheduleShrinkTest, KillSchedulesStayWithinTheirBoundsAndAreOrdered) {
  std::size_t most = 0;
  for (int seed = 0; seed < 200; ++seed) {
    KillSchedule s =
        kill_schedule(10, 3, 2)(rc::Random(static_cast<std::uint64_t>(seed)), 100).value();
    EXPECT_LE(s.kills.size(), 2U) << s;
    EXPECT_TRUE(std::is_sorted(s.kills.begin(), s.kills.end(), [](const Kill& a, const Kill& b) {
      return a.at_step < b.at_step;
    })) << s;
    for (const Kill& k : s.kills) EXPECT_TRUE(k.at_step < 10 && k.worker < 3 && k.hit >= 1) << s;
    most = std::max(most, s.kills.size());
  }
  EXPECT_EQ(most, 2U) << "the schedules never used their kills";
}

TEST(ScheduleShrinkTest, ALockScheduleShrinksToTheFewestWorkersAndSteps) {
  // Fails when worker 2 releases something.
  LockSchedule minimal = minimal_failure(lock_schedule(5), [](const LockSchedule& s) {
    return std::any_of(s.steps.begin(), s.steps.end(), [](const LockStep& step) {
      return step.worker == 2 && step.action == LockStep::Action::Release;
    });
  });
  EXPECT_EQ(minimal.workers, 3U) << minimal;
  ASSERT_EQ(minimal.steps.size(), 1U) << minimal;
  EXPECT_EQ(minimal.steps[0].worker, 2U) << minimal;
}

TEST(ScheduleShrinkTest, AnAllocationScriptShrinksToTheStepsThatMatter) {
  // Fails when a large allocation is followed by a free.
  AllocationScript minimal = minimal_failure(allocation_script(), [](const AllocationScript& s) {
    auto large = std::find_if(s.begin(), s.end(), [](const AllocationStep& step) {
      return step.kind == AllocationStep::Kind::Allocate && step.size >= 5000;
    });
    return large != s.end() && std::any_of(large, s.end(), [](const AllocationStep& step) {
             return step.kind == AllocationStep::Kind::Free;
           });
  });
  ASSERT_EQ(minimal.size(), 2U);
  EXPECT_EQ(minimal[0].kind, AllocationStep::Kind::Allocate);
  EXPECT_EQ(minimal[0].size, 5000U);
  EXPECT_EQ(minimal[0].alignment, 16U);
  EXPECT_EQ(minimal[1].kind, AllocationStep::Kind::Free);
  EXPECT_EQ(minimal[1].pick, 0U);
}

}  // namespace
}  // namespace shmutils::properties
