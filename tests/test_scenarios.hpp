// The scenarios of this test program by name (harness_test.cpp), for the
// zygote that main() starts before any thread exists.
#pragma once

#include <memory>
#include <string_view>

#include "shmutils/framework/scenario.hpp"

namespace shmutils::framework {
std::unique_ptr<Scenario> make_test_scenario(std::string_view name);
}
