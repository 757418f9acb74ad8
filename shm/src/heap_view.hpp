// Internal to the allocator's sources: the process-local view of a heap and
// the helpers its files share (heap.cpp, heap_audit.cpp, heap_blocks.cpp,
// heap_cache.cpp, heap_format.cpp, heap_locks.cpp, heap_reap.cpp).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "shmutils/shm/detail/heap_layout.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/process_registry.hpp"

namespace shmutils::detail {

using heap::BlockHeader;
using heap::ClassControl;
using heap::HeapControl;
using heap::Kind;
using heap::SlotRecord;
using heap::SpanHeader;
using heap::State;

// The geometry of one small class's spans.
struct ClassGeometry {
  std::uint32_t object_size;
  std::uint32_t object_count;
  std::uint32_t data_offset;  // from the span payload
  std::uint32_t cache_limit;  // flush half when a cache grows past this
  std::uint32_t batch;        // objects moved per refill
};
const ClassGeometry& class_geometry(std::uint32_t class_index) noexcept;
// The class for a request of `size` bytes (1..kMaxSmallSize).
std::uint32_t class_for(std::size_t size) noexcept;
// Bin of a free block of `granules`.
std::uint32_t bin_for(std::uint64_t granules) noexcept;

struct HeapView {
  std::byte* base = nullptr;
  std::uint64_t mapped = 0;
  HeapControl* control = nullptr;
  heap::ControlLayout layout;  // its fixed fields, validated (never re-read)
  std::uint64_t region_size = 0;
  RegistryView registry;                          // validated at attach; no table when detached
  std::weak_ptr<ProcessRegistry> registry_owner;  // with the reapers, for await_reap
  std::string segment;
  std::int64_t slot = -1;  // this process's registry slot, -1 when not registered
  SlotClaim claim;         // and its claim (names this process to others)
  std::chrono::milliseconds lock_timeout{10'000};  // SegmentOptions::lock_timeout
  pid_t owner_pid = 0;
  std::uint64_t fork_generation = 0;
  std::uint64_t arena_begin = 0;  // offset of the first block
  std::uint64_t arena_end = 0;    // offset of the sentinel block
  std::mutex types_mutex;         // type_ids below
  std::unordered_map<std::string, std::uint32_t> type_ids;

  template <class T>
  T* at(std::uint64_t offset) const noexcept {
    return reinterpret_cast<T*>(base + offset);
  }
  BlockHeader* block(std::uint64_t offset) const noexcept { return at<BlockHeader>(offset); }
  SlotRecord& record(std::uint32_t index) const noexcept {
    return at<SlotRecord>(layout.slots_offset)[index];
  }
  std::atomic<std::uint8_t>& span_map(std::uint64_t region) const noexcept {
    return at<std::atomic<std::uint8_t>>(layout.span_map_offset)[region];
  }
  std::atomic<std::uint32_t>* span_states(std::uint64_t span) const noexcept {
    return at<std::atomic<std::uint32_t>>(span + sizeof(SpanHeader));
  }
  std::string object() const { return "heap of segment \"" + segment + "\""; }
  [[noreturn]] void fail(ErrorKind kind, const char* operation, const std::string& why) const {
    throw Error(kind, object(), operation, why);
  }
  [[noreturn]] void corrupt(const char* operation, const std::string& why) const {
    fail(ErrorKind::CorruptHeap, operation, why + " (run shmctl audit for the whole picture)");
  }
  // Every offset read from the segment (a bin's or free block's link, a list
  // of spans, a cache's chain) is checked before it is followed: a damaged or
  // hostile segment gives CorruptHeap, never a stray access.
  bool is_block(std::uint64_t offset) const noexcept {
    return offset >= arena_begin && offset < arena_end &&
           (offset - arena_begin) % heap::kGranule == 0;
  }
  std::uint64_t checked_block(std::uint64_t offset, const char* operation) const {
    if (!is_block(offset)) {
      corrupt(operation,
              "a free list names offset " + std::to_string(offset) + ", not a block of the arena");
    }
    return offset;
  }
  // More steps than this through a list of blocks or spans means a cycle.
  std::uint64_t list_limit() const noexcept {
    return (arena_end - arena_begin) / heap::kGranule + 1;
  }
};

// Where a small object lives, or nothing when the offset is not in a span.
struct SmallRef {
  std::uint64_t span = 0;  // payload offset of the span; 0 = not a small object
  std::uint32_t class_index = 0;
  std::uint32_t index = 0;
  std::atomic<std::uint32_t>* state = nullptr;
};
// Span of an offset: the span payload offset when the region is a span.
std::uint64_t span_of(const HeapView& v, std::uint64_t offset) noexcept;
// Whether a block whose header says Span has a span's place and size (a
// damaged header could otherwise send a walk of its object states past the
// arena): checked before its states are read.
bool span_block_well_formed(const HeapView& v, std::uint64_t block, std::uint64_t word) noexcept;
// `span`, read from the segment as a span of class `class_index`, checked to
// be one (span map, block header, class); CorruptHeap otherwise.
std::uint64_t checked_span(const HeapView& v, std::uint64_t span, std::uint32_t class_index,
                           const char* operation);

// --- locks ------------------------------------------------------------
// A slot's turn: its process's threads take turns inside the allocator, and an
// auditor takes every live process's turn to freeze the heap. The word says
// who holds it without naming a pid (pids repeat across PID namespaces, so a
// pid cannot tell a dead auditor from a live one):
//   kOwnerTurn           the slot's own process; if it dies holding it, the
//                        reaper clears the word before the slot is reused.
//   kAuditorTurn | token an auditor, alive while its open file description
//                        locks byte kAuditorLockOffset + token of the
//                        segment's file; the kernel drops that lock at death
//                        in any namespace, and the owner then takes over.
// deadline_ns 0 waits without bound (the holder being alive); probe_fd is the
// segment's descriptor, used to test an auditor's lock.
inline constexpr std::uint32_t kOwnerTurn = 1;
inline constexpr std::uint32_t kAuditorTurn = std::uint32_t{1} << 31;
inline constexpr std::uint64_t kAuditorLockOffset = kLivenessLockOffset + (std::uint64_t{1} << 40);
bool take_turn(std::atomic<std::uint32_t>& turn, std::uint32_t self, int probe_fd,
               std::uint64_t deadline_ns = 0);
inline void give_turn(std::atomic<std::uint32_t>& turn) noexcept {
  turn.store(0, std::memory_order_release);
}

// Takes the heap lock; repairs what a dead holder left before returning.
class HeapLock {
 public:
  explicit HeapLock(HeapView& v);
  // Gives up at the deadline (CLOCK_MONOTONIC ns): held() tells.
  HeapLock(HeapView& v, std::uint64_t deadline_ns);
  ~HeapLock() {
    if (held_) v_.control->heap_lock.release();
  }
  bool held() const noexcept { return held_; }
  HeapLock(const HeapLock&) = delete;
  HeapLock& operator=(const HeapLock&) = delete;

 private:
  void settle(LockResult result);
  HeapView& v_;
  bool held_ = false;
};
// After a class lock's holder died: rebuilds that class (takes the heap lock,
// waiting at most until deadline_ns when it is not 0). False if it gave up.
bool repair_class(HeapView& v, std::uint32_t class_index, std::uint64_t deadline_ns = 0);
// Takes a class lock; a dead holder's class is rebuilt (under the heap lock).
class ClassLock {
 public:
  ClassLock(HeapView& v, std::uint32_t class_index);
  ~ClassLock() { v_.control->classes[class_index_].lock.release(); }
  ClassLock(const ClassLock&) = delete;
  ClassLock& operator=(const ClassLock&) = delete;

 private:
  HeapView& v_;
  std::uint32_t class_index_;
};

// --- shared by the allocator's files -----------------------------------
// The view of a Heap that has one; InvalidArgument otherwise.
HeapView& checked(const std::shared_ptr<HeapView>& view, const char* operation);
inline std::uint32_t slot_of(const HeapView& v) noexcept {
  return static_cast<std::uint32_t>(v.slot);
}
void clear_intent(heap::Intent& intent) noexcept;
// Where a small object lives (span 0: not in a span); ForeignPointer for an
// offset inside a span but not at an object's start, CorruptHeap for a span
// map entry that names no span.
SmallRef small_ref(const HeapView& v, std::uint64_t offset);
// The header of the large block whose payload is at `offset`; DoubleFree or
// ForeignPointer for anything else.
BlockHeader* large_header(const HeapView& v, std::uint64_t offset, const char* operation);

// This process's turn inside its own slot.
class SlotTurn {
 public:
  SlotTurn(const HeapView& v, SlotRecord& record) : lock_(record.op_lock) {
    take_turn(lock_, kOwnerTurn, v.registry.probe_fd);
  }
  ~SlotTurn() { give_turn(lock_); }
  SlotTurn(const SlotTurn&) = delete;
  SlotTurn& operator=(const SlotTurn&) = delete;

 private:
  std::atomic<std::uint32_t>& lock_;
};

// --- the per-process caches (heap_cache.cpp) ----------------------------
// The link word inside a cached object (its first 8 bytes).
inline std::uint64_t& link_of(HeapView& v, std::uint64_t object) {
  return *v.at<std::uint64_t>(object);
}
// The head of a cache's chain, read from the segment, checked to be an
// object of class c that slot's cache holds; CorruptHeap otherwise.
SmallRef cached_object(const HeapView& v, std::uint64_t object, std::uint32_t c, std::uint32_t slot,
                       const char* operation);
// Moves a batch of free objects of class c from its spans into slot's cache
// (the class lock held).
void refill(HeapView& v, std::uint32_t c, std::uint32_t slot);
// Returns n objects of slot's cache of class c to their spans (the class
// lock held).
void flush(HeapView& v, std::uint32_t c, std::uint32_t slot, std::uint32_t n);

// --- under the heap lock (heap_blocks.cpp) -----------------------------
void bin_insert(HeapView& v, std::uint64_t block, std::uint64_t granules);
void bin_remove(HeapView& v, std::uint64_t block, std::uint64_t granules);
// A block of `granules` whose payload is aligned to `alignment`, in state
// `state`; 0 when nothing fits.
std::uint64_t carve_block(HeapView& v, std::uint64_t granules, std::uint64_t alignment,
                          State state);
// Frees a block (its header word already checked), merging neighbours.
void release_block(HeapView& v, std::uint64_t block);
// Redoes a dead holder's header writes, then rebuilds bins and the span map.
void repair_blocks(HeapView& v);
// Rebuilds the derived parts of every class from the span states. Needs the
// heap lock and every class lock that is rebuilt (mask bit per class).
void rebuild_classes(HeapView& v, std::uint64_t class_mask);
// Spans whose objects are all free, beyond one per class, go back to the
// blocks. Needs the class lock and the heap lock.
void release_empty_spans(HeapView& v, std::uint32_t class_index);

}  // namespace shmutils::detail
