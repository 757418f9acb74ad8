#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "shmutils/fixtures/shared_objects_test.hpp"
#include "shmutils/framework/kill_at.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/semaphore.hpp"
#include "shmutils/shm/shared_mutex.hpp"

namespace shmutils {
namespace {

using namespace std::chrono_literals;

struct Table {
  SharedMutex lock;
  std::uint64_t left = 0;
  std::uint64_t right = 0;  // writers keep left == right
  std::atomic<std::uint32_t> readers_inside{0};
  std::atomic<std::uint32_t> max_readers_inside{0};
  std::atomic<std::uint64_t> torn_reads{0};
  Event holding;
};

class SharedMutexTest : public fixtures::SharedObjectsTest {
 protected:
  void SetUp() override {
    SharedObjectsTest::SetUp();
    table_ = make<Table>();
    watch_lock("table.lock (writer)", [this] { return table_->lock.writer(); });
  }
  Table* table_ = nullptr;
};

TEST_F(SharedMutexTest, ReadersShareAndWritersExcludeAcrossProcesses) {
  Table* t = table_;
  auto reader = [t] {
    for (int i = 0; i < 20'000; ++i) {
      if (t->lock.acquire_shared() != LockResult::Acquired) return 1;
      std::uint32_t inside = t->readers_inside.fetch_add(1) + 1;
      std::uint32_t max = t->max_readers_inside.load();
      while (inside > max && !t->max_readers_inside.compare_exchange_weak(max, inside)) {
      }
      if (t->left != t->right) t->torn_reads.fetch_add(1);
      t->readers_inside.fetch_sub(1);
      t->lock.release_shared();
    }
    return 0;
  };
  auto writer = [t] {
    for (int i = 0; i < 5'000; ++i) {
      if (t->lock.acquire() != LockResult::Acquired) return 1;
      if (t->readers_inside.load() != 0) return 2;  // a reader inside a write
      ++t->left;
      // Stay torn for a while, so a reader let in by mistake would see it.
      for (int spin = 0; spin < 2000; ++spin) std::atomic_signal_fence(std::memory_order_seq_cst);
      ++t->right;
      t->lock.release();
    }
    return 0;
  };
  std::vector<fixtures::RunningChild> children;
  for (int i = 0; i < 5; ++i) {
    children.push_back(
        start([&, i](fixtures::ChildContext&) { EXPECT_EQ(i < 3 ? reader() : writer(), 0); },
              {.deadline = 120s}));
  }
  for (auto& child : children) EXPECT_TRUE(child.finish().ok());
  EXPECT_EQ(table_->torn_reads.load(), 0U);
  EXPECT_EQ(table_->left, 10'000U);
  EXPECT_EQ(table_->right, 10'000U);
}

TEST_F(SharedMutexTest, TwoReadingProcessesHoldItAtOnce) {
  Table* t = table_;
  auto* both = make<Event>();
  auto first = start([t, both](fixtures::ChildContext&) {
    ASSERT_EQ(t->lock.acquire_shared(), LockResult::Acquired);
    t->holding.set();
    bool ok = both->wait_for(10s);
    t->lock.release_shared();
    EXPECT_TRUE(ok);
  });
  ASSERT_TRUE(fixtures::await(table_->holding));
  EXPECT_EQ(table_->lock.try_acquire_shared(), LockResult::Acquired) << "a second reader got in";
  EXPECT_EQ(table_->lock.try_acquire(), LockResult::Busy) << "no writer while reading";
  both->set();
  table_->lock.release_shared();
  EXPECT_TRUE(first.finish().ok());
  EXPECT_EQ(table_->lock.try_acquire(), LockResult::Acquired);
  table_->lock.release();
}

TEST_F(SharedMutexTest, AReaderKilledWhileReadingDoesNotWedgeAWriter) {
  Table* t = table_;
  auto reader = start([t](fixtures::ChildContext&) {
    ASSERT_EQ(t->lock.acquire_shared(), LockResult::Acquired);
    t->holding.set();
    ::pause();
  });
  ASSERT_TRUE(fixtures::await(table_->holding));
  EXPECT_EQ(table_->lock.acquire_until(std::chrono::steady_clock::now() + 20ms),
            LockResult::TimedOut)
      << "the live reader keeps the writer out";
  reader.kill();
  EXPECT_EQ(table_->lock.acquire_until(std::chrono::steady_clock::now() + 10s),
            LockResult::Acquired)
      << "the dead reader's share was taken back";
  EXPECT_EQ(table_->lock.reader_count(), 0U);
  table_->lock.release();
}

TEST_F(SharedMutexTest, AWriterKilledMidWriteGivesTheNextReaderAnExclusiveRepair) {
  Table* t = table_;
  auto writer = start([t](fixtures::ChildContext&) {
    ASSERT_EQ(t->lock.acquire(), LockResult::Acquired);
    ++t->left;  // right not yet: torn
    t->holding.set();
    ::pause();
  });
  ASSERT_TRUE(fixtures::await(table_->holding));
  auto* repaired = make<Event>();
  auto reader = start([t, repaired](fixtures::ChildContext&) {
    LockResult result = t->lock.acquire_shared();  // blocks behind the writer
    ASSERT_EQ(result, LockResult::OwnerDied);
    t->right = t->left;  // repair, holding it exclusively
    t->lock.mark_consistent();
    t->lock.release_shared();  // releases the exclusive hold
    repaired->set();
  });
  sys::sleep_ns(20'000'000);
  writer.kill();
  EXPECT_TRUE(reader.finish().ok());
  EXPECT_TRUE(repaired->is_set());
  EXPECT_EQ(table_->lock.acquire_shared(), LockResult::Acquired);
  EXPECT_EQ(table_->left, table_->right);
  table_->lock.release_shared();
}

TEST_F(SharedMutexTest, ReleasingASharedLockNotHeldIsAClearError) {
  EXPECT_THROW(table_->lock.release_shared(), Error);
}

struct Pool {
  Semaphore units{3};
  Event taken;
};

class SemaphoreTest : public fixtures::SharedObjectsTest {
 protected:
  void SetUp() override {
    SharedObjectsTest::SetUp();
    pool_ = make<Pool>();
  }
  Pool* pool_ = nullptr;
};

TEST_F(SemaphoreTest, UnitsHeldByAKilledProcessReturnToThePool) {
  Pool* p = pool_;
  auto hog = start([p](fixtures::ChildContext&) {
    p->units.acquire(3);
    p->taken.set();
    ::pause();
  });
  ASSERT_TRUE(fixtures::await(pool_->taken));
  EXPECT_EQ(pool_->units.available(), 0U);
  EXPECT_FALSE(pool_->units.try_acquire());
  auto waiter = start([p](fixtures::ChildContext&) {
    EXPECT_TRUE(p->units.acquire_until(std::chrono::steady_clock::now() + 10s, 2));
  });
  sys::sleep_ns(20'000'000);
  hog.kill();
  EXPECT_TRUE(waiter.finish().ok()) << "the waiter got the dead hog's units";
  // The waiter exited holding 2: they come back too.
  EXPECT_EQ(pool_->units.reclaim_dead(), 2U);
  EXPECT_EQ(pool_->units.available(), 3U);
}

TEST_F(SemaphoreTest, AcquireAndReleaseKeepTheBooksExact) {
  pool_->units.acquire();
  pool_->units.acquire(2);
  EXPECT_EQ(pool_->units.held_by_this_process(), 3U);
  EXPECT_EQ(pool_->units.available(), 0U);
  EXPECT_THROW(pool_->units.release(4), Error) << "more than this process holds";
  pool_->units.release(3);
  EXPECT_EQ(pool_->units.available(), 3U);
  EXPECT_THROW(pool_->units.acquire(4), Error) << "more than the pool has";
  EXPECT_THROW(pool_->units.acquire(0), Error);
  pool_->units.add_units(2);
  EXPECT_EQ(pool_->units.capacity(), 5U);
  EXPECT_TRUE(pool_->units.try_acquire(5));
  pool_->units.release(5);
}

TEST_F(SemaphoreTest, TimedAcquireHonoursItsDeadline) {
  pool_->units.acquire(3);
  for (auto timeout : {1ms, 40ms}) {
    std::uint64_t start = sys::monotonic_ns();
    EXPECT_FALSE(pool_->units.acquire_until(std::chrono::steady_clock::now() + timeout));
    std::uint64_t took = sys::monotonic_ns() - start;
    auto wanted = static_cast<std::uint64_t>(std::chrono::nanoseconds(timeout).count());
    EXPECT_GE(took, wanted);
    EXPECT_LT(took, wanted + 500'000'000U);
  }
  pool_->units.release(3);
}

TEST_F(SemaphoreTest, ADeathBetweenTakingAndRecordingUnitsLosesNone) {
  Pool* p = pool_;
  auto victim = start(
      [p](fixtures::ChildContext&) {
        framework::ScopedKillAt kill("semaphore.taken_before_recorded");
        p->units.acquire(2);
      },
      {.expected_signal = SIGKILL});
  EXPECT_TRUE(victim.finish().ok());
  // The pool says 1 until someone takes the internal lock and repairs; the
  // first acquirer repairs at once (well before its periodic 10 ms reclaim).
  EXPECT_EQ(pool_->units.available(), 1U);
  EXPECT_TRUE(pool_->units.acquire_until(std::chrono::steady_clock::now() + 5ms, 3));
  EXPECT_EQ(pool_->units.held_by_this_process(), 3U);
  pool_->units.release(3);
  EXPECT_EQ(pool_->units.available(), 3U);
}

}  // namespace
}  // namespace shmutils
