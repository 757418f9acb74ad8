// Our own structures as shared state machines (properties/models): several
// processes, kills anywhere, each run in a crash-proof child.
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
