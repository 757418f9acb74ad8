// Built-in scenarios with a bug planted on purpose, to prove the harness and
// the fixtures catch what they should. They live with the tests, not in the
// installed library; each has a name of its own, so that a worker (spawned,
// or forked by the zygote) rebuilds the same variant from its name
// (make_test_scenario, harness_test.cpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

#include "shmutils/framework/builtin_scenarios.hpp"
#include "shmutils/shm/detail/sys.hpp"

namespace shmutils::framework {

// A dead holder's death is acknowledged, but its intent is not resolved.
class SkipRepairCounter : public CounterScenario {
 public:
  std::string_view name() const override { return "counter-skip-repair"; }

 protected:
  void repair(Root& /*root*/, Witness& /*witness*/) override {}
};

// The increment is done outside the lock: read, yield, write.
class UnlockedIncrementCounter : public CounterScenario {
 public:
  std::string_view name() const override { return "counter-unlocked-increment"; }

 protected:
  void increment(WorkerContext& ctx) override {
    auto& root = ctx.root<Root>();
    std::uint64_t seen = root.value;
    sys::yield();
    root.value = seen + 1;
    ctx.record().operations.fetch_add(1);
  }
};

// allocator_churn that allocates, then stores the offset in a second step
// (the mistake allocate_into exists to prevent): a kill in between leaks.
class LeakyChurnAllocation : public ChurnAllocation {
 public:
  std::string_view scenario_name() const override { return "allocator_churn-leaky"; }
  void allocate(Heap& heap, std::atomic<std::uint64_t>& slot, std::size_t size) const override {
    std::uint64_t fresh = heap.allocate(size);
    sys::yield();  // widens the window a kill can land in
    slot.store(fresh);
  }
};

inline std::unique_ptr<Scenario> make_leaky_churn_scenario() {
  return make_allocator_churn_scenario(std::make_unique<LeakyChurnAllocation>());
}

}  // namespace shmutils::framework
