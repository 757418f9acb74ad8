// The one supervised child: how the harness, the fixtures and the properties
// see a child crash, stop, end or hang; and the fault hook that kills a
// process at the Nth hit of a point.
#include "shmutils/framework/supervised_child.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <set>
#include <string>

#include "shmutils/framework/kill_at.hpp"
#include "shmutils/framework/stack_capture.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/fault_point.hpp"

namespace shmutils::framework {
namespace {

SHMUTILS_FAULT_POINT(fp_supervised_a, "test.supervised.a");
SHMUTILS_FAULT_POINT(fp_supervised_b, "test.supervised.b");

using State = SupervisedChild::State;

// Polls until the child leaves Running (or 30 s pass: a generous deadline).
State settle(SupervisedChild& child) {
  const std::uint64_t deadline = sys::monotonic_ns() + 30'000'000'000ULL;
  State state = child.poll();
  while (state == State::Running && sys::monotonic_ns() < deadline) {
    sys::sleep_ns(1'000'000);
    state = child.poll();
  }
  return state;
}

[[gnu::noinline]] void fault_in_supervised_child() {
  auto* volatile nowhere =
      reinterpret_cast<volatile int*>(16);  // NOLINT(performance-no-int-to-ptr)
  *nowhere = 1;                             // SIGSEGV on purpose
}

[[gnu::noinline]] int wait_in_supervised_child() {
  for (;;) sys::sleep_ns(1'000'000'000);
}

TEST(SupervisedChildTest, ACrashIsReportedWithItsSignalAndTheFaultingStack) {
  SupervisedChild child = SupervisedChild::fork([] {
    fault_in_supervised_child();
    return 0;
  });
  ASSERT_EQ(settle(child), State::Crashed);
  EXPECT_EQ(child.crash_signal(), SIGSEGV);
  EXPECT_NE(child.stack().find("fault_in_supervised_child"), std::string::npos) << child.stack();
  EXPECT_FALSE(child.running()) << "a crashed child is killed and reaped";
  EXPECT_EQ(child.poll(), State::Crashed) << "final";
}

TEST(SupervisedChildTest, AStopByAnotherHandIsNoCrashAndAnExitIsReportedAsSuch) {
  auto [go_read, go_write] = sys::pipe();
  const int go = go_read.get();
  SupervisedChild child = SupervisedChild::fork([go] {
    std::array<std::byte, 1> byte{};
    (void)sys::read_exact(go, byte);
    return 5;
  });
  ASSERT_TRUE(child.signal(SIGSTOP));
  EXPECT_EQ(settle(child), State::Stopped);
  ASSERT_TRUE(child.signal(SIGCONT));
  ASSERT_TRUE(sys::write_all(go_write.get(), "g"));
  ASSERT_EQ(settle(child), State::Exited);
  ASSERT_TRUE(child.status().has_value());
  EXPECT_EQ(child.status()->exit_code, 5);
  EXPECT_EQ(child.crash_signal(), 0);
}

TEST(SupervisedChildTest, AHangIsEndedWithTheStackOfWhereItWaits) {
  SupervisedChild child = SupervisedChild::fork([] { return wait_in_supervised_child(); });
  // Wait until it is inside the function whose frame we look for.
  std::string stack;
  for (int attempt = 0;
       attempt < 100 && stack.find("wait_in_supervised_child") == std::string::npos; ++attempt) {
    sys::sleep_ns(10'000'000);
    stack = capture_stack(child.pid()).to_string();
  }
  ASSERT_EQ(child.hang(), State::Hung);
  EXPECT_NE(child.stack().find("wait_in_supervised_child"), std::string::npos) << child.stack();
  EXPECT_FALSE(child.running());
  EXPECT_EQ(child.poll(), State::Hung) << "final";
}

TEST(SupervisedChildTest, DerivedSeedsAreDistinctAndRepeatable) {
  std::set<std::uint64_t> seen;
  for (std::uint64_t seed : {0ULL, 1ULL, 2ULL}) {
    for (std::uint64_t index = 0; index < 100; ++index) {
      seen.insert(derive_seed(seed, index));
      EXPECT_EQ(derive_seed(seed, index), derive_seed(seed, index));
    }
  }
  EXPECT_EQ(seen.size(), 300U);
}

TEST(KillAtTest, DiesAtTheNthHitOfItsPointAndNotBefore) {
  // The exit code says how far the child got: 2 means it outlived its third hit.
  for (int hits : {2, 3}) {
    SupervisedChild child = SupervisedChild::fork([hits] {
      ScopedKillAt kill("test.supervised.b", 3);
      for (int i = 0; i < hits; ++i) {
        fp_supervised_a.reached();  // another point: not counted
        fp_supervised_b.reached();
      }
      return 2;
    });
    ASSERT_EQ(settle(child), State::Exited);
    if (hits == 2) {
      EXPECT_EQ(child.status()->exit_code, 2) << child.status()->to_string();
    } else {
      EXPECT_EQ(child.status()->signal, SIGKILL) << child.status()->to_string();
    }
  }
}

TEST(KillAtTest, AnEmptyPointNameCountsEveryPointAndStopLetsASupervisorLook) {
  auto [told_read, told_write] = sys::pipe();
  const int told = told_write.get();
  SupervisedChild child = SupervisedChild::fork([told] {
    auto tell = [](const FaultPoint& point, void* fd) noexcept {
      (void)sys::write_all(*static_cast<const int*>(fd), point.name());
    };
    int fd = told;
    ScopedKillAt stop({}, 2, Death::Stop, tell, &fd);
    fp_supervised_a.reached();
    fp_supervised_b.reached();  // the second hit of any point: stops here
    return 0;
  });
  told_write.reset();
  ASSERT_EQ(settle(child), State::Stopped) << "a planned stop is not a crash";
  std::array<std::byte, 64> name{};
  std::size_t length = sys::read_some(told_read.get(), name);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(name.data()), length), "test.supervised.b");
  child.kill();
}

TEST(KillAtTest, TheZerothHitNeverComes) {
  KillAt never("", 0);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(never.due(fp_supervised_a));
  EXPECT_EQ(never.hits(), 5U);
}

}  // namespace
}  // namespace shmutils::framework
