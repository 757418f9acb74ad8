#include <gtest/gtest.h>
#include <unistd.h>

#include "shmutils/shm/condition_variable.hpp"
#include "shmutils/shm/event.hpp"
#include "sync_test_support.hpp"

namespace shmutils {
namespace {

using namespace std::chrono_literals;

struct Channel {
  Mutex mutex;
  ConditionVariable changed;
  std::uint64_t value = 0;
  std::uint32_t waiting = 0;
};

class ConditionVariableTest : public test::SyncTest {
 protected:
  void SetUp() override {
    SyncTest::SetUp();
    channel_ = make<Channel>();
    watch("channel.mutex", [this] { return channel_->mutex.holder(); });
  }
  // Forks a waiter for value >= target; exits 0 when it saw it.
  framework::ChildProcess waiter(std::uint64_t target) {
    Channel* c = channel_;
    return framework::ChildProcess::fork([c, target] {
      MutexGuard guard(c->mutex);
      ++c->waiting;
      c->changed.wait(guard, [&] { return c->value >= target; });
      return c->value >= target ? 0 : 1;
    });
  }
  void wait_for_waiters(std::uint32_t n) {
    std::uint64_t until = sys::monotonic_ns() + 10'000'000'000ULL;
    for (;;) {
      {
        MutexGuard guard(channel_->mutex);
        if (channel_->waiting >= n) return;
      }
      ASSERT_LT(sys::monotonic_ns(), until) << "waiters did not arrive";
      sys::sleep_ns(1'000'000);
    }
  }
  Channel* channel_ = nullptr;
};

// Two processes hand a token back and forth 10,000 times: one lost wake-up and
// they both sleep for good (caught by the deadline).
TEST_F(ConditionVariableTest, APingPongOfTenThousandRoundsLosesNoWakeUp) {
  Channel* c = channel_;
  constexpr std::uint64_t kRounds = 10'000;
  auto player = [c](std::uint64_t parity) {
    for (;;) {
      MutexGuard guard(c->mutex);
      c->changed.wait(guard, [&] { return c->value % 2 == parity || c->value >= kRounds; });
      if (c->value >= kRounds) return 0;
      ++c->value;
      c->changed.notify_one();
    }
  };
  auto even = framework::ChildProcess::fork([&] { return player(0); });
  auto odd = framework::ChildProcess::fork([&] { return player(1); });
  EXPECT_TRUE(finish(even, 60s).success());
  EXPECT_TRUE(finish(odd, 60s).success());
  EXPECT_EQ(channel_->value, kRounds);
}

TEST_F(ConditionVariableTest, AWaiterKilledWhileWaitingWedgesNobody) {
  auto doomed = waiter(1);
  auto survivor = waiter(1);
  wait_for_waiters(2);
  sys::sleep_ns(10'000'000);
  test::kill_now(doomed);
  {
    MutexGuard guard(channel_->mutex);
    channel_->value = 1;
  }
  channel_->changed.notify_all();
  EXPECT_TRUE(finish(survivor).success());
}

TEST_F(ConditionVariableTest, AWokenWaiterThatDiesBeforeRetakingTheMutexDoesNotStrandTheOthers) {
  // The mutex is held while notify_one wakes a waiter; that waiter is killed
  // before it can re-take the mutex. The other waiter still gets there.
  // The kernel wakes futex waiters of equal priority in arrival order: make
  // `first` arrive first so notify_one wakes it.
  auto first = waiter(1);
  wait_for_waiters(1);
  sys::sleep_ns(10'000'000);
  auto second = waiter(1);
  wait_for_waiters(2);
  sys::sleep_ns(10'000'000);
  {
    MutexGuard guard(channel_->mutex);
    channel_->value = 1;
    channel_->changed.notify_one();
    sys::sleep_ns(5'000'000);
    first.signal(SIGKILL);  // woken, and now dead before re-taking the mutex
  }
  (void)first.wait();
  EXPECT_TRUE(finish(second).success());
}

TEST_F(ConditionVariableTest, AMutexHolderKilledDuringAWaitSurfacesAsOwnerDiedOnReturn) {
  Channel* c = channel_;
  auto* reported = make<Event>();
  auto w = framework::ChildProcess::fork([c, reported] {
    MutexGuard guard(c->mutex);
    ++c->waiting;
    c->changed.wait(guard, [&] { return c->value != 0; });
    if (!guard.owner_died()) return 1;
    guard.mark_consistent();
    reported->set();
    return 0;
  });
  wait_for_waiters(1);
  auto killer = framework::ChildProcess::fork([c] {
    MutexGuard guard(c->mutex);
    c->value = 7;
    c->changed.notify_all();
    ::pause();  // dies holding the mutex
    return 0;
  });
  sys::sleep_ns(30'000'000);
  test::kill_now(killer);
  EXPECT_TRUE(finish(w).success());
  EXPECT_TRUE(reported->is_set());
}

TEST_F(ConditionVariableTest, TimedWaitsHonourTheirDeadline) {
  MutexGuard guard(channel_->mutex);
  for (auto timeout : {1ms, 30ms, 150ms}) {
    std::uint64_t start = sys::monotonic_ns();
    bool ready = channel_->changed.wait_until(guard, std::chrono::steady_clock::now() + timeout,
                                              [&] { return channel_->value == 99; });
    std::uint64_t took = sys::monotonic_ns() - start;
    EXPECT_FALSE(ready);
    auto wanted = static_cast<std::uint64_t>(std::chrono::nanoseconds(timeout).count());
    EXPECT_GE(took, wanted);
    EXPECT_LT(took, wanted + 500'000'000U);
    EXPECT_TRUE(guard.owns_lock());
  }
  EXPECT_FALSE(channel_->changed.wait_until(guard, std::chrono::steady_clock::now() - 1s));
}

class EventTest : public test::SyncTest {};

TEST_F(EventTest, AManualEventReleasesEveryWaiterAndStaysSet) {
  auto* event = make<Event>();
  std::vector<framework::ChildProcess> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.push_back(framework::ChildProcess::fork([event] {
      event->wait();
      return 0;
    }));
  }
  sys::sleep_ns(20'000'000);
  event->set();
  for (auto& w : waiters) EXPECT_TRUE(finish(w).success());
  EXPECT_TRUE(event->is_set());
  EXPECT_TRUE(event->wait_for(1ms));
  event->reset();
  EXPECT_FALSE(event->wait_for(5ms));
}

TEST_F(EventTest, AnAutomaticEventReleasesExactlyOneWaiterPerSet) {
  auto* event = make<Event>(ResetMode::Automatic);
  auto* released = make<std::atomic<std::uint32_t>>(0U);
  std::vector<framework::ChildProcess> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.push_back(framework::ChildProcess::fork([event, released] {
      event->wait();
      released->fetch_add(1);
      return 0;
    }));
  }
  sys::sleep_ns(20'000'000);
  for (std::uint32_t round = 1; round <= 3; ++round) {
    event->set();
    std::uint64_t until = sys::monotonic_ns() + 5'000'000'000ULL;
    while (released->load() < round && sys::monotonic_ns() < until) sys::sleep_ns(1'000'000);
    sys::sleep_ns(20'000'000);  // time for a second waiter to slip through, if it could
    EXPECT_EQ(released->load(), round);
  }
  for (auto& w : waiters) EXPECT_TRUE(finish(w).success());
  EXPECT_FALSE(event->is_set());
}

TEST_F(EventTest, AWaiterKilledWhileWaitingLeavesTheEventWorking) {
  auto* event = make<Event>(ResetMode::Automatic);
  auto doomed = framework::ChildProcess::fork([event] {
    event->wait();
    return 0;
  });
  sys::sleep_ns(10'000'000);
  test::kill_now(doomed);
  auto survivor = framework::ChildProcess::fork([event] { return event->wait_for(10s) ? 0 : 1; });
  sys::sleep_ns(10'000'000);
  event->set();
  EXPECT_TRUE(finish(survivor).success());
}

TEST_F(EventTest, TimedWaitsHonourTheirDeadline) {
  auto* event = make<Event>();
  for (auto timeout : {1ms, 40ms}) {
    std::uint64_t start = sys::monotonic_ns();
    EXPECT_FALSE(event->wait_for(timeout));
    std::uint64_t took = sys::monotonic_ns() - start;
    auto wanted = static_cast<std::uint64_t>(std::chrono::nanoseconds(timeout).count());
    EXPECT_GE(took, wanted);
    EXPECT_LT(took, wanted + 500'000'000U);
  }
}

}  // namespace
}  // namespace shmutils
