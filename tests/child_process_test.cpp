#include "shmutils/framework/child_process.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <stdexcept>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::framework {
namespace {

TEST(ChildProcessTest, ExitCodesSignalsAndExceptionsAreReported) {
  EXPECT_EQ(ChildProcess::fork([] { return 3; }).wait().exit_code, 3);
  auto thrown = ChildProcess::fork([]() -> int { throw std::runtime_error("boom"); }).wait();
  EXPECT_TRUE(thrown.exited);
  EXPECT_EQ(thrown.exit_code, 70);
  auto killed = ChildProcess::fork([] {
                  ::raise(SIGTERM);
                  return 0;
                }).wait();
  EXPECT_FALSE(killed.exited);
  EXPECT_EQ(killed.signal, SIGTERM);
  EXPECT_EQ(killed.to_string(), "killed by SIGTERM");
  EXPECT_EQ((ExitStatus{true, 3, 0}.to_string()), "exit code 3");
}

TEST(ChildProcessTest, WaitForReturnsAtTheDeadlineAndKillReaps) {
  auto child = ChildProcess::fork([] {
    ::pause();
    return 0;
  });
  std::uint64_t start = sys::monotonic_ns();
  EXPECT_FALSE(child.wait_for(std::chrono::milliseconds(100)).has_value());
  EXPECT_GE(sys::monotonic_ns() - start, 100'000'000U);
  EXPECT_TRUE(child.running());
  EXPECT_TRUE(child.signal(SIGSTOP));
  EXPECT_TRUE(child.signal(SIGCONT));
  EXPECT_EQ(child.kill().signal, SIGKILL);
  EXPECT_FALSE(child.running());
  EXPECT_FALSE(child.signal(SIGTERM)) << "signalling an ended child reports it";
}

TEST(ChildProcessTest, DestroyingTheOwnerKillsARunningChild) {
  pid_t pid = 0;
  {
    auto child = ChildProcess::fork([] {
      ::pause();
      return 0;
    });
    pid = child.pid();
  }
  EXPECT_FALSE(sys::process_start_time(pid).has_value())
      << "child " << pid << " outlived its owner";
}

// The parent of a ChildProcess is SIGKILLed: PR_SET_PDEATHSIG kills the grandchild.
TEST(ChildProcessTest, AChildDiesWithItsParentEvenWhenTheParentIsKilled) {
  auto [reader, writer] = sys::socket_pair();
  auto middle = ChildProcess::fork([&, fd = writer.get()] {
    auto grandchild = ChildProcess::fork([] {
      ::pause();
      return 0;
    });
    pid_t pid = grandchild.pid();
    if (::write(fd, &pid, sizeof pid) != sizeof pid) return 1;
    ::pause();  // killed here, never destroying `grandchild`
    return 0;
  });
  pid_t grandchild = 0;
  ASSERT_EQ(::read(reader.get(), &grandchild, sizeof grandchild),
            static_cast<ssize_t>(sizeof grandchild));
  ASSERT_TRUE(sys::process_start_time(grandchild).has_value());
  middle.kill();
  std::uint64_t until = sys::monotonic_ns() + 5'000'000'000ULL;
  while (sys::process_start_time(grandchild).has_value() && sys::monotonic_ns() < until) {
    sys::sleep_ns(1'000'000);
  }
  EXPECT_FALSE(sys::process_start_time(grandchild).has_value()) << "orphan " << grandchild;
}

TEST(ChildProcessTest, SpawningAMissingProgramIsAClearError) {
  try {
    ChildProcess::spawn("/nonexistent/program", {"program"});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotFound);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/program"), std::string::npos);
  }
}

TEST(ChildProcessTest, SpawnPassesArgumentsAndEnvironment) {
  std::vector<std::string> env{"SHMUTILS_PROBE=yes"};
  auto child = ChildProcess::spawn(
      "/bin/sh", {"sh", "-c", "test \"$SHMUTILS_PROBE\" = yes && exit $0", "9"}, &env);
  EXPECT_EQ(child.wait().exit_code, 9);
}

}  // namespace
}  // namespace shmutils::framework
