// The allocator's reaper: what a dead process held (its in-flight operation,
// its cached objects, its unpublished blocks) goes back to the heap; and the
// same sweep when a process detaches.
#include <memory>
#include <vector>

#include "heap_view.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/heap.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_reap_resolved, "heap.reap.intent_resolved");
SHMUTILS_FAULT_POINT(fp_reap_swept, "heap.reap.swept");

using detail::checked;
using detail::clear_intent;
using detail::HeapView;
using detail::slot_of;
using heap::kGranule;
using heap::Kind;
using heap::SlotOp;
using heap::State;

namespace {

// Finishes or undoes the in-flight operation of a dead slot. Every write is a
// compare-and-swap from a state only that slot could have left, so a late or
// repeated resolution changes nothing.
void resolve_intent(HeapView& v, std::uint32_t slot) {
  heap::Intent& intent = v.record(slot).intent;
  auto op = static_cast<SlotOp>(intent.op.load(std::memory_order_acquire));
  std::uint64_t object = intent.obj.load(std::memory_order_relaxed);
  std::uint64_t dest_at = intent.dest.load(std::memory_order_relaxed);
  bool dest_ok = dest_at != 0 && dest_at % 8 == 0 && dest_at + 8 <= v.mapped;
  if (op == SlotOp::None || !dest_ok) {
    clear_intent(intent);
    return;
  }
  auto* dest = v.at<std::atomic<std::uint64_t>>(dest_at);
  std::atomic<std::uint32_t>* small_state = nullptr;
  heap::BlockHeader* large = nullptr;
  try {
    detail::SmallRef ref = detail::small_ref(v, object);
    if (ref.span != 0) {
      small_state = ref.state;
    } else {
      large = detail::large_header(v, object, "reap");
    }
  } catch (const Error&) {
    clear_intent(intent);  // it never got as far as a valid block
    return;
  }
  // One rule for every operation with a location: a block the dead slot
  // still holds as Reserved is published exactly when the location holds it
  // (allocate-into and publish had stored it; free_from had not unlinked it
  // yet). Anything else is left to the sweep, which frees what the slot holds.
  if (dest->load() == object) {
    if (small_state != nullptr) {
      State s{small_state->load()};
      if (s.kind() == Kind::Reserved && s.owner() == slot) {
        std::uint32_t expected = s.word;
        small_state->compare_exchange_strong(expected,
                                             State::make(Kind::Published, 0, s.type()).word);
      }
    } else {
      std::uint64_t word = large->word.load();
      State s = heap::BlockHeader::state_of(word);
      if (s.kind() == Kind::Reserved && s.owner() == slot) {
        large->word.compare_exchange_strong(
            word, heap::BlockHeader::pack(heap::BlockHeader::granules_of(word),
                                          State::make(Kind::Published, 0, s.type())));
      }
    }
  }
  clear_intent(intent);
}

// Frees every block and object the slot holds and empties its record.
// Caller holds every class lock and the heap lock.
void sweep_slot(HeapView& v, std::uint32_t slot) {
  std::vector<std::uint64_t> blocks;
  for (std::uint64_t block = v.arena_begin; block < v.arena_end;) {
    std::uint64_t word = v.block(block)->word.load(std::memory_order_acquire);
    State state = heap::BlockHeader::state_of(word);
    std::uint64_t granules = heap::BlockHeader::granules_of(word);
    if (granules == 0 || block + granules * kGranule > v.arena_end) {
      v.fail(ErrorKind::CorruptHeap, "reap",
             "block at offset " + std::to_string(block) + " has a broken header");
    }
    if (state.kind() == Kind::Reserved && state.owner() == slot) blocks.push_back(block);
    if (state.kind() == Kind::Span) {
      if (!detail::span_block_well_formed(v, block, word)) {
        v.corrupt("reap", "block at offset " + std::to_string(block) + " is no span of a class");
      }
      std::uint64_t span = block + sizeof(heap::BlockHeader);
      std::atomic<std::uint32_t>* states = v.span_states(span);
      std::uint32_t count = detail::class_geometry(state.type()).object_count;
      for (std::uint32_t i = 0; i < count; ++i) {
        State s{states[i].load(std::memory_order_acquire)};
        if ((s.kind() == Kind::Cached || s.kind() == Kind::Reserved) && s.owner() == slot) {
          states[i].store(State::make(Kind::Free).word, std::memory_order_release);
        }
      }
    }
    block += heap::BlockHeader::granules_of(word) * kGranule;
  }
  fp_reap_swept.reached();
  for (std::uint64_t block : blocks) detail::release_block(v, block);
  detail::rebuild_classes(v, (std::uint64_t{1} << heap::kClassCount) - 1);
  heap::SlotRecord& record = v.record(slot);
  for (heap::ClassCache& cache : record.caches) {
    cache.head.store(0, std::memory_order_relaxed);
    cache.count.store(0, std::memory_order_relaxed);
  }
  clear_intent(record.intent);
  record.pid.store(0, std::memory_order_relaxed);
}

// Every class lock, in order, then the heap lock.
class WholeHeapLock {
 public:
  explicit WholeHeapLock(HeapView& v) {
    classes_.reserve(heap::kClassCount);
    for (std::uint32_t c = 0; c < heap::kClassCount; ++c) {
      classes_.push_back(std::make_unique<detail::ClassLock>(v, c));
    }
    heap_ = std::make_unique<detail::HeapLock>(v);
  }

 private:
  std::vector<std::unique_ptr<detail::ClassLock>> classes_;
  std::unique_ptr<detail::HeapLock> heap_;
};

}  // namespace

void Heap::reclaim_slot(const SlotInfo& dead) const {
  HeapView& v = checked(view_, "reap");
  if (dead.index >= v.registry.capacity) return;
  resolve_intent(v, dead.index);
  fp_reap_resolved.reached();
  WholeHeapLock lock(v);
  sweep_slot(v, dead.index);
  // A process that died inside the allocator left its turn taken; the next
  // process in this slot must not wait for it.
  std::uint32_t owner = detail::kOwnerTurn;
  v.record(dead.index).op_lock.compare_exchange_strong(owner, 0, std::memory_order_release);
}

void Heap::release_slot() noexcept {
  if (view_ == nullptr || view_->slot < 0 || view_->fork_generation != sys::fork_generation()) {
    return;
  }
  HeapView& v = *view_;
  try {
    const std::uint32_t slot = slot_of(v);
    detail::SlotTurn turn(v, v.record(slot));
    WholeHeapLock lock(v);
    sweep_slot(v, slot);
  } catch (const Error&) {
    // Left for the reaper: the slot's holdings are freed when it is reaped.
  }
}

}  // namespace shmutils
