// shmutils::properties::models::CounterSpec — the seed's shared counter (a
// number behind a robust Mutex) as a shared state machine: adds and reads by
// several processes, kills anywhere, and the exact total as the oracle.
#pragma once

#include <rapidcheck.h>

#include <cstdint>
#include <ostream>

#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::properties::models {

struct SharedCounter {
  Mutex lock;
  std::uint64_t value;
};

struct CounterSpec {
  struct Model {
    std::uint64_t value = 0;
    bool operator==(const Model&) const = default;
    friend std::ostream& operator<<(std::ostream& os, const Model& m) {
      return os << "counter " << m.value;
    }
  };
  struct Op {
    std::uint64_t add = 0;  // 0: read
    friend std::ostream& operator<<(std::ostream& os, const Op& op) {
      return op.add == 0 ? os << "read" : os << "add " << op.add;
    }
  };
  using Result = std::uint64_t;  // the value after the operation

  static Model initial_model() { return {}; }
  static rc::Gen<Op> op(const Model&) {
    return rc::gen::build<Op>(rc::gen::set(&Op::add, rc::gen::inRange<std::uint64_t>(0, 100)));
  }
  static Result apply(const Op& op, unsigned, Model& model) { return model.value += op.add; }

  static SharedCounter& counter(Segment& segment) {
    return *reinterpret_cast<SharedCounter*>(segment.user_area().data());
  }
  static void setup(Segment& segment) { new (segment.user_area().data()) SharedCounter{}; }
  // Every access takes the lock through here, repairs included.
  static MutexGuard acquire(SharedCounter& c) {
    MutexGuard guard(c.lock);
    if (guard.owner_died()) guard.mark_consistent();  // one store: nothing to repair
    return guard;
  }
  static Result run(const Op& op, unsigned, Segment& segment) {
    SharedCounter& c = counter(segment);
    MutexGuard guard = acquire(c);
    c.value += op.add;
    return c.value;
  }
  static Model observe(Segment& segment) {
    SharedCounter& c = counter(segment);
    MutexGuard guard = acquire(c);
    return {c.value};
  }
};

}  // namespace shmutils::properties::models
