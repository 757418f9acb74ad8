#include <gtest/gtest.h>

#include "shmutils/fixtures/test_deadline.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  shmutils::fixtures::install_test_listeners(std::chrono::seconds(120));
  return RUN_ALL_TESTS();
}
