// The scenarios shmtorture runs: the counter (exact totals under kills) and
// each lock type under holder kills. Tests reuse them, and plant bugs in
// subclasses of their own (CounterScenario's and AllocatorChurnScenario's
// steps are virtual for that) to prove the harness catches what it should.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "shmutils/framework/scenario.hpp"

namespace shmutils::framework {

// Workers increment one counter under a robust Mutex, recording an intent
// in the witness first; whoever takes the mutex after a death resolves the
// dead worker's intent. Invariant: counter == increments completed, exactly.
class CounterScenario : public Scenario {
 public:
  // The segment's user area.
  struct Root {
    Mutex lock;
    std::uint64_t value;
  };

  std::string_view name() const override { return "counter"; }
  std::string_view description() const override {
    return "increments under a robust Mutex; counter == increments completed, exactly";
  }
  std::vector<std::string> fault_points() const override;
  void setup(Segment& segment, Witness& witness) override;
  void work(WorkerContext& ctx) override;
  std::vector<std::string> check(Segment& segment, Witness& witness, bool final) override;
  std::vector<NamedLockHolder> lock_holders(Segment& segment) override;

 protected:
  // One operation of a worker: under the lock, with the intent recorded.
  virtual void increment(WorkerContext& ctx);
  // Under the lock, after OwnerDied: finish or undo the dead holder's
  // increment. Idempotent: a repairer killed half way leaves a state this
  // resolves again.
  virtual void repair(Root& root, Witness& witness);
};

// Workers allocate, reserve, publish, cancel and free at random, every block
// reachable from the scenario's tables; the heap audits clean, accounting is
// exact and no byte leaks.
std::unique_ptr<Scenario> make_allocator_churn_scenario();

// The step of allocator_churn that allocates a block into a table slot
// (allocate_into: a kill cannot separate the block from its slot). A
// subclass given to make_allocator_churn_scenario replaces it, with its name.
class ChurnAllocation {
 public:
  virtual ~ChurnAllocation() = default;
  virtual std::string_view scenario_name() const { return "allocator_churn"; }
  virtual void allocate(Heap& heap, std::atomic<std::uint64_t>& slot, std::size_t size) const;
};
std::unique_ptr<Scenario> make_allocator_churn_scenario(std::unique_ptr<ChurnAllocation> step);

// Every built-in scenario, in the order shmtorture runs them.
std::vector<std::unique_ptr<Scenario>> builtin_scenarios();
// The built-in scenario of that name, or nullptr.
std::unique_ptr<Scenario> make_builtin_scenario(std::string_view name);

}  // namespace shmutils::framework
