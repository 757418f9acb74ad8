// The counter model as a shared state machine (properties/models):
// several processes, kills anywhere, each case run in a crash-proof child.
// One model a file: each is a large template instantiation, and apart they
// compile in parallel.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include "shmutils/properties/models/counter_model.hpp"
#include "shmutils/properties/shared_machine.hpp"

namespace shmutils::properties {
namespace {

RC_GTEST_PROP(MachineProperty, CounterTotalsAreExactUnderKills, ()) {
  check_shared_machine<models::CounterSpec>();
}

}  // namespace
}  // namespace shmutils::properties
