#include "shmutils/shm/mutex.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <mutex>
#include <thread>

#include "shmutils/fixtures/shared_objects_test.hpp"
#include "shmutils/framework/kill_at.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/process_registry.hpp"
#include "test_support.hpp"

namespace shmutils {
namespace {

using namespace std::chrono_literals;

// std::lock_guard needs lock()/unlock(): Mutex must not offer them, so owner
// death can never be swallowed by it.
template <class M>
concept BasicLockable = requires(M& m) {
  m.lock();
  m.unlock();
};
static_assert(!BasicLockable<Mutex>);

// Data whose invariant (a == b) a holder breaks for a moment inside its
// critical section.
struct Pair {
  Mutex mutex;
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  std::uint64_t repairs = 0;
  Event holding;
  Event go;
  void repair() {
    b = a;
    ++repairs;
  }
};

class MutexTest : public fixtures::SharedObjectsTest {
 protected:
  void SetUp() override {
    SharedObjectsTest::SetUp();
    pair_ = make<Pair>();
    watch_lock("pair.mutex", [this] { return pair_->mutex.holder(); });
  }

  // A child that takes the mutex, breaks the invariant, says so, and waits to die.
  fixtures::RunningChild holder_that_breaks_the_pair() {
    Pair* p = pair_;
    auto child = start([p](fixtures::ChildContext&) {
      MutexGuard guard(p->mutex);
      ++p->a;  // b not yet updated: torn
      p->holding.set();
      ::pause();
    });
    EXPECT_TRUE(fixtures::await(pair_->holding));
    return child;
  }

  Pair* pair_ = nullptr;
};

TEST_F(MutexTest, ZeroFilledMemoryIsAnUnlockedConsistentMutex) {
  alignas(Mutex) std::array<std::byte, sizeof(Mutex)> zeros{};
  auto* mutex = reinterpret_cast<Mutex*>(zeros.data());
  EXPECT_EQ(mutex->state(), Mutex::State::Consistent);
  EXPECT_EQ(mutex->try_acquire(), LockResult::Acquired);
  mutex->release();
}

TEST_F(MutexTest, TheHolderRecordNamesTheHoldingProcessAndThread) {
  EXPECT_EQ(pair_->mutex.holder().tid, 0);
  {
    MutexGuard guard(pair_->mutex);
    LockHolder h = pair_->mutex.holder();
    EXPECT_EQ(h.pid, ::getpid());
    EXPECT_EQ(h.tid, sys::gettid());
    EXPECT_FALSE(h.owner_died);
    EXPECT_TRUE(pair_->mutex.held_by_this_thread());
  }
  EXPECT_EQ(pair_->mutex.holder().tid, 0);
  EXPECT_EQ(pair_->mutex.holder().pid, 0);
}

TEST_F(MutexTest, AWaiterRecordsSinceWhenTheHolderHasHeldIt) {
  auto child = holder_that_breaks_the_pair();
  EXPECT_EQ(pair_->mutex.acquire_for(20ms), LockResult::TimedOut);
  LockHolder h = pair_->mutex.holder();
  EXPECT_EQ(h.pid, child.pid());
  EXPECT_GT(h.since_ns, 0U) << "the waiter noted when it found the lock held";
  EXPECT_LE(h.since_ns, sys::monotonic_ns());
  child.kill();
}

TEST_F(MutexTest, TryAcquireReturnsBusyWithoutBlockingOrThrowing) {
  auto child = holder_that_breaks_the_pair();
  std::uint64_t start = sys::monotonic_ns();
  EXPECT_EQ(pair_->mutex.try_acquire(), LockResult::Busy);
  EXPECT_FALSE(try_lock(pair_->mutex).has_value());
  EXPECT_LT(sys::monotonic_ns() - start, 50'000'000U);
  child.kill();
}

TEST_F(MutexTest, AHolderKilledWhileHoldingGivesTheNextAcquirerOwnerDied) {
  auto child = holder_that_breaks_the_pair();
  child.kill();
  // The kernel released it while the victim exited, before it could be reaped:
  // no waiting, no polling.
  LockResult result = pair_->mutex.try_acquire();
  ASSERT_EQ(result, LockResult::OwnerDied);
  MutexGuard guard(pair_->mutex, result);
  ASSERT_TRUE(guard.owner_died());
  EXPECT_NE(pair_->a, pair_->b) << "the victim died mid-update";
  pair_->repair();
  guard.mark_consistent();
  EXPECT_EQ(pair_->a, pair_->b);
  EXPECT_EQ(pair_->mutex.state(), Mutex::State::Consistent);
}

TEST_F(MutexTest, ABlockedWaiterIsWokenWithOwnerDiedWhenTheHolderIsKilled) {
  auto holder = holder_that_breaks_the_pair();
  Pair* p = pair_;
  auto waiter = start([p](fixtures::ChildContext&) {
    p->go.set();
    MutexGuard guard(p->mutex);  // blocks until the holder dies
    ASSERT_TRUE(guard.owner_died());
    p->repair();
    guard.mark_consistent();
    EXPECT_EQ(p->a, p->b);
  });
  ASSERT_TRUE(fixtures::await(pair_->go));
  sys::sleep_ns(20'000'000);  // let the waiter reach the futex
  holder.kill();
  EXPECT_TRUE(waiter.finish().ok());
  EXPECT_EQ(pair_->repairs, 1U);
}

// A holder the kernel could not release (its robust list was lost, say) is
// found dead by a waiter's periodic liveness check.
TEST_F(MutexTest, AWaiterReleasesALockWhoseDeadHolderTheKernelMissed) {
  auto ghost = start([](fixtures::ChildContext&) {});
  pid_t dead = ghost.pid();
  ASSERT_TRUE(ghost.finish().ok());
  pair_->mutex.futex().holder_pid_namespace.store(
      static_cast<std::uint32_t>(sys::pid_namespace_id()));
  pair_->mutex.futex().holder_pid.store(dead);
  pair_->mutex.futex().word.store(static_cast<std::uint32_t>(dead));
  EXPECT_EQ(pair_->mutex.try_acquire(), LockResult::Busy);
  EXPECT_EQ(pair_->mutex.acquire_for(5s), LockResult::OwnerDied);
  pair_->mutex.mark_consistent();
  pair_->mutex.release();
}

// A live process of PID namespace `pid_namespace`, registered in the last
// slot of the segment: alive while the returned descriptor lives.
UniqueFd register_foreign_process(Segment& segment, pid_t pid, std::uint64_t pid_namespace) {
  const std::uint32_t index = segment.registry().capacity() - 1;
  RegistrySlot& slot = segment.registry().table()->slot(index);
  UniqueFd liveness = sys::reopen(segment.fd(), O_RDONLY, "test");
  EXPECT_TRUE(sys::try_ofd_lock_shared_byte(liveness.get(), kLivenessLockOffset + index, "test"));
  slot.pid_namespace.store(pid_namespace);
  slot.word.store((std::uint64_t{static_cast<std::uint32_t>(SlotState::Live)} << 32) |
                  static_cast<std::uint32_t>(pid));
  return liveness;
}

// The same pid recorded by a holder of another PID namespace names another
// process (or none) here: no pid check decides, its registry slot does.
TEST_F(MutexTest, AHolderInAnotherPidNamespaceIsJudgedByItsRegistrySlot) {
  auto ghost = start([](fixtures::ChildContext&) {});
  pid_t dead_here = ghost.pid();
  ASSERT_TRUE(ghost.finish().ok());
  const std::uint64_t elsewhere = sys::pid_namespace_id() + 1;
  UniqueFd liveness = register_foreign_process(segment_, dead_here, elsewhere);
  pair_->mutex.futex().holder_pid_namespace.store(static_cast<std::uint32_t>(elsewhere));
  pair_->mutex.futex().holder_pid.store(dead_here);
  pair_->mutex.futex().word.store(static_cast<std::uint32_t>(dead_here));
  EXPECT_EQ(pair_->mutex.acquire_for(700ms), LockResult::TimedOut) << "its slot says it lives";
  EXPECT_EQ(pair_->mutex.holder().liveness(), LockHolder::Liveness::Unknown);
  EXPECT_NE(to_string(pair_->mutex.holder()).find("in another PID namespace"), std::string::npos)
      << to_string(pair_->mutex.holder());
  liveness.reset();  // the process "dies": the kernel drops its lock
  EXPECT_EQ(pair_->mutex.acquire_for(5s), LockResult::OwnerDied);
  pair_->mutex.mark_consistent();
  pair_->mutex.release();
  EXPECT_EQ(segment_.registry().reap_dead(), 1U);
}

// Containers number their processes from 1: a holder in another PID
// namespace often has our very tid and pid. It is not us.
TEST_F(MutexTest, AHolderWithOurTidInAnotherPidNamespaceIsNotThisThread) {
  const std::uint64_t elsewhere = sys::pid_namespace_id() + 1;
  const pid_t self = sys::getpid();
  const auto tid = static_cast<std::uint32_t>(sys::gettid());
  UniqueFd liveness = register_foreign_process(segment_, self, elsewhere);
  Mutex& mutex = pair_->mutex;
  mutex.futex().holder_pid_namespace.store(static_cast<std::uint32_t>(elsewhere));
  mutex.futex().holder_pid.store(self);
  mutex.futex().word.store(tid);
  EXPECT_FALSE(mutex.held_by_this_thread());
  EXPECT_EQ(mutex.acquire_for(300ms), LockResult::TimedOut) << "taken for a second acquisition";
  EXPECT_EQ(test::kind_of([&] { mutex.release(); }), ErrorKind::InvalidArgument)
      << "released a lock another namespace's thread holds";
  EXPECT_EQ(mutex.futex().word.load() & RobustFutex::kTidMask, tid) << "the holder kept it";
  mutex.futex().word.store(0);
  mutex.futex().holder_pid.store(0);
  liveness.reset();
  EXPECT_EQ(segment_.registry().reap_dead(), 1U);
}

// The kernel releases a dying thread's pending lock when the lock word holds
// the dying thread's tid, and tids repeat across PID namespaces: a thread
// killed while about to take (or just after releasing) a lock that a thread
// with the same tid in another container holds makes the kernel mark that
// live holder's lock owner-died. Simulated here in one namespace: a child
// writes its tid into the word of a lock we hold, marks it pending and dies.
TEST_F(MutexTest, AnOwnerDiedMarkTheKernelMadeForAnotherThreadsTidLeavesTheLockWithItsHolder) {
  Mutex& mutex = pair_->mutex;
  // Such a twin lives in another container: one is attached.
  UniqueFd container = register_foreign_process(segment_, 1, sys::pid_namespace_id() + 1);
  ASSERT_EQ(mutex.acquire(), LockResult::Acquired);
  RobustFutex& futex = mutex.futex();
  auto twin = start(
      [&futex](fixtures::ChildContext&) {
        detail::ThreadLockContext& t = detail::init_lock_context();
        futex.word.store(static_cast<std::uint32_t>(t.tid));
        detail::set_pending(t, &futex);
        ::raise(SIGKILL);
      },
      {.expected_signal = SIGKILL});
  EXPECT_TRUE(twin.finish().ok());
  ASSERT_EQ(futex.word.load() & (RobustFutex::kTidMask | RobustFutex::kOwnerDied),
            RobustFutex::kOwnerDied)
      << "the kernel did not mark the word (the simulation no longer matches the kernel)";
  EXPECT_TRUE(mutex.held_by_this_thread());
  LockResult other_thread = LockResult::Acquired;
  std::thread([&] { other_thread = mutex.acquire_for(300ms); }).join();
  EXPECT_EQ(other_thread, LockResult::TimedOut) << "taken from its live holder";
  auto other_process = start(
      [&mutex](fixtures::ChildContext&) { EXPECT_EQ(mutex.try_acquire(), LockResult::Busy); });
  EXPECT_TRUE(other_process.finish().ok()) << "try_acquire took it from its live holder";
  EXPECT_NO_THROW(mutex.release());
  std::thread([&] {
    other_thread = mutex.acquire_for(5s);
    if (holds_lock(other_thread)) mutex.release();
  }).join();
  EXPECT_EQ(other_thread, LockResult::Acquired) << "the holder released a consistent lock";
  container.reset();
  EXPECT_EQ(segment_.registry().reap_dead(), 1U);
}

// The same mark can land in the instant between a live holder taking the word
// and recording itself, when no holder is recorded yet: it is believed only
// once no holder has recorded itself for a grace period (a dead one never will).
TEST_F(MutexTest, AnOwnerDiedMarkWithNoRecordedHolderIsBelievedOnlyAfterAGrace) {
  UniqueFd container = register_foreign_process(segment_, 1, sys::pid_namespace_id() + 1);
  RobustFutex& futex = pair_->mutex.futex();
  futex.holder_pid.store(0);
  futex.word.store(RobustFutex::kOwnerDied);
  Mutex* mutex = &pair_->mutex;
  auto early = start(
      [mutex](fixtures::ChildContext&) { EXPECT_EQ(mutex->try_acquire(), LockResult::Busy); });
  EXPECT_TRUE(early.finish().ok()) << "a mark a moment old was taken for a death";
  EXPECT_EQ(pair_->mutex.try_acquire(), LockResult::Busy);
  EXPECT_EQ(pair_->mutex.acquire_for(5s), LockResult::OwnerDied) << "a dead taker is recovered";
  pair_->mutex.mark_consistent();
  pair_->mutex.release();
  container.reset();
  EXPECT_EQ(segment_.registry().reap_dead(), 1U);
}

// With no process of another PID namespace attached, no thread elsewhere can
// share a holder's tid: every mark is a death, believed at once.
TEST_F(MutexTest, WithOneNamespaceAttachedAnOwnerDiedMarkIsBelievedAtOnce) {
  RobustFutex& futex = pair_->mutex.futex();
  futex.holder_pid.store(0);
  futex.word.store(RobustFutex::kOwnerDied);
  EXPECT_EQ(pair_->mutex.try_acquire(), LockResult::OwnerDied);
  pair_->mutex.mark_consistent();
  pair_->mutex.release();
}

// A process that may write the segment rewrites the robust-list links of a
// lock this thread holds, aiming release() at this process's private memory.
// Nothing is stored there; the forgery is counted, the lock released, and the
// thread's list still works.
TEST_F(MutexTest, ReleaseNeverStoresThroughRobustListLinksAnotherProcessForged) {
  std::uintptr_t private_words[4] = {11, 22, 33, 44};
  Mutex& mutex = pair_->mutex;
  ASSERT_EQ(mutex.acquire(), LockResult::Acquired);
  const std::uint64_t forged_before = forged_robust_links();
  RobustFutex* futex = &mutex.futex();
  auto peer = start([futex, &private_words](fixtures::ChildContext&) {
    futex->list_next = reinterpret_cast<std::uintptr_t>(&private_words[1]);
    futex->list_prev = reinterpret_cast<std::uintptr_t>(&private_words[2]);
  });
  ASSERT_TRUE(peer.finish().ok());
  EXPECT_NO_THROW(mutex.release());
  EXPECT_EQ(private_words[0], 11U);
  EXPECT_EQ(private_words[1], 22U);
  EXPECT_EQ(private_words[2], 33U);
  EXPECT_EQ(private_words[3], 44U);
  EXPECT_EQ(forged_robust_links(), forged_before + 1);
  Mutex* m = &mutex;
  auto other =
      start([m](fixtures::ChildContext&) { EXPECT_EQ(m->try_acquire(), LockResult::Acquired); });
  EXPECT_TRUE(other.finish().ok()) << "the lock was not released";
  EXPECT_EQ(mutex.acquire(), LockResult::OwnerDied) << "(its taker ended holding it)";
  mutex.mark_consistent();
  mutex.release();
  EXPECT_EQ(forged_robust_links(), forged_before + 1);
}

// Robust pthread mutexes share the thread's robust list with ours; held and
// released in any order they are neighbours, not forgeries.
TEST_F(MutexTest, ARobustPthreadMutexNextToOursInTheListIsNoForgery) {
  pthread_mutex_t plain;
  sys::robust_mutex_init(&plain, "test");
  const std::uint64_t forged_before = forged_robust_links();
  Mutex& mutex = pair_->mutex;
  for (int order = 0; order < 4; ++order) {
    const bool ours_first = (order & 1) != 0;
    const bool release_ours_first = (order & 2) != 0;
    if (ours_first) {
      ASSERT_EQ(mutex.acquire(), LockResult::Acquired);
    }
    ASSERT_EQ(::pthread_mutex_lock(&plain), 0);
    if (!ours_first) {
      ASSERT_EQ(mutex.acquire(), LockResult::Acquired);
    }
    if (release_ours_first) mutex.release();
    ASSERT_EQ(::pthread_mutex_unlock(&plain), 0);
    if (!release_ours_first) mutex.release();
  }
  EXPECT_EQ(forged_robust_links(), forged_before);
  ::pthread_mutex_destroy(&plain);
}

TEST_F(MutexTest, ReleasingWithoutMarkingConsistentLeavesTheRepairToTheNextAcquirer) {
  auto child = holder_that_breaks_the_pair();
  child.kill();
  EXPECT_EQ(pair_->mutex.acquire(), LockResult::OwnerDied);
  pair_->mutex.release();  // no repair, no mark
  EXPECT_EQ(pair_->mutex.state(), Mutex::State::NeedsRepair);
  EXPECT_EQ(pair_->mutex.acquire(), LockResult::OwnerDied) << "the repair was not lost";
  pair_->repair();
  pair_->mutex.mark_consistent();
  pair_->mutex.release();
  EXPECT_EQ(pair_->mutex.acquire(), LockResult::Acquired);
  pair_->mutex.release();
}

TEST_F(MutexTest, ARepairerKilledDuringRepairLeavesTheRepairToTheNextAcquirer) {
  auto victim = holder_that_breaks_the_pair();
  victim.kill();
  Pair* p = pair_;
  auto repairer = start([p](fixtures::ChildContext&) {
    MutexGuard guard(p->mutex);
    ASSERT_TRUE(guard.owner_died());
    p->holding.reset();
    p->go.set();  // "repairing now"
    ::pause();    // killed mid-repair
  });
  ASSERT_TRUE(fixtures::await(pair_->go));
  repairer.kill();
  MutexGuard guard(pair_->mutex);
  EXPECT_TRUE(guard.owner_died()) << "the second death keeps the repair pending";
  pair_->repair();
  guard.mark_consistent();
  EXPECT_EQ(pair_->a, pair_->b);
}

TEST_F(MutexTest, AbandonedRepairMakesLaterAcquiresFailUntilReset) {
  auto child = holder_that_breaks_the_pair();
  child.kill();
  {
    MutexGuard guard(pair_->mutex);
    ASSERT_TRUE(guard.owner_died());
    pair_->mutex.abandon_repair();
  }
  try {
    (void)pair_->mutex.acquire();
    FAIL() << "an abandoned mutex was acquired";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotRecoverable);
    EXPECT_NE(std::string(e.what()).find("reset"), std::string::npos) << "says how to recover";
  }
  EXPECT_EQ(pair_->mutex.try_acquire(), LockResult::NotRecoverable);
  EXPECT_EQ(pair_->mutex.acquire_for(10ms), LockResult::NotRecoverable);
  EXPECT_EQ(pair_->mutex.holder().tid, 0) << "failed acquires leave it free";
  pair_->a = pair_->b = 0;  // "rebuilt"
  pair_->mutex.reset();
  EXPECT_EQ(pair_->mutex.acquire(), LockResult::Acquired);
  pair_->mutex.release();
}

TEST_F(MutexTest, ATimedAcquireHonoursItsDeadlineUnderContention) {
  auto child = holder_that_breaks_the_pair();
  for (auto timeout : {1ms, 50ms, 200ms}) {
    std::uint64_t start = sys::monotonic_ns();
    EXPECT_EQ(pair_->mutex.acquire_for(timeout), LockResult::TimedOut);
    std::uint64_t took = sys::monotonic_ns() - start;
    auto wanted = static_cast<std::uint64_t>(std::chrono::nanoseconds(timeout).count());
    EXPECT_GE(took, wanted);
    EXPECT_LT(took, wanted + 500'000'000U) << "woke far too late";
  }
  EXPECT_FALSE(lock_until(pair_->mutex, std::chrono::steady_clock::now() + 5ms).has_value());
  child.kill();
  auto guard = lock_until(pair_->mutex, std::chrono::steady_clock::now() + 1s);
  ASSERT_TRUE(guard.has_value());
  EXPECT_TRUE(guard->owner_died());
}

TEST_F(MutexTest, MisuseIsAClearErrorNotADeadlock) {
  MutexGuard guard(pair_->mutex);
  EXPECT_THROW((void)pair_->mutex.acquire(), Error) << "relocking from the holding thread";
  std::thread other([&] {
    EXPECT_THROW(pair_->mutex.release(), Error) << "releasing a mutex held by another thread";
    EXPECT_THROW(pair_->mutex.mark_consistent(), Error);
  });
  other.join();
}

// glibc's robust mutexes and ours share each thread's kernel robust list; a
// death while holding both must release both.
TEST_F(MutexTest, AHolderOfGlibcAndShmutilsRobustLocksReleasesBothWhenKilled) {
  auto* glibc_mutex = make<pthread_mutex_t>();
  sys::robust_mutex_init(glibc_mutex, "glibc mutex");
  Pair* p = pair_;
  auto child = start([p, glibc_mutex](fixtures::ChildContext&) {
    Mutex scratch;
    pthread_mutex_lock(glibc_mutex);
    MutexGuard guard(p->mutex);
    // Interleave so that each kind is unlinked from the middle of the list.
    MutexGuard inner(scratch);
    pthread_mutex_t local;
    sys::robust_mutex_init(&local, "local");
    pthread_mutex_lock(&local);
    inner.unlock();
    pthread_mutex_unlock(&local);
    p->holding.set();
    ::pause();
  });
  ASSERT_TRUE(fixtures::await(pair_->holding));
  child.kill();
  EXPECT_EQ(pthread_mutex_lock(glibc_mutex), EOWNERDEAD);
  pthread_mutex_consistent(glibc_mutex);
  pthread_mutex_unlock(glibc_mutex);
  EXPECT_EQ(pair_->mutex.acquire(), LockResult::OwnerDied);
  pair_->mutex.mark_consistent();
  pair_->mutex.release();
}

TEST_F(MutexTest, AHolderKilledAtTheAcquiredAndBeforeReleaseFaultPointsIsRecovered) {
  for (const char* point : {"lock.acquired", "lock.before_release"}) {
    Pair* p = pair_;
    auto child = start(
        [p, point](fixtures::ChildContext&) {
          framework::ScopedKillAt kill(point);
          MutexGuard guard(p->mutex);
        },
        {.expected_signal = SIGKILL});
    EXPECT_TRUE(child.finish().ok());
    MutexGuard guard(pair_->mutex);
    EXPECT_TRUE(guard.owner_died());
    guard.mark_consistent();
  }
}

// Mutual exclusion with exact totals: 4 processes x 2 threads, 1M increments.
TEST_F(MutexTest, FourProcessesTimesTwoThreadsCountExactlyToAMillion) {
  struct Counter {
    Mutex mutex;
    std::uint64_t value = 0;
    std::uint64_t inside = 0;  // > 1 would mean two holders at once
    std::uint64_t overlaps = 0;
  };
  auto* counter = make<Counter>();
  constexpr int kProcesses = 4;
  constexpr int kThreads = 2;
  constexpr std::uint64_t kPerThread = 1'000'000 / (kProcesses * kThreads);
  std::vector<fixtures::RunningChild> children;
  for (int p = 0; p < kProcesses; ++p) {
    children.push_back(start(
        [counter](fixtures::ChildContext&) {
          std::vector<std::thread> threads;
          for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([counter] {
              for (std::uint64_t i = 0; i < kPerThread; ++i) {
                MutexGuard guard(counter->mutex);
                if (++counter->inside != 1) ++counter->overlaps;
                ++counter->value;
                --counter->inside;
              }
            });
          }
          for (auto& thread : threads) thread.join();
        },
        {.deadline = 120s}));
  }
  for (auto& child : children) EXPECT_TRUE(child.finish().ok());
  EXPECT_EQ(counter->value, 1'000'000U);
  EXPECT_EQ(counter->overlaps, 0U);
}

}  // namespace
}  // namespace shmutils
