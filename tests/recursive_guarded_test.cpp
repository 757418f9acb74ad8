#include <gtest/gtest.h>
#include <unistd.h>

#include <stdexcept>

#include "shmutils/fixtures/shared_objects_test.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/guarded.hpp"
#include "shmutils/shm/recursive_mutex.hpp"

namespace shmutils {
namespace {

using namespace std::chrono_literals;

class RecursiveMutexTest : public fixtures::SharedObjectsTest {};

TEST_F(RecursiveMutexTest, TheHoldingThreadNestsAndReleasesLevelByLevel) {
  auto* mutex = make<RecursiveMutex>();
  EXPECT_EQ(mutex->acquire(), LockResult::Acquired);
  EXPECT_EQ(mutex->acquire(), LockResult::Acquired);
  EXPECT_EQ(mutex->try_acquire(), LockResult::Acquired);
  EXPECT_EQ(mutex->depth(), 3U);
  auto other = start(
      [mutex](fixtures::ChildContext&) { EXPECT_EQ(mutex->try_acquire(), LockResult::Busy); });
  EXPECT_TRUE(other.finish().ok());
  mutex->release();
  mutex->release();
  EXPECT_EQ(mutex->depth(), 1U);
  mutex->release();
  EXPECT_EQ(mutex->depth(), 0U);
  EXPECT_THROW(mutex->release(), Error) << "one release too many";
}

TEST_F(RecursiveMutexTest, AHolderKilledAtDepthThreeLeavesItWholeToTheNextAcquirer) {
  auto* mutex = make<RecursiveMutex>();
  auto* held = make<Event>();
  auto child = start([mutex, held](fixtures::ChildContext&) {
    for (int i = 0; i < 3; ++i) (void)mutex->acquire();
    held->set();
    ::pause();
  });
  ASSERT_TRUE(fixtures::await(*held));
  child.kill();
  EXPECT_EQ(mutex->acquire(), LockResult::OwnerDied);
  EXPECT_EQ(mutex->depth(), 1U) << "the dead holder's depth is not inherited";
  EXPECT_EQ(mutex->acquire(), LockResult::OwnerDied) << "nested, repair still pending";
  mutex->mark_consistent();
  mutex->release();
  mutex->release();
  EXPECT_EQ(mutex->acquire(), LockResult::Acquired);
  mutex->release();
}

// An account whose two fields a transfer changes one after the other.
struct Ledger {
  std::int64_t from = 1000;
  std::int64_t to = 0;
  std::int64_t in_flight = 0;  // amount taken from `from`, not yet given to `to`
  std::uint32_t repairs = 0;
  static inline bool fail_repair = false;  // process-local: set by the test process only
  void repair() {
    if (fail_repair) throw std::runtime_error("repair failed");
    to += in_flight;  // roll forward
    in_flight = 0;
    ++repairs;
  }
  bool balanced() const { return from + to + in_flight == 1000 && in_flight == 0; }
};

class GuardedTest : public fixtures::SharedObjectsTest {
 protected:
  void SetUp() override {
    SharedObjectsTest::SetUp();
    ledger_ = make<Guarded<Ledger>>();
    stopped_ = make<Event>();
    watch_lock("ledger", [this] { return ledger_->mutex().holder(); });
  }
  // A child that dies in the middle of a transfer.
  void transfer_and_die() {
    auto* ledger = ledger_;
    auto* stopped = stopped_;
    stopped_->reset();
    auto child = start([ledger, stopped](fixtures::ChildContext&) {
      auto access = ledger->lock();
      access->from -= 100;
      access->in_flight += 100;
      stopped->set();
      ::pause();
    });
    ASSERT_TRUE(fixtures::await(*stopped_));
    child.kill();
  }
  Guarded<Ledger>* ledger_ = nullptr;
  Event* stopped_ = nullptr;
};

TEST_F(GuardedTest, TheRepairRoutineRunsOnceForTheNextAccessAfterADeath) {
  transfer_and_die();
  {
    auto access = ledger_->lock();
    EXPECT_TRUE(access.repaired());
    EXPECT_TRUE(access->balanced());
    EXPECT_EQ(access->to, 100);
  }
  auto again = ledger_->lock();
  EXPECT_FALSE(again.repaired());
  EXPECT_EQ(again->repairs, 1U);
}

TEST_F(GuardedTest, ARepairerKilledMidRepairLeavesItToTheNext) {
  transfer_and_die();
  auto* ledger = ledger_;
  auto* stopped = stopped_;
  stopped_->reset();
  auto repairer = start([ledger, stopped](fixtures::ChildContext&) {
    // Take the raw lock as the repairer would and die before marking it.
    ASSERT_EQ(ledger->mutex().acquire(), LockResult::OwnerDied);
    stopped->set();
    ::pause();
  });
  ASSERT_TRUE(fixtures::await(*stopped_));
  repairer.kill();
  auto access = ledger_->lock();
  EXPECT_TRUE(access.repaired());
  EXPECT_TRUE(access->balanced());
}

TEST_F(GuardedTest, AThrowingRepairLeavesTheMutexNeedingRepair) {
  transfer_and_die();
  Ledger::fail_repair = true;
  EXPECT_THROW((void)ledger_->lock(), std::runtime_error);
  EXPECT_EQ(ledger_->mutex().state(), Mutex::State::NeedsRepair);
  EXPECT_EQ(ledger_->mutex().holder().tid, 0) << "the failed access released the lock";
  Ledger::fail_repair = false;
  auto access = ledger_->lock();
  EXPECT_TRUE(access.repaired());
  EXPECT_TRUE(access->balanced());
}

TEST_F(GuardedTest, AnAbandonedRepairMakesEveryLaterAccessThrow) {
  transfer_and_die();
  ASSERT_EQ(ledger_->mutex().acquire(), LockResult::OwnerDied);
  ledger_->mutex().abandon_repair();
  ledger_->mutex().release();
  EXPECT_THROW((void)ledger_->lock(), Error);
  EXPECT_FALSE(ledger_->try_lock().has_value());
}

}  // namespace
}  // namespace shmutils
