// A test program whose main names no ScenarioFactory: used as a spawn-mode
// worker program, it must refuse with a message naming the scenario
// (harness_test.cpp), not run its tests.
#include "shmutils/fixtures/test_main.hpp"

SHMUTILS_TEST_MAIN()
