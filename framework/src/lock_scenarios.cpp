// The lock scenarios: each lock type under holder kills, with an oracle that
// a broken lock or a skipped repair cannot pass.
//
// Pair invariant (recursive and shared mutex): a writer does a++, then b++,
// then counts the write in its witness record, all under the lock. After any
// repair (b = a, rolling a dead writer's half-write forward):
//   a == b, and  writes completed <= a <= writes completed + kills.
// Lost updates (broken exclusion) make a < writes completed; a skipped
// repair leaves a != b.
#include <chrono>
#include <new>

#include "shmutils/framework/builtin_scenarios.hpp"
#include "shmutils/shm/condition_variable.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/recursive_mutex.hpp"
#include "shmutils/shm/semaphore.hpp"
#include "shmutils/shm/shared_mutex.hpp"

namespace shmutils::framework {

SHMUTILS_FAULT_POINT(fp_pair_half_written, "scenario.pair.half_written");
SHMUTILS_FAULT_POINT(fp_pair_repairing, "scenario.pair.repairing");
SHMUTILS_FAULT_POINT(fp_semaphore_holding, "scenario.semaphore.holding");
SHMUTILS_FAULT_POINT(fp_queue_slot_written, "scenario.queue.slot_written");

namespace {

using Clock = std::chrono::steady_clock;
// Checks while workers run never wait long: a worker may be stopped holding the lock.
constexpr auto kCheckWait = std::chrono::milliseconds(2);
constexpr std::size_t kWrites = 7;  // in_flight word: this worker's completed writes
constexpr std::size_t kTornReads = kFirstScenarioWord;

struct Pair {
  std::uint64_t a;
  std::uint64_t b;
  void repair() {
    fp_pair_repairing.reached();
    b = a;
  }
};

void write_pair(Pair& pair, WorkerRecord& record) {
  ++pair.a;
  fp_pair_half_written.reached();
  ++pair.b;
  record.in_flight[kWrites].fetch_add(1);
}

std::vector<std::string> check_pair(const Pair& pair, Witness& witness, const char* what) {
  std::uint64_t writes = 0;
  std::uint64_t incarnations = witness.scenario(kIncarnations).load();
  for (std::uint32_t i = 0; i < incarnations; ++i)
    writes += witness.worker(i).in_flight[kWrites].load();
  std::uint64_t kills = witness.scenario(kKills).load();
  std::vector<std::string> violations;
  if (pair.a != pair.b) {
    violations.push_back(std::string(what) + ": a = " + std::to_string(pair.a) +
                         " but b = " + std::to_string(pair.b) + " after repair");
  }
  if (pair.a < writes || pair.a > writes + kills) {
    violations.push_back(std::string(what) + ": a = " + std::to_string(pair.a) +
                         " outside [writes " + std::to_string(writes) + ", writes + kills " +
                         std::to_string(writes + kills) + "]");
  }
  return violations;
}

// Takes `lock` (waiting at most kCheckWait while workers run), repairs the
// pair after an owner death, and checks it. Lock: RecursiveMutex or SharedMutex.
template <class Lock>
std::vector<std::string> check_locked_pair(Lock& lock, Pair& pair, Witness& witness, bool final,
                                           const char* what) {
  LockResult result = final ? lock.acquire() : lock.acquire_until(Clock::now() + kCheckWait);
  if (!holds_lock(result)) return {};
  if (result == LockResult::OwnerDied) {
    pair.repair();
    lock.mark_consistent();
    witness.scenario(kRecoveries).fetch_add(1);
  }
  auto violations = check_pair(pair, witness, what);
  lock.release();
  return violations;
}

// ------------------------------------------------------------ RecursiveMutex

struct RecursiveRoot {
  RecursiveMutex lock;
  Pair pair;
};

class RecursiveMutexScenario : public Scenario {
 public:
  std::string_view name() const override { return "recursive_mutex"; }
  std::string_view description() const override {
    return "nested acquires of a robust RecursiveMutex; pair invariant under holder kills";
  }
  std::vector<std::string> fault_points() const override {
    return {"lock.acquired", "lock.before_release", "scenario.pair.half_written",
            "scenario.pair.repairing"};
  }
  void setup(Segment& segment, Witness&) override {
    new (segment.user_area().data()) RecursiveRoot{};
  }
  void work(WorkerContext& ctx) override {
    auto& root = ctx.root<RecursiveRoot>();
    while (!ctx.should_stop()) {
      if (root.lock.acquire() == LockResult::OwnerDied) {
        root.pair.repair();
        root.lock.mark_consistent();
        ctx.witness().scenario(kRecoveries).fetch_add(1);
      }
      (void)root.lock.acquire();  // nested: the same thread, depth 2
      write_pair(root.pair, ctx.record());
      root.lock.release();
      root.lock.release();
      ctx.operation_done();
    }
  }
  std::vector<std::string> check(Segment& segment, Witness& witness, bool final) override {
    auto& root = Scenario::root<RecursiveRoot>(segment);
    return check_locked_pair(root.lock, root.pair, witness, final, "recursive_mutex");
  }
  std::vector<NamedLockHolder> lock_holders(Segment& segment) override {
    return {{"recursive_mutex", Scenario::root<RecursiveRoot>(segment).lock.holder()}};
  }
};

// ------------------------------------------------------------ SharedMutex

struct SharedRoot {
  SharedMutex lock;
  Pair pair;
};

class SharedMutexScenario : public Scenario {
 public:
  std::string_view name() const override { return "shared_mutex"; }
  std::string_view description() const override {
    return "readers and writers of a robust SharedMutex; no torn read, pair invariant under kills";
  }
  std::vector<std::string> fault_points() const override {
    return {"lock.acquired", "scenario.pair.half_written", "scenario.pair.repairing",
            "shared_mutex.reader_counted", "shared_mutex.writer_draining"};
  }
  void setup(Segment& segment, Witness&) override { new (segment.user_area().data()) SharedRoot{}; }
  void work(WorkerContext& ctx) override {
    auto& root = ctx.root<SharedRoot>();
    bool writer = ctx.incarnation() % 2 == 0;
    while (!ctx.should_stop()) {
      if (writer || std::uniform_int_distribution<int>(0, 9)(ctx.random()) == 0) {
        if (root.lock.acquire() == LockResult::OwnerDied) {
          root.pair.repair();
          root.lock.mark_consistent();
          ctx.witness().scenario(kRecoveries).fetch_add(1);
        }
        write_pair(root.pair, ctx.record());
        root.lock.release();
      } else {
        LockResult result = root.lock.acquire_shared();
        if (result == LockResult::OwnerDied) {  // held exclusively: repair
          root.pair.repair();
          root.lock.mark_consistent();
          ctx.witness().scenario(kRecoveries).fetch_add(1);
        } else if (root.pair.a != root.pair.b) {
          ctx.witness().scenario(kTornReads).fetch_add(1);
        }
        root.lock.release_shared();
      }
      ctx.operation_done();
    }
  }
  std::vector<std::string> check(Segment& segment, Witness& witness, bool final) override {
    auto& root = Scenario::root<SharedRoot>(segment);
    auto violations = check_locked_pair(root.lock, root.pair, witness, final, "shared_mutex");
    if (std::uint64_t torn = witness.scenario(kTornReads).load(); torn != 0) {
      violations.push_back("shared_mutex: " + std::to_string(torn) +
                           " readers saw a half-written pair");
    }
    return violations;
  }
  std::vector<NamedLockHolder> lock_holders(Segment& segment) override {
    return {{"shared_mutex (writer)", Scenario::root<SharedRoot>(segment).lock.writer()}};
  }
};

// ------------------------------------------------------------ Semaphore

struct SemaphoreRoot {
  Semaphore units{3};
};

class SemaphoreScenario : public Scenario {
 public:
  std::string_view name() const override { return "semaphore"; }
  std::string_view description() const override {
    return "units of a Semaphore taken and given back; a dead holder's units return to the pool";
  }
  std::vector<std::string> fault_points() const override {
    return {"lock.acquired", "semaphore.taken_before_recorded", "scenario.semaphore.holding"};
  }
  void setup(Segment& segment, Witness&) override {
    new (segment.user_area().data()) SemaphoreRoot{};
  }
  void work(WorkerContext& ctx) override {
    auto& root = ctx.root<SemaphoreRoot>();
    while (!ctx.should_stop()) {
      auto units = std::uniform_int_distribution<std::uint32_t>(1, 2)(ctx.random());
      if (!root.units.acquire_until(Clock::now() + std::chrono::milliseconds(100), units)) continue;
      fp_semaphore_holding.reached();
      root.units.release(units);
      ctx.operation_done();
    }
  }
  std::vector<std::string> check(Segment& segment, Witness&, bool final) override {
    auto& root = Scenario::root<SemaphoreRoot>(segment);
    std::vector<std::string> violations;
    if (root.units.available() > root.units.capacity()) {
      violations.push_back("semaphore: " + std::to_string(root.units.available()) +
                           " units available of " + std::to_string(root.units.capacity()));
    }
    if (final) {
      root.units.reclaim_dead();  // every worker is gone: every unit must be back
      if (root.units.available() != root.units.capacity()) {
        violations.push_back("semaphore: " + std::to_string(root.units.available()) + " of " +
                             std::to_string(root.units.capacity()) +
                             " units in the pool after every holder ended (held: " +
                             std::to_string(root.units.held_total()) + ")");
      }
    }
    return violations;
  }
  std::vector<NamedLockHolder> lock_holders(Segment&) override { return {}; }
};

// ------------------------------------------------------------ ConditionVariable

struct QueueRoot {
  static constexpr std::uint64_t kCapacity = 16;
  Mutex lock;
  ConditionVariable not_empty;
  ConditionVariable not_full;
  std::uint64_t head;  // next to consume (monotonic)
  std::uint64_t tail;  // next to produce (monotonic)
  std::uint64_t slots[kCapacity];
  std::uint64_t out_of_order;  // consumed ids that were not the expected one
};

class ConditionVariableScenario : public Scenario {
 public:
  std::string_view name() const override { return "condition_variable"; }
  std::string_view description() const override {
    return "producers and consumers of a bounded queue on Mutex + ConditionVariable; no hang, no "
           "lost item";
  }
  std::vector<std::string> fault_points() const override {
    return {"lock.acquired", "condvar.after_release", "scenario.queue.slot_written"};
  }
  void setup(Segment& segment, Witness&) override { new (segment.user_area().data()) QueueRoot{}; }
  static void repair(QueueRoot& q) {
    // Publishing is the single store of tail; a slot written but not
    // published is simply overwritten. Nothing to fix but impossible states.
    if (q.tail < q.head || q.tail - q.head > QueueRoot::kCapacity) q.tail = q.head;
  }
  void work(WorkerContext& ctx) override {
    auto& q = ctx.root<QueueRoot>();
    bool producer = ctx.incarnation() % 2 == 0;
    const bool alone = ctx.workers() == 1;
    while (!ctx.should_stop()) {
      MutexGuard guard(q.lock);
      // A lone worker produces until the queue is full, then consumes until
      // it is empty: nobody else would wake its waits.
      if (alone && q.tail - q.head >= QueueRoot::kCapacity) producer = false;
      if (alone && q.tail == q.head) producer = true;
      auto settle = [&] {
        if (guard.owner_died()) {
          repair(q);
          guard.mark_consistent();
          ctx.witness().scenario(kRecoveries).fetch_add(1);
        }
      };
      settle();
      auto deadline = Clock::now() + std::chrono::milliseconds(50);
      if (producer) {
        q.not_full.wait_until(guard, deadline,
                              [&] { return q.tail - q.head < QueueRoot::kCapacity; });
        settle();
        if (q.tail - q.head >= QueueRoot::kCapacity) continue;
        q.slots[q.tail % QueueRoot::kCapacity] = q.tail;  // the item's id is its index
        fp_queue_slot_written.reached();
        ++q.tail;
        q.not_empty.notify_one();
      } else {
        q.not_empty.wait_until(guard, deadline, [&] { return q.tail != q.head; });
        settle();
        if (q.tail == q.head) continue;
        if (q.slots[q.head % QueueRoot::kCapacity] != q.head) ++q.out_of_order;
        ++q.head;
        q.not_full.notify_one();
      }
      ctx.operation_done();
    }
  }
  std::vector<std::string> check(Segment& segment, Witness& witness, bool final) override {
    auto& q = Scenario::root<QueueRoot>(segment);
    std::optional<MutexGuard> guard = final ? std::optional<MutexGuard>(std::in_place, q.lock)
                                            : lock_until(q.lock, Clock::now() + kCheckWait);
    if (!guard) return {};
    if (guard->owner_died()) {
      repair(q);
      guard->mark_consistent();
      witness.scenario(kRecoveries).fetch_add(1);
    }
    std::vector<std::string> violations;
    if (q.tail < q.head || q.tail - q.head > QueueRoot::kCapacity) {
      violations.push_back("queue: head " + std::to_string(q.head) + ", tail " +
                           std::to_string(q.tail));
    }
    if (q.out_of_order != 0) {
      violations.push_back("queue: " + std::to_string(q.out_of_order) +
                           " items consumed out of order");
    }
    return violations;
  }
  std::vector<NamedLockHolder> lock_holders(Segment& segment) override {
    return {{"queue.lock", Scenario::root<QueueRoot>(segment).lock.holder()}};
  }
};

}  // namespace

std::vector<std::unique_ptr<Scenario>> lock_scenarios() {
  std::vector<std::unique_ptr<Scenario>> all;
  all.push_back(std::make_unique<RecursiveMutexScenario>());
  all.push_back(std::make_unique<SharedMutexScenario>());
  all.push_back(std::make_unique<SemaphoreScenario>());
  all.push_back(std::make_unique<ConditionVariableScenario>());
  return all;
}

}  // namespace shmutils::framework
