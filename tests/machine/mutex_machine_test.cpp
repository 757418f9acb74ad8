// The mutex model as a shared state machine (properties/models):
// several processes, kills anywhere, each case run in a crash-proof child.
// One model a file: each is a large template instantiation, and apart they
// compile in parallel.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include "shmutils/properties/models/mutex_model.hpp"
#include "shmutils/properties/shared_machine.hpp"

namespace shmutils::properties {
namespace {

RC_GTEST_PROP(MachineProperty, MutexReportsEveryDeadHolderOnce, ()) {
  check_shared_machine<models::MutexSpec>();
}

}  // namespace
}  // namespace shmutils::properties
