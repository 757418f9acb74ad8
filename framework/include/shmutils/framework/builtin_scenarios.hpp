// The scenarios shmtorture runs: the counter (exact totals under kills) and
// each lock type under holder kills. Tests reuse them, and plant bugs in
// them (CounterScenario::Bug) to prove the harness catches what it should.
#pragma once

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
  enum class Bug {
    None,
    SkipRepair,         // owner death is acknowledged but the intent is not resolved
    UnlockedIncrement,  // the increment is done outside the lock (read, yield, write)
  };
  explicit CounterScenario(Bug bug = Bug::None) : bug_(bug) {}

  // Each planted bug has its own name, so a worker (spawned, or forked by the
  // zygote) rebuilds the same variant from the name alone.
  std::string_view name() const override {
    switch (bug_) {
      case Bug::SkipRepair: return "counter-skip-repair";
      case Bug::UnlockedIncrement: return "counter-unlocked-increment";
      case Bug::None: break;
    }
    return "counter";
  }
  std::string_view description() const override {
    return "increments under a robust Mutex; counter == increments completed, exactly";
  }
  std::vector<std::string> fault_points() const override;
  void setup(Segment& segment, Witness& witness) override;
  void work(WorkerContext& ctx) override;
  std::vector<std::string> check(Segment& segment, Witness& witness, bool final) override;
  std::vector<NamedLockHolder> lock_holders(Segment& segment) override;

 private:
  Bug bug_;
};

// allocator_churn with a planted leak: offsets stored in a second step after
// allocate (the mistake allocate-into prevents); its name is
// "allocator_churn-leaky". For tests that prove leaked_bytes catches leaks.
std::unique_ptr<Scenario> make_leaky_churn_scenario();

// Every built-in scenario, in the order shmtorture runs them.
std::vector<std::unique_ptr<Scenario>> builtin_scenarios();
// The built-in scenario of that name, or nullptr.
std::unique_ptr<Scenario> make_builtin_scenario(std::string_view name);

}  // namespace shmutils::framework
