// Every blocking call, with its caller killed while it waits: the survivors
// proceed and the protected data keeps its invariant.
#include <gtest/gtest.h>
#include <unistd.h>

#include "shmutils/shm/recursive_mutex.hpp"
#include "shmutils/shm/semaphore.hpp"
#include "shmutils/shm/shared_mutex.hpp"
#include "sync_test_support.hpp"

namespace shmutils {
namespace {

using namespace std::chrono_literals;

class WaiterKilledTest : public test::SyncTest {
 protected:
  // Gives a forked waiter time to block in the kernel.
  static void let_it_block() { sys::sleep_ns(30'000'000); }
};

TEST_F(WaiterKilledTest, MutexWaiterKilledWhileBlockedLeavesTheMutexCleanForOthers) {
  struct Shared {
    Mutex mutex;
    std::uint64_t value = 0;
  };
  auto* s = make<Shared>();
  watch("mutex", [s] { return s->mutex.holder(); });
  (void)s->mutex.acquire();  // this process holds it
  auto doomed = framework::ChildProcess::fork([s] {
    MutexGuard guard(s->mutex);  // blocks
    ++s->value;
    return 0;
  });
  let_it_block();
  test::kill_now(doomed);
  auto survivor = framework::ChildProcess::fork([s] {
    MutexGuard guard(s->mutex);
    if (guard.owner_died()) return 1;  // the dead waiter never held it
    ++s->value;
    return 0;
  });
  let_it_block();
  s->mutex.release();
  EXPECT_TRUE(finish(survivor).success());
  EXPECT_EQ(s->value, 1U);
  EXPECT_EQ(s->mutex.acquire(), LockResult::Acquired);
  s->mutex.release();
}

TEST_F(WaiterKilledTest, RecursiveMutexWaiterKilledWhileBlockedLeavesItCleanForOthers) {
  auto* mutex = make<RecursiveMutex>();
  (void)mutex->acquire();
  (void)mutex->acquire();
  auto doomed = framework::ChildProcess::fork([mutex] {
    (void)mutex->acquire();
    return 0;
  });
  let_it_block();
  test::kill_now(doomed);
  mutex->release();
  mutex->release();
  auto survivor = framework::ChildProcess::fork([mutex] {
    return mutex->acquire_until(std::chrono::steady_clock::now() + 10s) == LockResult::Acquired ? 0
                                                                                                : 1;
  });
  EXPECT_TRUE(finish(survivor).success());
}

struct Table {
  SharedMutex lock;
  std::uint64_t left = 0;
  std::uint64_t right = 0;
  Event holding;
};

TEST_F(WaiterKilledTest, AReaderKilledWhileQueuedBehindAWriterWedgesNobody) {
  auto* t = make<Table>();
  watch("table writer", [t] { return t->lock.writer(); });
  ASSERT_EQ(t->lock.acquire(), LockResult::Acquired);  // this process writes
  auto doomed = framework::ChildProcess::fork([t] {
    (void)t->lock.acquire_shared();  // queued behind the writer
    return 0;
  });
  let_it_block();
  test::kill_now(doomed);
  ++t->left;
  ++t->right;
  t->lock.release();
  auto writer = framework::ChildProcess::fork([t] {
    if (t->lock.acquire_until(std::chrono::steady_clock::now() + 10s) != LockResult::Acquired) {
      return 1;
    }
    ++t->left;
    ++t->right;
    t->lock.release();
    return 0;
  });
  EXPECT_TRUE(finish(writer).success());
  EXPECT_EQ(t->left, 2U);
  EXPECT_EQ(t->right, 2U);
}

TEST_F(WaiterKilledTest, AWriterKilledWhileWaitingForReadersWedgesNobody) {
  auto* t = make<Table>();
  watch("table writer", [t] { return t->lock.writer(); });
  ASSERT_EQ(t->lock.acquire_shared(), LockResult::Acquired);  // this process reads
  auto doomed = framework::ChildProcess::fork([t] {
    (void)t->lock.acquire();  // holds the writer mutex, drains readers: blocks on us
    return 0;
  });
  let_it_block();
  test::kill_now(doomed);
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
  auto doomed = framework::ChildProcess::fork([pool] {
    pool->acquire();
    return 0;
  });
  let_it_block();
  test::kill_now(doomed);
  pool->release();
  EXPECT_EQ(pool->available(), 1U);
  EXPECT_TRUE(pool->acquire_until(std::chrono::steady_clock::now() + 1s));
  pool->release();
}

TEST_F(WaiterKilledTest, ASetterKilledRightAfterSettingStillReleasesTheWaiters) {
  auto* event = make<Event>();
  auto waiter = framework::ChildProcess::fork([event] { return event->wait_for(10s) ? 0 : 1; });
  let_it_block();
  auto setter = framework::ChildProcess::fork([event] {
    event->set();
    ::kill(::getpid(), SIGKILL);
    return 0;
  });
  EXPECT_EQ(finish(setter).signal, SIGKILL);
  EXPECT_TRUE(finish(waiter).success());
}

}  // namespace
}  // namespace shmutils
