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

TEST(CounterExampleTest, TwoProcessesCountExactlyTo20000) {
  auto status = run_counter({});
  EXPECT_TRUE(status.success()) << status.to_string();
}

TEST(CounterExampleTest, FourProcessesCountExactlyToAMillion) {
  auto status = run_counter({"--processes", "4", "--target", "1000000"});
  EXPECT_TRUE(status.success()) << status.to_string();
}

TEST(CounterExampleTest, BadArgumentsAreRefusedWithAUsageError) {
  auto status = run_counter({"--processes", "0"});
  EXPECT_TRUE(status.exited);
  EXPECT_NE(status.exit_code, 0);
}

}  // namespace
}  // namespace shmutils
