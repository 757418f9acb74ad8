// The leak check must fail a test that leaves a /dev/shm name or a child
// process behind, and clean up after it. A leaking test (disabled, so it never
// runs on its own) is run in a separate copy of this test program.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "shmutils/fixtures/unique_name.hpp"
#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/shm_object.hpp"
#include "test_support.hpp"

namespace shmutils {
namespace {

using test::IsolatedRun;
using test::run_alone;

TEST(LeakCheckSelfTest, DISABLED_LeavesAName) {
  ShmObject::open(fixtures::unique_segment_name("leaked"), "x+");
}

TEST(LeakCheckSelfTest, DISABLED_LeavesAChild) {
  pid_t child = sys::fork("leaked child");
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  // Tell the checking test which pid must be gone afterwards.
  if (const char* path = std::getenv("SHMUTILS_LEAK_PID_FILE")) {  // NOLINT(concurrency-mt-unsafe)
    std::ofstream(path) << child;
  }
}

std::string pid_file() { return "/tmp/shmutils-leak-pid-" + std::to_string(::getpid()); }

TEST(LeakCheckSelfTest, ATestLeavingANameFailsAndTheNameIsRemoved) {
  IsolatedRun run =
      run_alone("LeakCheckSelfTest.DISABLED_LeavesAName", "SHMUTILS_LEAK_PID_FILE=" + pid_file());
  EXPECT_TRUE(run.failed) << run.output;
  EXPECT_NE(run.output.find("left the shared-memory name /shmutils-test-"), std::string::npos)
      << run.output;
  for (const std::string& name : sys::list_shm_names()) {
    EXPECT_EQ(name.find("leaked"), std::string::npos) << name << " was not removed";
  }
}

TEST(LeakCheckSelfTest, ATestLeavingAChildFailsAndTheChildIsKilled) {
  IsolatedRun run =
      run_alone("LeakCheckSelfTest.DISABLED_LeavesAChild", "SHMUTILS_LEAK_PID_FILE=" + pid_file());
  EXPECT_TRUE(run.failed) << run.output;
  EXPECT_NE(run.output.find("left child process"), std::string::npos) << run.output;
  pid_t leaked = 0;
  std::ifstream(pid_file()) >> leaked;
  ::unlink(pid_file().c_str());
  ASSERT_GT(leaked, 0);
  EXPECT_FALSE(sys::process_start_time(leaked).has_value())
      << "leaked child " << leaked << " lives";
  if (sys::process_start_time(leaked)) ::kill(leaked, SIGKILL);
}

}  // namespace
}  // namespace shmutils
