#include <gtest/gtest.h>

#include "shmutils/fixtures/test_deadline.hpp"
#include "shmutils/framework/zygote.hpp"
#include "test_scenarios.hpp"

int main(int argc, char** argv) {
  // Before any thread exists: harness runs fork their workers from it, since
  // this program has threads (the deadline watchdog) by the time tests run.
  shmutils::framework::start_zygote(&shmutils::framework::make_test_scenario);
  ::testing::InitGoogleTest(&argc, argv);
  shmutils::fixtures::install_test_listeners(std::chrono::seconds(120));
  return RUN_ALL_TESTS();
}
