#include <sched.h>

#include <new>

#include "shmutils/framework/builtin_scenarios.hpp"
#include "shmutils/shm/fault_point.hpp"

namespace shmutils::framework {

SHMUTILS_FAULT_POINT(fp_counter_intent, "scenario.counter.intent_written");
SHMUTILS_FAULT_POINT(fp_counter_incremented, "scenario.counter.value_incremented");
SHMUTILS_FAULT_POINT(fp_counter_repairing, "scenario.counter.repairing");

namespace {

using CounterRoot = CounterScenario::Root;

// in_flight words of a worker's record.
constexpr std::size_t kActive = 0;
constexpr std::size_t kValueBefore = 1;
constexpr std::size_t kCompletedBefore = 2;

}  // namespace

void CounterScenario::repair(CounterRoot& root, Witness& witness) {
  fp_counter_repairing.reached();
  std::uint64_t incarnations = witness.scenario(kIncarnations).load();
  for (std::uint32_t i = 0; i < incarnations; ++i) {
    WorkerRecord& record = witness.worker(i);
    if (record.in_flight[kActive].load() == 0) continue;
    std::uint64_t before = record.in_flight[kValueBefore].load();
    std::uint64_t completed_before = record.in_flight[kCompletedBefore].load();
    if (root.value == before + 1) {
      record.operations.store(completed_before + 1);  // it landed: count it once
    } else {
      root.value = before;  // it did not land: nothing counted either
      record.operations.store(completed_before);
    }
    record.in_flight[kActive].store(0);
  }
  witness.scenario(kRecoveries).fetch_add(1);
}

std::vector<std::string> CounterScenario::fault_points() const {
  return {"lock.acquired", "lock.before_release", "scenario.counter.intent_written",
          "scenario.counter.value_incremented", "scenario.counter.repairing"};
}

void CounterScenario::setup(Segment& segment, Witness&) {
  new (segment.user_area().data()) CounterRoot{};
}

void CounterScenario::work(WorkerContext& ctx) {
  while (!ctx.should_stop()) increment(ctx);
}

void CounterScenario::increment(WorkerContext& ctx) {
  auto& root = ctx.root<CounterRoot>();
  WorkerRecord& record = ctx.record();
  MutexGuard guard(root.lock);
  if (guard.owner_died()) {
    repair(root, ctx.witness());
    guard.mark_consistent();
  }
  record.in_flight[kValueBefore].store(root.value);
  record.in_flight[kCompletedBefore].store(record.operations.load());
  record.in_flight[kActive].store(1);
  fp_counter_intent.reached();
  ++root.value;
  fp_counter_incremented.reached();
  record.operations.fetch_add(1);
  record.in_flight[kActive].store(0);
}

std::vector<std::string> CounterScenario::check(Segment& segment, Witness& witness, bool final) {
  auto& root = Scenario::root<CounterRoot>(segment);
  // While workers run, never block: one may be stopped holding the lock.
  std::optional<MutexGuard> guard =
      final
          ? std::optional<MutexGuard>(std::in_place, root.lock)
          : lock_until(root.lock, std::chrono::steady_clock::now() + std::chrono::milliseconds(2));
  if (!guard) return {};
  if (guard->owner_died()) {
    repair(root, witness);
    guard->mark_consistent();
  }
  std::uint64_t completed = 0;
  std::uint64_t incarnations = witness.scenario(kIncarnations).load();
  for (std::uint32_t i = 0; i < incarnations; ++i) completed += witness.worker(i).operations.load();
  if (root.value != completed) {
    return {"counter = " + std::to_string(root.value) + " but increments completed = " +
            std::to_string(completed) + (final ? " (at the end)" : " (after a kill)")};
  }
  return {};
}

std::vector<NamedLockHolder> CounterScenario::lock_holders(Segment& segment) {
  return {{"counter.lock", Scenario::root<CounterRoot>(segment).lock.holder()}};
}

std::vector<std::unique_ptr<Scenario>> lock_scenarios();  // lock_scenarios.cpp
std::vector<std::unique_ptr<Scenario>> heap_scenarios();  // heap_scenarios.cpp

std::vector<std::unique_ptr<Scenario>> builtin_scenarios() {
  std::vector<std::unique_ptr<Scenario>> all;
  all.push_back(std::make_unique<CounterScenario>());
  for (auto& scenario : lock_scenarios()) all.push_back(std::move(scenario));
  for (auto& scenario : heap_scenarios()) all.push_back(std::move(scenario));
  return all;
}

std::unique_ptr<Scenario> make_builtin_scenario(std::string_view name) {
  for (auto& scenario : builtin_scenarios()) {
    if (scenario->name() == name) return std::move(scenario);
  }
  return nullptr;
}

}  // namespace shmutils::framework
