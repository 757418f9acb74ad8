// Our own structures as shared state machines (properties/models): several
// processes, kills anywhere, each run in a crash-proof child.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include "shmutils/properties/models/allocator_model.hpp"
#include "shmutils/properties/models/counter_model.hpp"
#include "shmutils/properties/models/mutex_model.hpp"
#include "shmutils/properties/models/recursive_mutex_model.hpp"
#include "shmutils/properties/models/semaphore_model.hpp"
#include "shmutils/properties/models/shared_mutex_model.hpp"
#include "shmutils/properties/shared_machine.hpp"

namespace shmutils::properties {
namespace {

RC_GTEST_PROP(MachineProperty, CounterTotalsAreExactUnderKills, ()) {
  check_shared_machine<models::CounterSpec>();
}

RC_GTEST_PROP(MachineProperty, MutexReportsEveryDeadHolderOnce, ()) {
  check_shared_machine<models::MutexSpec>();
}

RC_GTEST_PROP(MachineProperty, RecursiveMutexNestsAndRecoversAtAnyDepth, ()) {
  check_shared_machine<models::RecursiveMutexSpec>();
}

RC_GTEST_PROP(MachineProperty, SharedMutexRecoversDeadWritersAndReaders, ()) {
  check_shared_machine<models::SharedMutexSpec>();
}

RC_GTEST_PROP(MachineProperty, SemaphoreUnitsAreNeitherLostNorDoubled, ()) {
  check_shared_machine<models::SemaphoreSpec>();
}

RC_GTEST_PROP(MachineProperty, AllocatorLeaksNothingAndFreesNothingStoredUnderKills, ()) {
  check_shared_machine<models::AllocatorSpec>();
}

}  // namespace
}  // namespace shmutils::properties
