// A spec that misses a requirement is refused where it is first used, with
// the requirement named (SharedMachineSpec), not deep inside the machine.
#include <string>

#include "shmutils/properties/machine_spec.hpp"
#include "shmutils/properties/models/counter_model.hpp"

namespace shmutils::properties {
namespace {

struct MinimalSpec {
  using Model = int;
  using Op = int;
  using Result = int;
  static Model initial_model() { return 0; }
  static rc::Gen<Op> op(const Model& /*model*/) { return rc::gen::just(1); }
  static Result apply(const Op& op, unsigned /*worker*/, Model& model) { return model += op; }
  static Result run(const Op& /*op*/, unsigned /*worker*/, Segment& /*segment*/) { return 0; }
  static void setup(Segment& /*segment*/) {}
};

// A result that cannot cross the pipe from a worker.
struct StringResultSpec : MinimalSpec {
  using Result = std::string;
  static Result apply(const Op& /*op*/, unsigned /*worker*/, Model& /*model*/) { return {}; }
  static Result run(const Op& /*op*/, unsigned /*worker*/, Segment& /*segment*/) { return {}; }
};

// No real operation to compare the model with.
struct NoRunSpec {
  using Model = int;
  using Op = int;
  using Result = int;
  static Model initial_model() { return 0; }
  static rc::Gen<Op> op(const Model& /*model*/) { return rc::gen::just(1); }
  static Result apply(const Op& op, unsigned /*worker*/, Model& model) { return model += op; }
  static void setup(Segment& /*segment*/) {}
};

static_assert(SharedMachineSpec<MinimalSpec>);
static_assert(SharedMachineSpec<models::CounterSpec>);
static_assert(!SharedMachineSpec<StringResultSpec>);
static_assert(!SharedMachineSpec<NoRunSpec>);  // (checked when this file compiles)

}  // namespace
}  // namespace shmutils::properties
