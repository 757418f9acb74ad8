// shmutils::Heap — the crash-safe allocator of a segment, used by every
// attached process at once.
//
// Contract
//   Lives:       the allocator region and the arena of a segment created with
//                SegmentOptions::heap (heap_layout.hpp, docs/segment-format.md).
//                A Heap is this attachment's view: Segment::heap() hands it out;
//                copies share the view.
//   Blocks:      allocations are named by their offset from the segment base
//                (0 = none), valid in every process; pointer() turns one into
//                an address of this attachment. Every block is aligned to 16
//                bytes at least, and to `alignment` (a power of two up to the
//                page size) when asked.
//   Fast path:   requests up to 4096 bytes come from this process's cache of
//                its size class: no lock shared with other processes. Caches are
//                refilled and flushed in batches under a per-class robust lock;
//                larger requests are best-fit blocks under the heap lock, and
//                freed blocks coalesce with free neighbours.
//   Errors:      out of memory: allocate() throws Error(OutOfMemory),
//                try_allocate() returns 0. A second free of a block throws
//                DoubleFree; an offset that is not a block of this heap throws
//                ForeignPointer. A heap found inconsistent throws CorruptHeap.
//   Crash:       a process killed at any instruction of any operation never
//                corrupts the heap nor blocks a survivor. The heap and class
//                locks are robust: the next holder finishes or undoes the dead
//                one's header writes and rebuilds what is derived. The dead
//                process's registry slot is reaped (by any survivor; Segment
//                registers the reaper): its in-flight operation is rolled
//                forward or back, its caches go back to the spans, and every
//                block it reserved and never published is freed.
//   No leak:     allocate_into() and reserve()+publish(dest) store the new
//                offset into a location the caller names (an atomic word in the
//                segment) atomically with the allocation: after a crash either
//                the location holds the block and the block is published, or
//                neither. free_from() is the mirror image. The location must
//                only change under a lock the caller holds, and a repair of
//                that lock must call Segment::reap_dead() (or await_reap())
//                before it touches the location.
//   Threads:     threads of one process share its cache and take turns inside
//                the allocator (a per-process lock, one exchange).
//   Fork:        a forked child must attach on its own before allocating (its
//                parent's attachment holds the parent's slot): using the
//                parent's heap in the child throws InvalidArgument.
//   Accounting:  free + live + cached + metadata == capacity, exactly, at any
//                moment nobody is inside an operation; audit() checks it along
//                with every structural invariant.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shmutils/shm/detail/heap_layout.hpp"
#include "shmutils/shm/process_registry.hpp"
#include "shmutils/shm/type_name.hpp"

namespace shmutils {

struct RegistryTable;

struct HeapStats {
  std::uint64_t capacity = 0;    // arena bytes
  std::uint64_t free = 0;        // in free blocks (payload) and free small objects
  std::uint64_t live = 0;        // reserved + published: what callers hold
  std::uint64_t cached = 0;      // small objects sitting in process caches
  std::uint64_t metadata = 0;    // block headers, span headers and state words, slack
  std::uint64_t published = 0;   // the part of live reachable from the segment
  std::uint64_t reserved = 0;    // the part of live still owned by one process
  std::uint64_t live_count = 0;  // live allocations
  std::uint64_t blocks = 0;      // blocks in the arena (spans included)
  std::uint64_t free_blocks = 0;
  std::uint64_t spans = 0;
  std::uint64_t largest_free = 0;  // largest free block payload
};

struct HeapAudit {
  bool complete = true;               // every structure could be examined
  std::vector<std::string> problems;  // one sentence each; empty = healthy
  std::vector<std::string> notes;     // what was not examined, and why
  HeapStats stats;
  bool ok() const noexcept { return complete && problems.empty(); }
};

// One allocation in a heap dump.
struct HeapEntry {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;  // usable bytes
  heap::Kind kind = heap::Kind::Free;
  std::uint32_t owner = 0;  // slot, for Reserved
  std::string type;         // the type it was constructed as, "" if raw
};

namespace detail {
struct HeapView;
}

class Reservation;

class Heap;
namespace detail {
// The heap's control block (internal: shmutils' scenarios and tests read it).
const heap::HeapControl& heap_control(const Heap& heap) noexcept;
}  // namespace detail

class Heap {
 public:
  Heap() = default;
  bool valid() const noexcept { return view_ != nullptr; }

  // --- allocation -----------------------------------------------------
  // A published block of at least `size` bytes; throws OutOfMemory.
  std::uint64_t allocate(std::size_t size, std::size_t alignment = 16);
  // The same, 0 when out of memory.
  std::uint64_t try_allocate(std::size_t size, std::size_t alignment = 16);
  // A published block whose first `size` bytes are zero (calloc). It is
  // zeroed while still reserved: a crash half way frees it instead.
  std::uint64_t allocate_zeroed(std::size_t size, std::size_t alignment = 16);
  // A published block whose offset is stored into `dest` atomically with the
  // allocation (see "No leak"). dest must live in this segment.
  std::uint64_t allocate_into(std::atomic<std::uint64_t>& dest, std::size_t size,
                              std::size_t alignment = 16);
  // A block owned by this process until published; freed if it dies first.
  // `type` names what will live there (dumps show it).
  Reservation reserve(std::size_t size, std::size_t alignment = 16, std::string_view type = {});
  // Frees a block (published, or reserved by this process).
  void free(std::uint64_t offset);
  // Frees the block whose offset `dest` holds, storing `replacement` into
  // dest atomically with the free.
  void free_from(std::atomic<std::uint64_t>& dest, std::uint64_t replacement = 0);

  // Typed: constructs a T in a new block (the block records T's name for
  // dumps). Published on return; a constructor that throws frees the block.
  template <class T, class... Args>
  T* construct(Args&&... args);
  template <class T>
  void destroy(T* object);

  // --- addresses ------------------------------------------------------
  std::byte* pointer(std::uint64_t offset) const;
  template <class T>
  T* pointer_to(std::uint64_t offset) const {
    return reinterpret_cast<T*>(pointer(offset));
  }
  std::uint64_t offset_of(const void* address) const;
  // Usable bytes of a live block.
  std::size_t usable_size(std::uint64_t offset) const;

  // --- maintenance ----------------------------------------------------
  // Returns this process's cached objects to the spans.
  void flush_cache();
  // The figures, computed by walking the heap.
  HeapStats stats() const;
  // Checks every invariant. Live: freezes the allocator (every lock, every
  // live process's turn) for the walk, waiting at most `timeout_ms` for each;
  // what it could not freeze makes the audit incomplete, never a hang.
  // `live`, when given, receives every live allocation seen by the walk.
  HeapAudit audit(unsigned timeout_ms = 1000, std::vector<HeapEntry>* live = nullptr) const;
  // Every live allocation, in address order (the seed's heap dump).
  std::vector<HeapEntry> dump() const;
  // Waits (at most timeout_ms) until the process `claim` names has been
  // reaped (its slot freed), reaping dead slots meanwhile. Repairs call this
  // first (see "No leak"). A claim names a process in any PID namespace.
  bool await_reap(SlotClaim claim, unsigned timeout_ms = 2000) const;
  // This process's registry claim (empty when not registered).
  SlotClaim claim() const noexcept;
  std::uint32_t slot() const noexcept;

  // --- used by Segment ------------------------------------------------
  // Bytes of the allocator region for `slots` registry slots and an arena of
  // `arena_size` bytes.
  static std::size_t region_size(std::uint32_t slots, std::size_t arena_size) noexcept;
  // Formats the region at `region_offset` and the arena (creator only).
  static void format(std::byte* base, std::uint64_t region_offset, std::uint32_t slots,
                     std::uint64_t arena_offset, std::uint64_t arena_size);
  // Reads the region's fixed fields once and checks them against the
  // segment; throws CorruptHeap.
  static heap::ControlLayout validate(const std::byte* base, std::uint64_t mapped_size,
                                      std::uint64_t region_offset, std::uint64_t region_size,
                                      std::uint32_t registry_capacity, const std::string& segment);
  // A view for an attachment; slot is this process's registry slot or -1.
  static Heap attach(std::byte* base, std::uint64_t mapped_size, std::uint64_t region_offset,
                     std::uint64_t region_size, const RegistryView& registry, std::int64_t slot,
                     std::string segment);
  // The registry object whose reapers include this heap's (await_reap uses it).
  void set_registry_owner(const std::shared_ptr<ProcessRegistry>& registry);
  // Bound on waiting for the heap's locks and for the locks of structures
  // built on it (RepairingLock): Error(Timeout) naming the holder past it.
  void set_lock_timeout(std::chrono::milliseconds timeout) noexcept;
  std::chrono::milliseconds lock_timeout() const noexcept;
  // Offline audit of a mapping nobody else is using: bounds-checks every
  // offset before touching it (safe on arbitrary bytes).
  static HeapAudit audit_offline(const std::byte* base, std::uint64_t mapped_size,
                                 std::uint64_t region_offset, std::uint64_t region_size,
                                 const RegistryView& registry,
                                 std::vector<HeapEntry>* live = nullptr);
  // The dump and figures of such a mapping, without locking (tools).
  static std::vector<HeapEntry> dump_offline(const std::byte* base, std::uint64_t mapped_size,
                                             std::uint64_t region_offset, std::uint64_t region_size,
                                             const RegistryView& registry);
  // The reaper Segment registers: returns the dead slot's holdings.
  void reclaim_slot(const SlotInfo& dead) const;
  // Detach: this process's caches and unpublished blocks go back.
  void release_slot() noexcept;
  void rebase(std::byte* base, std::uint64_t mapped_size, const RegistryView& registry) noexcept;

 private:
  friend class Reservation;
  friend const heap::HeapControl& detail::heap_control(const Heap& heap) noexcept;
  std::uint64_t allocate_impl(std::size_t size, std::size_t alignment, heap::Kind kind,
                              std::uint32_t type, std::atomic<std::uint64_t>* dest,
                              bool throw_on_oom);
  void publish_impl(std::uint64_t offset, std::atomic<std::uint64_t>* dest);
  std::uint32_t type_id(std::string_view name);
  std::shared_ptr<detail::HeapView> view_;
};

// A block owned by this process until publish(); cancelled (freed) by the
// destructor if never published. Move-only.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& other) noexcept
      : heap_(std::move(other.heap_)), offset_(std::exchange(other.offset_, 0)) {}
  Reservation& operator=(Reservation&& other) noexcept {
    if (this != &other) {
      cancel_noexcept();
      heap_ = std::move(other.heap_);
      offset_ = std::exchange(other.offset_, 0);
    }
    return *this;
  }
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() { cancel_noexcept(); }

  explicit operator bool() const noexcept { return offset_ != 0; }
  std::uint64_t offset() const noexcept { return offset_; }
  std::byte* data() const { return heap_.pointer(offset_); }
  template <class T>
  T* as() const {
    return reinterpret_cast<T*>(data());
  }

  // Makes the block part of the segment; returns its offset.
  std::uint64_t publish();
  // Stores the offset into dest and publishes, atomically (see Heap, "No leak").
  std::uint64_t publish(std::atomic<std::uint64_t>& dest);
  // Frees the block now.
  void cancel();

 private:
  friend class Heap;
  Reservation(Heap heap, std::uint64_t offset) noexcept : heap_(std::move(heap)), offset_(offset) {}
  void cancel_noexcept() noexcept;
  Heap heap_;
  std::uint64_t offset_ = 0;
};

template <class T, class... Args>
T* Heap::construct(Args&&... args) {
  Reservation reservation = reserve(sizeof(T), alignof(T) < 16 ? 16 : alignof(T), type_name<T>());
  T* object = new (reservation.data()) T(std::forward<Args>(args)...);
  reservation.publish();
  return object;
}

template <class T>
void Heap::destroy(T* object) {
  if (object == nullptr) return;
  std::uint64_t offset = offset_of(object);
  object->~T();
  free(offset);
}

}  // namespace shmutils
