// Scenarios on the crash-safe heap: allocator churn (random allocate, publish,
// cancel and free from several processes, killed anywhere) and the shared
// containers (queue, hash map, vector under producers and consumers that are
// killed). Both end with leaked_bytes: heap bytes live but unreachable.
#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shmutils/framework/builtin_scenarios.hpp"
#include "shmutils/framework/scenario.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/inspection.hpp"
#include "shmutils/shm/shared_hash_map.hpp"
#include "shmutils/shm/shared_queue.hpp"
#include "shmutils/shm/shared_vector.hpp"

namespace shmutils::framework {

namespace {

constexpr std::size_t kLanes = 32;  // tables a worker can own, one worker each
constexpr std::size_t kSlots = 128;

// Witness words of these scenarios: worker-detected violations.
constexpr std::size_t kViolationCount = kFirstScenarioWord;
constexpr std::size_t kViolationDetail = kFirstScenarioWord + 1;

void worker_violation(Witness& witness, std::uint64_t detail) {
  if (witness.scenario(kViolationCount).fetch_add(1) == 0) {
    witness.scenario(kViolationDetail).store(detail);
  }
}

// A lane owned by one live worker at a time, named by its registry claim
// (pids repeat when workers live in PID namespaces of their own). Taking over
// a dead worker's lane first waits until the dead process is reaped: its
// in-flight allocate-into or free_from on the lane's table is then settled
// (Heap, "No leak").
std::size_t claim_lane(std::array<std::atomic<std::uint64_t>, kLanes>& owners, Segment& segment) {
  const Heap& heap = segment.heap();
  const RegistryView& registry = segment.registry().view();
  const std::uint64_t self = heap.claim().packed();
  for (;;) {
    for (std::size_t lane = 0; lane < kLanes; ++lane) {
      std::uint64_t owner = owners[lane].load();
      const SlotClaim claim = SlotClaim::unpack(owner);
      if (std::optional<SlotInfo> slot = registry.find(claim); slot && slot->alive) continue;
      if (!heap.await_reap(claim, 5000)) continue;
      if (owners[lane].compare_exchange_strong(owner, self)) return lane;
    }
    sys::sleep_ns(1'000'000);
  }
}

std::vector<std::string> heap_problems(Segment& segment, bool final) {
  // While workers run, never block: a stopped worker may hold a heap lock.
  HeapAudit audit = segment.audit(final ? 10'000 : 5);
  std::vector<std::string> problems;
  if (!audit.complete && !final) return problems;
  for (const std::string& p : audit.problems) {
    // Between a death and its reap, a dead worker's holdings are expected.
    if (!final && p.find("reap pending") != std::string::npos) continue;
    problems.push_back("heap audit: " + p);
  }
  for (const std::string& note : audit.notes) {
    if (final) problems.push_back("heap audit incomplete: " + note);
  }
  return problems;
}

std::vector<NamedLockHolder> heap_lock_holders(Segment& segment) {
  std::vector<NamedLockHolder> holders;
  for (InspectedLock& lock : inspect_locks(segment)) {
    holders.push_back({lock.name == "heap" ? lock.name : "heap " + lock.name, lock.holder});
  }
  return holders;
}

std::uint64_t live_bytes_except(Heap& heap, const std::vector<std::uint64_t>& reachable) {
  std::vector<HeapEntry> live = heap.dump();
  std::uint64_t total = 0;
  for (const HeapEntry& entry : live) total += entry.size;
  for (std::uint64_t offset : reachable) {
    auto found = std::lower_bound(live.begin(), live.end(), offset,
                                  [](const HeapEntry& e, std::uint64_t o) { return e.offset < o; });
    if (found != live.end() && found->offset == offset) total -= found->size;
  }
  return total;
}

// --- allocator churn ---------------------------------------------------------

struct ChurnRoot {
  std::array<std::atomic<std::uint64_t>, kLanes> owners{};
  std::array<std::array<std::atomic<std::uint64_t>, kSlots>, kLanes> tables{};
  // The tag each published block carries (0: none); unique per publication,
  // so stale bytes of an earlier block can never pass for a tag.
  std::array<std::array<std::atomic<std::uint64_t>, kSlots>, kLanes> tags{};
  std::array<std::atomic<std::uint64_t>, kLanes> next_tag{};
};

// Heap repairs and reaps the workers did, for the report's recoveries.
void count_recoveries(Witness& witness, std::initializer_list<const char*> points) {
  std::uint64_t total = 0;
  for (const char* point : points) {
    std::int32_t index = witness.point_index(point);
    if (index >= 0) total += witness.hits(index);
  }
  witness.scenario(kRecoveries).store(total);
}

class AllocatorChurnScenario : public Scenario {
 public:
  explicit AllocatorChurnScenario(std::unique_ptr<ChurnAllocation> step) : step_(std::move(step)) {}
  std::string_view name() const override { return step_->scenario_name(); }
  std::string_view description() const override {
    return "random allocate-into, reserve/publish, cancel and free_from by every worker; the heap "
           "audits clean, accounting is exact and no byte leaks";
  }
  std::size_t segment_size() const override { return 16 << 20; }
  bool uses_heap() const override { return true; }
  std::vector<std::string> fault_points() const override {
    return {"heap.allocate.taken",
            "heap.allocate.dest_written",
            "heap.publish.dest_written",
            "heap.free.state_cached",
            "heap.free_from.unlinked",
            "heap.refill.partial",
            "heap.flush.partial",
            "heap.span.carved",
            "heap.split.intent_written",
            "heap.split.first_header_written",
            "heap.merge.intent_written",
            "heap.merge.header_written",
            "heap.repairing",
            "heap.class.repairing",
            "heap.reap.intent_resolved",
            "heap.reap.swept"};
  }

  void setup(Segment& segment, Witness&) override { segment.names().construct<ChurnRoot>("churn"); }

  void work(WorkerContext& ctx) override {
    Segment& segment = ctx.segment();
    Heap& heap = segment.heap();
    ChurnRoot* root = segment.names().find<ChurnRoot>("churn");
    std::size_t lane = claim_lane(root->owners, segment);
    auto& table = root->tables[lane];
    auto& tags = root->tags[lane];
    auto& random = ctx.random();
    auto pick_size = [&]() -> std::size_t {
      switch (random() % 8) {
        case 0: return 5000 + random() % 60'000;
        case 1: return 1 + random() % 16;
        default: return 16 + random() % 4000;
      }
    };
    for (std::uint64_t step = 0; !ctx.should_stop(); ++step) {
      if (step % 500 == 499) segment.reap_dead();  // survivors reap, as users' programs do
      const std::size_t index = random() % kSlots;
      std::atomic<std::uint64_t>& slot = table[index];
      std::uint64_t r = random() % 16;
      if (r == 0) {
        std::vector<Reservation> burst;  // fills a cache past its limit, then flushes it
        burst.reserve(300);
        std::size_t size = 16 + random() % 256;
        for (int k = 0; k < 300; ++k) burst.push_back(heap.reserve(size));
      } else if (std::uint64_t offset = slot.load(); offset != 0) {
        check_tag(heap, offset, tags[index].load(), ctx.witness());
        heap.free_from(slot);
      } else if (r < 6) {
        tags[index].store(0);  // allocate-into blocks carry no tag
        step_->allocate(heap, slot, pick_size());
      } else {
        std::size_t size = pick_size();
        Reservation reservation = heap.reserve(size, r < 9 ? 256 : 16);
        std::uint64_t tag = (root->next_tag[lane].fetch_add(1) + 1) << 8 | lane;
        write_tag(heap, reservation.offset(), size, tag);
        tags[index].store(size < 24 ? 0 : tag);
        if (r % 3 != 0) reservation.publish(slot);  // else cancelled at scope exit
      }
      ctx.operation_done();
    }
    root->owners[lane].store(0);
  }

  std::vector<std::string> check(Segment& segment, Witness& witness, bool final) override {
    std::vector<std::string> problems = heap_problems(segment, final);
    count_recoveries(witness,
                     {"heap.repairing", "heap.class.repairing", "heap.reap.intent_resolved"});
    // Workers count what they saw; reported once, at the end.
    if (std::uint64_t n = witness.scenario(kViolationCount).load(); final && n != 0) {
      problems.push_back(std::to_string(n) + " blocks had their contents overwritten (first at " +
                         std::to_string(witness.scenario(kViolationDetail).load()) + ")");
    }
    if (!final) return problems;
    Heap& heap = segment.heap();
    std::vector<HeapEntry> live = heap.dump();
    ChurnRoot* root = segment.names().find<ChurnRoot>("churn");
    for (std::size_t lane = 0; lane < kLanes; ++lane) {
      for (std::size_t i = 0; i < kSlots; ++i) {
        std::uint64_t offset = root->tables[lane][i].load();
        if (offset == 0) continue;
        auto found =
            std::lower_bound(live.begin(), live.end(), offset,
                             [](const HeapEntry& e, std::uint64_t o) { return e.offset < o; });
        if (found == live.end() || found->offset != offset ||
            found->kind != heap::Kind::Published) {
          problems.push_back("table " + std::to_string(lane) + " entry " + std::to_string(i) +
                             " holds offset " + std::to_string(offset) +
                             ", which is not a live published block");
        }
      }
    }
    return problems;
  }

  std::uint64_t leaked_bytes(Segment& segment, Witness&) override {
    Heap& heap = segment.heap();
    ChurnRoot* root = segment.names().find<ChurnRoot>("churn");
    std::vector<std::uint64_t> reachable{heap.offset_of(root)};
    for (auto& table : root->tables) {
      for (auto& slot : table) {
        if (slot.load() != 0) reachable.push_back(slot.load());
      }
    }
    return live_bytes_except(heap, reachable);
  }

  std::vector<NamedLockHolder> lock_holders(Segment& segment) override {
    return heap_lock_holders(segment);
  }

 private:
  std::unique_ptr<ChurnAllocation> step_;
  // Blocks published through reserve carry a tag unique to the publication at
  // both ends and their size in between, so a block handed out twice
  // (overlapping another) is noticed when it is freed.
  static void write_tag(Heap& heap, std::uint64_t offset, std::size_t size, std::uint64_t tag) {
    if (size < 24) return;
    std::uint64_t length = size;
    std::memcpy(heap.pointer(offset), &tag, 8);
    std::memcpy(heap.pointer(offset) + 8, &length, 8);
    std::memcpy(heap.pointer(offset) + (size - 8) / 8 * 8, &tag, 8);
  }
  static void check_tag(Heap& heap, std::uint64_t offset, std::uint64_t tag, Witness& witness) {
    if (tag == 0) return;
    std::uint64_t head = 0;
    std::uint64_t length = 0;
    std::uint64_t tail = 0;
    std::memcpy(&head, heap.pointer(offset), 8);
    std::memcpy(&length, heap.pointer(offset) + 8, 8);
    bool fits = length >= 24 && length <= heap.usable_size(offset);
    if (fits) std::memcpy(&tail, heap.pointer(offset) + (length - 8) / 8 * 8, 8);
    if (head != tag || !fits || tail != tag) worker_violation(witness, offset);
  }
};

// --- containers -----------------------------------------------------------

struct ContainerRoot {
  std::array<std::atomic<std::uint64_t>, kLanes> owners{};
  std::array<std::atomic<std::uint64_t>, kLanes> next_seq{};
  SharedQueue<std::uint64_t> queue{256};
  SharedHashMap<std::uint64_t, std::uint64_t> map{256};
  SharedVector<std::uint64_t> log;
};

constexpr std::uint64_t kSeqMask = (std::uint64_t{1} << 40) - 1;

class ContainersScenario : public Scenario {
 public:
  std::string_view name() const override { return "containers"; }
  std::string_view description() const override {
    return "a shared queue, hash map and vector under producers and consumers that are killed; "
           "per-producer FIFO, no torn value, consistent counts, no leaked byte";
  }
  std::size_t segment_size() const override { return 16 << 20; }
  bool uses_heap() const override { return true; }
  std::vector<std::string> fault_points() const override {
    return {"container.vector.grown",  "container.vector.written",  "container.map.linked",
            "container.map.unlinking", "container.queue.written",   "container.queue.read",
            "container.repairing",     "heap.publish.dest_written", "heap.free_from.unlinked"};
  }

  void setup(Segment& segment, Witness&) override {
    segment.names().construct<ContainerRoot>("containers");
  }

  void work(WorkerContext& ctx) override {
    Segment& segment = ctx.segment();
    Heap& heap = segment.heap();
    auto* root = segment.names().find<ContainerRoot>("containers");
    std::size_t lane = claim_lane(root->owners, segment);
    auto& random = ctx.random();
    std::map<std::uint64_t, std::uint64_t> last_seen;  // this consumer's view, per producer
    while (!ctx.should_stop()) {
      switch (random() % 8) {
        case 0:
        case 1: {
          std::uint64_t seq = root->next_seq[lane].fetch_add(1);
          (void)root->queue.try_push(heap, std::uint64_t{lane} << 40 | seq);
          break;
        }
        case 2:
        case 3: {
          if (auto value = root->queue.try_pop(heap)) {
            std::uint64_t producer = *value >> 40;
            std::uint64_t seq = *value & kSeqMask;
            auto seen = last_seen.find(producer);
            bool ordered = producer < kLanes && (seen == last_seen.end() || seq > seen->second);
            if (!ordered) worker_violation(ctx.witness(), *value);
            last_seen[producer] = seq;
          }
          break;
        }
        case 4: {
          std::uint64_t key = random() % 512;
          root->map.insert_or_assign(heap, key, key | root->next_seq[lane].fetch_add(1) << 16);
          break;
        }
        case 5: {
          std::uint64_t key = random() % 512;
          if (random() % 2 == 0) {
            root->map.erase(heap, key);
          } else if (auto value = root->map.find(heap, key); value && (*value & 0xffff) != key) {
            worker_violation(ctx.witness(), *value);
          }
          break;
        }
        default: {
          if (root->log.size() > 4000) {
            root->log.clear(heap);
          } else {
            root->log.push_back(heap,
                                std::uint64_t{lane} << 40 | root->next_seq[lane].fetch_add(1));
          }
        }
      }
      ctx.operation_done();
    }
    root->owners[lane].store(0);
  }

  std::vector<std::string> check(Segment& segment, Witness& witness, bool final) override {
    std::vector<std::string> problems = heap_problems(segment, final);
    count_recoveries(witness, {"container.repairing", "heap.reap.intent_resolved"});
    if (std::uint64_t n = witness.scenario(kViolationCount).load(); final && n != 0) {
      problems.push_back(std::to_string(n) + " values seen torn or out of order (first " +
                         std::to_string(witness.scenario(kViolationDetail).load()) + ")");
    }
    if (!final) return problems;
    Heap& heap = segment.heap();
    auto* root = segment.names().find<ContainerRoot>("containers");
    if (root->queue.size() != root->queue.pushed() - root->queue.popped() ||
        root->queue.size() > root->queue.capacity()) {
      problems.push_back("queue counts disagree: size " + std::to_string(root->queue.size()));
    }
    std::vector<std::uint64_t> keys;
    for (const auto& [key, value] : root->map.snapshot(heap)) {
      if ((value & 0xffff) != key)
        problems.push_back("map value torn for key " + std::to_string(key));
      keys.push_back(key);
    }
    std::sort(keys.begin(), keys.end());
    if (std::adjacent_find(keys.begin(), keys.end()) != keys.end()) {
      problems.push_back("a key appears twice in the map");
    }
    if (root->map.size() != keys.size()) {
      problems.push_back("map size " + std::to_string(root->map.size()) + " but " +
                         std::to_string(keys.size()) + " entries");
    }
    std::map<std::uint64_t, std::uint64_t> last;
    for (std::uint64_t value : root->log.snapshot(heap)) {
      std::uint64_t lane = value >> 40;
      std::uint64_t seq = value & kSeqMask;
      auto seen = last.find(lane);
      if (lane >= kLanes || (seen != last.end() && seq <= seen->second)) {
        problems.push_back("vector entry " + std::to_string(value) + " out of order");
        break;
      }
      last[lane] = seq;
    }
    return problems;
  }

  std::uint64_t leaked_bytes(Segment& segment, Witness&) override {
    Heap& heap = segment.heap();
    auto* root = segment.names().find<ContainerRoot>("containers");
    std::vector<std::uint64_t> reachable{heap.offset_of(root)};
    for (std::uint64_t block : root->log.blocks()) reachable.push_back(block);
    for (std::uint64_t block : root->map.blocks(heap)) reachable.push_back(block);
    if (root->queue.ring_block() != 0) reachable.push_back(root->queue.ring_block());
    return live_bytes_except(heap, reachable);
  }

  std::vector<NamedLockHolder> lock_holders(Segment& segment) override {
    return heap_lock_holders(segment);
  }
};

}  // namespace

void ChurnAllocation::allocate(Heap& heap, std::atomic<std::uint64_t>& slot,
                               std::size_t size) const {
  heap.allocate_into(slot, size);
}

std::unique_ptr<Scenario> make_allocator_churn_scenario(std::unique_ptr<ChurnAllocation> step) {
  return std::make_unique<AllocatorChurnScenario>(std::move(step));
}

std::unique_ptr<Scenario> make_allocator_churn_scenario() {
  return make_allocator_churn_scenario(std::make_unique<ChurnAllocation>());
}

std::vector<std::unique_ptr<Scenario>> heap_scenarios() {
  std::vector<std::unique_ptr<Scenario>> all;
  all.push_back(make_allocator_churn_scenario());
  all.push_back(std::make_unique<ContainersScenario>());
  return all;
}

}  // namespace shmutils::framework
