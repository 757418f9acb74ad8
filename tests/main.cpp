#include "shmutils/fixtures/test_main.hpp"
#include "test_scenarios.hpp"

// The suite runs on the fixtures it ships: spawned children, spawned harness
// workers, the zygote, the leak check and the per-test deadline.
int main(int argc, char** argv) {
  return shmutils::fixtures::test_main(argc, argv, &shmutils::framework::make_test_scenario,
                                       std::chrono::seconds(120));
}
