// The seed's example, run as the README's first Quick start command runs it.
#include <gtest/gtest.h>

#include "shmutils/framework/child_process.hpp"

namespace shmutils {
namespace {

framework::ExitStatus run_counter(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"shmutils-counter"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = framework::ChildProcess::spawn(SHMUTILS_COUNTER_PATH, argv);
  auto status = child.wait_for(std::chrono::seconds(60));
  if (!status) {
    ADD_FAILURE() << "shmutils-counter hung";
    return child.kill();
  }
  return *status;
}

TEST(CounterExampleTest, TheSeedsTwoProcessesCountExactlyTo20000) {
  auto status = run_counter({"--processes", "2", "--target", "20000", "--kills", "0"});
  EXPECT_TRUE(status.success()) << status.to_string();
}

// The default run: workers SIGKILLed at random and at fault points inside the
// critical section; the tool exits 1 unless the total is exact.
TEST(CounterExampleTest, TheTotalStaysExactThroughAHundredKills) {
  auto status = run_counter({"--processes", "4", "--target", "20000000", "--kills", "100"});
  EXPECT_TRUE(status.success()) << status.to_string();
}

TEST(CounterExampleTest, BadArgumentsAreRefusedWithAUsageError) {
  auto status = run_counter({"--processes", "0"});
  EXPECT_TRUE(status.exited);
  EXPECT_NE(status.exit_code, 0);
}

}  // namespace
}  // namespace shmutils
