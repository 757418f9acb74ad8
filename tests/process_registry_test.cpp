#include "shmutils/shm/process_registry.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>

#include "shmutils/fixtures/children.hpp"
#include "shmutils/fixtures/segment_test.hpp"
#include "shmutils/framework/kill_at.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/segment.hpp"
#include "test_support.hpp"

namespace shmutils {
namespace {

class ProcessRegistryTest : public fixtures::SegmentTest {
 protected:
  SegmentOptions segment_options() const override { return {.max_processes = 4}; }

  // A child that attaches and is then SIGKILLed: its slot stays claimed.
  pid_t attach_and_die() {
    EXPECT_TRUE(fixtures::run_in_child(
                    [&](fixtures::ChildContext&) {
                      Segment mine = Segment::open(name_);
                      ::kill(::getpid(), SIGKILL);
                    },
                    {.expected_signal = SIGKILL})
                    .ok());
    for (const SlotInfo& slot : segment_.registry().slots()) {
      if (slot.pid != ::getpid()) return slot.pid;
    }
    return 0;
  }
};

TEST_F(ProcessRegistryTest, AnAttachmentHoldsASlotWithPidAndStartTime) {
  auto slots = segment_.registry().slots();
  ASSERT_EQ(slots.size(), 1U);
  EXPECT_EQ(slots[0].pid, ::getpid());
  EXPECT_EQ(slots[0].state, SlotState::Live);
  EXPECT_EQ(slots[0].start_time, *sys::process_start_time(::getpid()));
  EXPECT_TRUE(slots[0].alive);
  EXPECT_GT(slots[0].attached_ns, 0U);
  EXPECT_TRUE(segment_.registry().dead_slots().empty());
}

TEST_F(ProcessRegistryTest, AForkedChildNeverFreesItsParentsSlot) {
  ASSERT_TRUE(fixtures::run_in_child([&](fixtures::ChildContext&) {
                Segment copy = std::move(segment_);  // the child's copy of the parent's attachment
                copy.close();
              }).ok());
  auto slots = segment_.registry().slots();
  ASSERT_EQ(slots.size(), 1U);
  EXPECT_EQ(slots[0].pid, ::getpid());
}

TEST_F(ProcessRegistryTest, AKilledProcessIsDetectedAndReapedThroughCallbacks) {
  pid_t victim = attach_and_die();
  ASSERT_NE(victim, 0);
  auto dead = segment_.registry().dead_slots();
  ASSERT_EQ(dead.size(), 1U);
  EXPECT_EQ(dead[0].pid, victim);
  std::vector<pid_t> reaped;
  segment_.registry().add_reaper("test", [&](const SlotInfo& slot) { reaped.push_back(slot.pid); });
  EXPECT_EQ(segment_.registry().reap_dead(), 1U);
  EXPECT_EQ(reaped, std::vector<pid_t>{victim});
  EXPECT_EQ(segment_.registry().slots().size(), 1U);
  EXPECT_EQ(segment_.registry().reaped_total(), 1U);
  EXPECT_EQ(segment_.registry().reap_dead(), 0U) << "nothing left to reap";
}

TEST_F(ProcessRegistryTest, ARecycledPidWithAnotherStartTimeIsDead) {
  // A slot naming this very (live) pid but another start time is what a dead
  // process whose pid was reused looks like.
  RegistrySlot& slot = segment_.registry().table()->slot(3);
  slot.start_time.store(*sys::process_start_time(::getpid()) + 12345);
  slot.word.store((std::uint64_t{static_cast<std::uint32_t>(SlotState::Live)} << 32) |
                  static_cast<std::uint32_t>(::getpid()));
  auto dead = segment_.registry().dead_slots();
  ASSERT_EQ(dead.size(), 1U);
  EXPECT_EQ(dead[0].index, 3U);
  EXPECT_EQ(dead[0].pid, ::getpid());
  EXPECT_EQ(segment_.registry().reap_dead(), 1U);
  ASSERT_EQ(segment_.registry().slots().size(), 1U);
  EXPECT_TRUE(segment_.registry().slots()[0].alive) << "our own slot survived";
}

TEST_F(ProcessRegistryTest, AReaperKilledMidReapLeavesTheSlotForTheNextReaper) {
  pid_t victim = attach_and_die();
  ASSERT_NE(victim, 0);
  ASSERT_TRUE(fixtures::run_in_child(
                  [&](fixtures::ChildContext&) {
                    Segment reaper = Segment::open(name_);
                    framework::ScopedKillAt kill("registry.reap.before_free");
                    reaper.registry().reap_dead();
                  },
                  {.expected_signal = SIGKILL})
                  .ok());
  // The victim's slot is Reaping with a dead reaper; the reaper's own slot is dead too.
  std::vector<pid_t> reaped;
  segment_.registry().add_reaper("again",
                                 [&](const SlotInfo& slot) { reaped.push_back(slot.pid); });
  EXPECT_EQ(segment_.registry().reap_dead(), 2U) << "the robust reap lock was recovered";
  EXPECT_NE(std::find(reaped.begin(), reaped.end(), victim), reaped.end())
      << "the callbacks ran again for the half-reaped slot";
  EXPECT_EQ(segment_.registry().slots().size(), 1U);
}

TEST_F(ProcessRegistryTest, AFullTableReapsTheDeadBeforeGivingUp) {
  std::vector<Segment> attachments;
  for (int i = 0; i < 3; ++i) attachments.push_back(Segment::open(name_));
  try {
    Segment::open(name_);
    FAIL() << "a fifth attachment fit into four slots";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NoSpace);
  }
  attachments.pop_back();
  pid_t victim = attach_and_die();  // takes the free slot and dies in it
  ASSERT_NE(victim, 0);
  Segment late = Segment::open(name_);  // succeeds by reaping the dead slot
  EXPECT_TRUE(late.registration().valid());
  EXPECT_EQ(segment_.registry().reaped_total(), 1U);
}

// Two attachers find the table full at once; the first reaps every dead slot.
// The second's own reap then finds nothing to free, yet slots are free: it
// must look again, not report a table full of live processes (under load this
// failed replacement workers of the main job).
TEST_F(ProcessRegistryTest, AFullTableReapedByAnotherAttacherFirstStillAttaches) {
  std::vector<Segment> attachments;
  for (int i = 0; i < 2; ++i) attachments.push_back(Segment::open(name_));
  ASSERT_NE(attach_and_die(), 0);
  std::size_t reaped_by_the_other = 0;
  FaultHookFunction another_attacher_reaps([&](const FaultPoint& point, std::uint64_t) {
    if (point.name() == "registry.attach.table_full" && reaped_by_the_other == 0)
      reaped_by_the_other = segment_.registry().reap_dead();
    return FaultAction::Continue;
  });
  ScopedFaultHook hook(another_attacher_reaps);
  Segment late = Segment::open(name_);
  EXPECT_EQ(reaped_by_the_other, 1U) << "the window was not reached with a dead slot to reap";
  EXPECT_TRUE(late.registration().valid());
}

}  // namespace
}  // namespace shmutils
