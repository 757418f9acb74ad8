// Every blocking call, with its caller killed while it waits: the survivors
// proceed and the protected data keeps its invariant.
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shmutils/fixtures/shared_objects_test.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/recursive_mutex.hpp"
#include "shmutils/shm/semaphore.hpp"
#include "shmutils/shm/shared_mutex.hpp"

namespace shmutils {
namespace {

using namespace std::chrono_literals;

class WaiterKilledTest : public fixtures::SharedObjectsTest {
 protected:
  // Waits until the child sleeps in a futex wait: the blocking call under
  // test (the child makes no other futex call first). A fixed sleep was not
  // enough on a loaded machine: the child was killed before it blocked.
  static void let_it_block(const fixtures::RunningChild& child) {
    const std::uint64_t deadline = sys::monotonic_ns() + 60'000'000'000ULL;
    while (sys::blocked_syscall(child.pid()) != SYS_futex) {
      ASSERT_LT(sys::monotonic_ns(), deadline) << "the child never blocked in a futex wait";
      sys::sleep_ns(1'000'000);
    }
  }
};

TEST_F(WaiterKilledTest, MutexWaiterKilledWhileBlockedLeavesTheMutexCleanForOthers) {
  struct Shared {
    Mutex mutex;
    std::uint64_t value = 0;
  };
  auto* s = make<Shared>();
  watch_lock("mutex", [s] { return s->mutex.holder(); });
  (void)s->mutex.acquire();  // this process holds it
  auto doomed = start([s](fixtures::ChildContext&) {
    MutexGuard guard(s->mutex);  // blocks
    ++s->value;
  });
  let_it_block(doomed);
  doomed.kill();
  auto survivor = start([s](fixtures::ChildContext&) {
    MutexGuard guard(s->mutex);
    ASSERT_FALSE(guard.owner_died());  // the dead waiter never held it
    ++s->value;
  });
  let_it_block(survivor);
  s->mutex.release();
  EXPECT_TRUE(survivor.finish().ok());
  EXPECT_EQ(s->value, 1U);
  EXPECT_EQ(s->mutex.acquire(), LockResult::Acquired);
  s->mutex.release();
}

TEST_F(WaiterKilledTest, RecursiveMutexWaiterKilledWhileBlockedLeavesItCleanForOthers) {
  auto* mutex = make<RecursiveMutex>();
  (void)mutex->acquire();
  (void)mutex->acquire();
  auto doomed = start([mutex](fixtures::ChildContext&) { (void)mutex->acquire(); });
  let_it_block(doomed);
  doomed.kill();
  mutex->release();
  mutex->release();
  auto survivor = start([mutex](fixtures::ChildContext&) {
    EXPECT_EQ(mutex->acquire_until(std::chrono::steady_clock::now() + 10s), LockResult::Acquired);
  });
  EXPECT_TRUE(survivor.finish().ok());
}

struct Table {
  SharedMutex lock;
  std::uint64_t left = 0;
  std::uint64_t right = 0;
  Event holding;
};

TEST_F(WaiterKilledTest, AReaderKilledWhileQueuedBehindAWriterWedgesNobody) {
  auto* t = make<Table>();
  watch_lock("table writer", [t] { return t->lock.writer(); });
  ASSERT_EQ(t->lock.acquire(), LockResult::Acquired);  // this process writes
  auto doomed = start([t](fixtures::ChildContext&) {
    (void)t->lock.acquire_shared();  // queued behind the writer
  });
  let_it_block(doomed);
  doomed.kill();
  ++t->left;
  ++t->right;
  t->lock.release();
  auto writer = start([t](fixtures::ChildContext&) {
    if (t->lock.acquire_until(std::chrono::steady_clock::now() + 10s) != LockResult::Acquired) {
      {
        ADD_FAILURE() << "reached a step it must not reach";
        return;
      }
    }
    ++t->left;
    ++t->right;
    t->lock.release();
  });
  EXPECT_TRUE(writer.finish().ok());
  EXPECT_EQ(t->left, 2U);
  EXPECT_EQ(t->right, 2U);
}

TEST_F(WaiterKilledTest, AWriterKilledWhileWaitingForReadersWedgesNobody) {
  auto* t = make<Table>();
  watch_lock("table writer", [t] { return t->lock.writer(); });
  ASSERT_EQ(t->lock.acquire_shared(), LockResult::Acquired);  // this process reads
  auto doomed = start([t](fixtures::ChildContext&) {
    (void)t->lock.acquire();  // holds the writer mutex, drains readers: blocks on us
  });
  let_it_block(doomed);
  doomed.kill();
  t->lock.release_shared();
  // The dead writer held the writer mutex: the next acquirer repairs (nothing
  // was written, so the repair finds the data consistent).
  LockResult result = t->lock.acquire_until(std::chrono::steady_clock::now() + 10s);
  ASSERT_TRUE(holds_lock(result)) << to_string(result);
  EXPECT_EQ(result, LockResult::OwnerDied);
  EXPECT_EQ(t->left, t->right);
  t->lock.mark_consistent();
  t->lock.release();
  EXPECT_EQ(t->lock.acquire_shared(), LockResult::Acquired) << "readers get in again";
  t->lock.release_shared();
}

TEST_F(WaiterKilledTest, ASemaphoreWaiterKilledWhileBlockedTakesNoUnitsWithIt) {
  auto* pool = make<Semaphore>(1U);
  pool->acquire();
  auto doomed = start([pool](fixtures::ChildContext&) { pool->acquire(); });
  let_it_block(doomed);
  doomed.kill();
  pool->release();
  EXPECT_EQ(pool->available(), 1U);
  EXPECT_TRUE(pool->acquire_until(std::chrono::steady_clock::now() + 1s));
  pool->release();
}

TEST_F(WaiterKilledTest, ASetterKilledRightAfterSettingStillReleasesTheWaiters) {
  auto* event = make<Event>();
  auto waiter = start([event](fixtures::ChildContext&) { EXPECT_TRUE(event->wait_for(10s)); });
  let_it_block(waiter);
  auto setter = start(
      [event](fixtures::ChildContext&) {
        event->set();
        ::kill(::getpid(), SIGKILL);
      },
      {.expected_signal = SIGKILL});
  EXPECT_TRUE(setter.finish().ok());
  EXPECT_TRUE(waiter.finish().ok());
}

}  // namespace
}  // namespace shmutils
