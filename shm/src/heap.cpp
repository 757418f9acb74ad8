// The allocator's operations: per-process caches in front of per-class spans,
// best-fit blocks behind the heap lock, and the reaper that returns what a dead
// process held.
#include "shmutils/shm/heap.hpp"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <optional>
#include <vector>

#include "heap_view.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/sys.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_alloc_taken, "heap.allocate.taken");
SHMUTILS_FAULT_POINT(fp_alloc_dest_written, "heap.allocate.dest_written");
SHMUTILS_FAULT_POINT(fp_publish_dest_written, "heap.publish.dest_written");
SHMUTILS_FAULT_POINT(fp_free_cached, "heap.free.state_cached");
SHMUTILS_FAULT_POINT(fp_free_from_unlinked, "heap.free_from.unlinked");
SHMUTILS_FAULT_POINT(fp_refill_partial, "heap.refill.partial");
SHMUTILS_FAULT_POINT(fp_flush_partial, "heap.flush.partial");
SHMUTILS_FAULT_POINT(fp_span_carved, "heap.span.carved");
SHMUTILS_FAULT_POINT(fp_reap_resolved, "heap.reap.intent_resolved");
SHMUTILS_FAULT_POINT(fp_reap_swept, "heap.reap.swept");

namespace heap {
std::uint64_t control_checksum(const HeapControl& control) noexcept {
  const auto* bytes = reinterpret_cast<const unsigned char*>(&control);
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < offsetof(HeapControl, checksum); ++i) {
    hash = (hash ^ bytes[i]) * 0x100000001b3ULL;
  }
  return hash;
}
}  // namespace heap

namespace detail {

using heap::kGranule;
using heap::SlotOp;

HeapLock::HeapLock(HeapView& v) : v_(v) {
  settle(v.control->heap_lock.acquire_within(v.lock_timeout,
                                             "heap lock of segment \"" + v.segment + "\""));
}

HeapLock::HeapLock(HeapView& v, std::uint64_t deadline_ns) : v_(v) {
  settle(v.control->heap_lock.acquire_until(std::chrono::steady_clock::time_point(
      std::chrono::nanoseconds(static_cast<std::int64_t>(deadline_ns)))));
}

void HeapLock::settle(LockResult result) {
  held_ = holds_lock(result);
  if (result == LockResult::OwnerDied) {
    try {
      repair_blocks(v_);
    } catch (const Error&) {
      held_ = false;
      v_.control->heap_lock.abandon_repair();
      v_.control->heap_lock.release();
      throw;
    }
    v_.control->heap_lock.mark_consistent();
  }
}

bool repair_class(HeapView& v, std::uint32_t class_index, std::uint64_t deadline_ns) {
  std::optional<HeapLock> heap_lock;
  if (deadline_ns == 0) {
    heap_lock.emplace(v);
  } else {
    heap_lock.emplace(v, deadline_ns);
    if (!heap_lock->held()) return false;
  }
  rebuild_classes(v, std::uint64_t{1} << class_index);
  return true;
}

ClassLock::ClassLock(HeapView& v, std::uint32_t class_index) : v_(v), class_index_(class_index) {
  Mutex& lock = v.control->classes[class_index].lock;
  LockResult result =
      lock.acquire_within(v.lock_timeout, "size-class lock " + std::to_string(class_index) +
                                              " of segment \"" + v.segment + "\"");
  if (result == LockResult::OwnerDied) {
    try {
      repair_class(v, class_index);
    } catch (...) {
      lock.release();
      throw;
    }
    lock.mark_consistent();
  }
}

bool take_turn(std::atomic<std::uint32_t>& turn, std::uint32_t self, int probe_fd,
               std::uint64_t deadline_ns) {
  for (unsigned spins = 0;; ++spins) {
    std::uint32_t holder = 0;
    if (turn.compare_exchange_weak(holder, self, std::memory_order_acquire)) return true;
    if (spins < 64) continue;
    sys::yield();
    if (spins % 256 == 0 && (holder & kAuditorTurn) != 0 && holder != self && probe_fd >= 0 &&
        !sys::ofd_byte_locked_elsewhere(probe_fd, kAuditorLockOffset + (holder & ~kAuditorTurn),
                                        "heap auditor")) {
      // Held by an auditor that no longer exists (killed mid-freeze).
      if (turn.compare_exchange_strong(holder, self, std::memory_order_acquire)) return true;
    }
    if (deadline_ns != 0 && spins % 64 == 0 && sys::monotonic_ns() >= deadline_ns) return false;
  }
}

namespace {

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

std::uint64_t& link_of(HeapView& v, std::uint64_t object) { return *v.at<std::uint64_t>(object); }

SmallRef small_ref(const HeapView& v, std::uint64_t offset) {
  SmallRef ref;
  std::uint64_t span = span_of(v, offset);
  if (span == 0) return ref;
  // The span map is derived: the block header must agree before the span's
  // own header is believed.
  const std::uint64_t word =
      v.block(span - sizeof(BlockHeader))->word.load(std::memory_order_acquire);
  const auto* header = v.at<SpanHeader>(span);
  if (BlockHeader::state_of(word).kind() != Kind::Span ||
      !span_block_well_formed(v, span - sizeof(BlockHeader), word) ||
      header->class_index != BlockHeader::state_of(word).type()) {
    v.corrupt("find a small object", "the span map names offset " + std::to_string(span) +
                                         ", which is no span of a class");
  }
  const ClassGeometry& geometry = class_geometry(BlockHeader::state_of(word).type());
  std::uint64_t data = span + geometry.data_offset;
  if (offset < data || (offset - data) % geometry.object_size != 0 ||
      (offset - data) / geometry.object_size >= geometry.object_count) {
    v.fail(ErrorKind::ForeignPointer, "free",
           "offset " + std::to_string(offset) + " is inside a span of " +
               std::to_string(geometry.object_size) + "-byte objects but not at one's start");
  }
  ref.span = span;
  ref.class_index = BlockHeader::state_of(word).type();
  ref.index = static_cast<std::uint32_t>((offset - data) / geometry.object_size);
  ref.state = v.span_states(span) + ref.index;
  return ref;
}

// The header of the large block whose payload is at `offset`; throws
// ForeignPointer for anything else.
BlockHeader* large_header(const HeapView& v, std::uint64_t offset, const char* operation) {
  bool inside = offset >= v.arena_begin + sizeof(BlockHeader) && offset < v.arena_end &&
                offset % kGranule == 0;
  if (inside) {
    std::uint64_t block = offset - sizeof(BlockHeader);
    BlockHeader* h = v.block(block);
    std::uint64_t word = h->word.load(std::memory_order_acquire);
    std::uint64_t g = BlockHeader::granules_of(word);
    if (g >= 2 && h->check == BlockHeader::check_for(block, g) &&
        block + g * kGranule <= v.arena_end) {
      return h;
    }
    if (g == 0 && h->check == heap::kFreedHeaderCheck) {
      v.fail(ErrorKind::DoubleFree, operation,
             "block at offset " + std::to_string(offset) +
                 " was freed and merged with a neighbour already");
    }
  }
  v.fail(ErrorKind::ForeignPointer, operation,
         "offset " + std::to_string(offset) + " is not the start of a block of this heap");
}

[[noreturn]] void bad_state(const HeapView& v, const char* operation, std::uint64_t offset,
                            State state) {
  if (state.kind() == Kind::Free || state.kind() == Kind::Cached) {
    v.fail(ErrorKind::DoubleFree, operation,
           "block at offset " + std::to_string(offset) + " is already free");
  }
  if (state.kind() == Kind::Reserved) {
    v.fail(ErrorKind::InvalidArgument, operation,
           "block at offset " + std::to_string(offset) + " is reserved by process slot " +
               std::to_string(state.owner()) + " and not published yet");
  }
  v.fail(ErrorKind::ForeignPointer, operation,
         "offset " + std::to_string(offset) + " is not an allocation");
}

bool may_free(State state, std::uint32_t slot) {
  return state.kind() == Kind::Published ||
         (state.kind() == Kind::Reserved && state.owner() == slot);
}

// The head of a cache's chain, read from the segment: checked to be an object
// of class c that this slot's cache holds before its link is followed.
SmallRef cached_object(const HeapView& v, std::uint64_t object, std::uint32_t c, std::uint32_t slot,
                       const char* operation) {
  SmallRef ref = small_ref(v, object);
  if (ref.span == 0 || ref.class_index != c ||
      State{ref.state->load(std::memory_order_acquire)}.word !=
          State::make(Kind::Cached, slot).word) {
    v.corrupt(operation, "the cache of process slot " + std::to_string(slot) + " names offset " +
                             std::to_string(object) + ", not an object it holds");
  }
  return ref;
}

// Moves a batch of free objects from the class's spans into the cache.
void refill(HeapView& v, std::uint32_t c, std::uint32_t slot) {
  const ClassGeometry& geometry = class_geometry(c);
  ClassControl& cls = v.control->classes[c];
  heap::ClassCache& cache = v.record(slot).caches[c];
  const State cached = State::make(Kind::Cached, slot);
  std::uint64_t chain = cache.head.load(std::memory_order_relaxed);
  std::uint32_t count = cache.count.load(std::memory_order_relaxed);
  std::uint32_t moved = 0;
  while (moved < geometry.batch) {
    std::uint64_t span = cls.partial;
    if (span == 0) {
      HeapLock heap_lock(v);
      std::uint64_t block = carve_block(v, heap::kSpanBytes / kGranule, heap::kSpanBytes,
                                        State::make(Kind::Reserved, slot));
      if (block == 0) break;
      span = block + sizeof(BlockHeader);
      auto* header = v.at<SpanHeader>(span);
      std::memset(static_cast<void*>(header), 0, geometry.data_offset);
      header->class_index = c;
      header->object_count = geometry.object_count;
      header->data_offset = geometry.data_offset;
      header->free_count = geometry.object_count;
      fp_span_carved.reached();
      v.block(block)->word.store(
          BlockHeader::pack(heap::kSpanBytes / kGranule, State::make(Kind::Span, 0, c)),
          std::memory_order_release);
      v.span_map((block - v.arena_begin) / heap::kSpanBytes).store(1, std::memory_order_release);
      header->in_partial = 1;
      header->next_partial = 0;
      cls.partial = span;
      ++cls.spans;
    }
    span = checked_span(v, span, c, "allocate");
    auto* header = v.at<SpanHeader>(span);
    std::atomic<std::uint32_t>* states = v.span_states(span);
    // The class's geometry bounds the walk, never numbers read from the span.
    const std::uint64_t data = span + geometry.data_offset;
    std::uint32_t i = header->cursor < geometry.object_count ? header->cursor : 0;
    if (header->free_count > geometry.object_count) header->free_count = geometry.object_count;
    for (std::uint32_t seen = 0;
         seen < geometry.object_count && moved < geometry.batch && header->free_count > 0;
         ++seen, i = i + 1 == geometry.object_count ? 0 : i + 1) {
      if (State{states[i].load(std::memory_order_relaxed)}.kind() != Kind::Free) continue;
      states[i].store(cached.word, std::memory_order_relaxed);
      std::uint64_t object = data + std::uint64_t{i} * geometry.object_size;
      link_of(v, object) = chain;
      chain = object;
      ++moved;
      --header->free_count;
      if (moved == 1) fp_refill_partial.reached();
    }
    header->cursor = i;
    // No free object found though the count said so: the count was wrong.
    if (moved == 0 && header->free_count != 0) header->free_count = 0;
    if (header->free_count == 0) {
      cls.partial = header->next_partial;
      header->in_partial = 0;
      header->next_partial = 0;
    }
  }
  cache.head.store(chain, std::memory_order_relaxed);
  cache.count.store(count + moved, std::memory_order_relaxed);
}

// Returns `n` objects from the cache to their spans.
void flush(HeapView& v, std::uint32_t c, std::uint32_t slot, std::uint32_t n) {
  ClassControl& cls = v.control->classes[c];
  const ClassGeometry& geometry = class_geometry(c);
  heap::ClassCache& cache = v.record(slot).caches[c];
  bool emptied = false;
  for (std::uint32_t k = 0; k < n; ++k) {
    std::uint64_t object = cache.head.load(std::memory_order_relaxed);
    if (object == 0) break;
    SmallRef ref = cached_object(v, object, c, slot, "flush");
    cache.head.store(link_of(v, object), std::memory_order_relaxed);
    cache.count.fetch_sub(1, std::memory_order_relaxed);
    ref.state->store(State::make(Kind::Free).word, std::memory_order_release);
    if (k == 0) fp_flush_partial.reached();
    auto* header = v.at<SpanHeader>(ref.span);
    ++header->free_count;
    if (header->in_partial == 0) {
      header->in_partial = 1;
      header->next_partial = cls.partial;
      cls.partial = ref.span;
    }
    if (header->free_count == geometry.object_count) emptied = true;
  }
  if (emptied && cls.spans > 1) {
    HeapLock heap_lock(v);
    release_empty_spans(v, c);
  }
}

void check_alignment(const HeapView& v, std::size_t alignment) {
  if (alignment == 0 || !std::has_single_bit(alignment) || alignment > sys::page_size()) {
    v.fail(ErrorKind::InvalidArgument, "allocate",
           "alignment " + std::to_string(alignment) + " is not a power of two up to the page size");
  }
}

}  // namespace

}  // namespace detail

using detail::HeapView;
using heap::kGranule;
using heap::Kind;
using heap::SlotOp;
using heap::State;

namespace {

HeapView& checked(const std::shared_ptr<HeapView>& view, const char* operation) {
  if (view == nullptr) {
    throw Error(ErrorKind::InvalidArgument, "heap", operation,
                "this segment has no heap (create it with SegmentOptions::heap)");
  }
  return *view;
}

// The view of a process that may allocate: registered, and not a forked copy.
HeapView& writer(const std::shared_ptr<HeapView>& view, const char* operation) {
  HeapView& v = checked(view, operation);
  if (v.slot < 0) {
    v.fail(ErrorKind::PermissionDenied, operation,
           "this attachment has no process slot (read-only, or register_process = false)");
  }
  if (v.fork_generation != sys::fork_generation()) {
    v.fail(ErrorKind::InvalidArgument, operation,
           "this attachment belongs to process " + std::to_string(v.owner_pid) +
               "; a forked child attaches on its own (Segment::attach(parent.descriptor()))");
  }
  return v;
}

std::uint32_t slot_of(const HeapView& v) { return static_cast<std::uint32_t>(v.slot); }

std::uint64_t dest_offset(const HeapView& v, const std::atomic<std::uint64_t>* dest) {
  if (dest == nullptr) return 0;
  auto address = reinterpret_cast<std::uintptr_t>(dest);
  auto base = reinterpret_cast<std::uintptr_t>(v.base);
  if (address < base || address + sizeof(*dest) > base + v.mapped || address % 8 != 0) {
    v.fail(ErrorKind::InvalidArgument, "allocate into",
           "the destination is not an aligned word inside this segment");
  }
  return address - base;
}

void set_intent(heap::Intent& intent, SlotOp op, std::uint64_t object, std::uint64_t dest,
                std::uint64_t aux = 0) {
  intent.obj.store(object, std::memory_order_relaxed);
  intent.dest.store(dest, std::memory_order_relaxed);
  intent.aux.store(aux, std::memory_order_relaxed);
  intent.op.store(static_cast<std::uint64_t>(op), std::memory_order_release);
}

void clear_intent(heap::Intent& intent) {
  intent.op.store(static_cast<std::uint64_t>(SlotOp::None), std::memory_order_release);
}

}  // namespace

std::size_t Heap::region_size(std::uint32_t slots, std::size_t arena_size) noexcept {
  std::size_t regions = (arena_size + heap::kSpanBytes - 1) / heap::kSpanBytes;
  return sizeof(heap::HeapControl) + std::size_t{slots} * sizeof(heap::SlotRecord) +
         sizeof(heap::TypeEntry) * heap::kMaxTypes + (regions + 63) / 64 * 64;
}

void Heap::format(std::byte* base, std::uint64_t region_offset, std::uint32_t slots,
                  std::uint64_t arena_offset, std::uint64_t arena_size) {
  auto* control = reinterpret_cast<heap::HeapControl*>(base + region_offset);
  std::uint64_t regions = (arena_size + heap::kSpanBytes - 1) / heap::kSpanBytes;
  std::memset(static_cast<void*>(control), 0, region_size(slots, arena_size));
  control->magic = heap::kControlMagic;
  control->version = 1;
  control->slot_capacity = slots;
  control->arena_offset = arena_offset;
  control->arena_size = arena_size;
  control->slots_offset = region_offset + sizeof(heap::HeapControl);
  control->types_offset = control->slots_offset + std::uint64_t{slots} * sizeof(heap::SlotRecord);
  control->span_map_offset = control->types_offset + sizeof(heap::TypeEntry) * heap::kMaxTypes;
  control->span_map_size = regions;
  control->checksum = heap::control_checksum(*control);
  // One free block spanning the arena, then the sentinel.
  std::uint64_t sentinel = arena_offset + arena_size - kGranule;
  std::uint64_t granules = (sentinel - arena_offset) / kGranule;
  auto* first = reinterpret_cast<heap::BlockHeader*>(base + arena_offset);
  first->prev_granules = 0;
  first->check = heap::BlockHeader::check_for(arena_offset, granules);
  first->word.store(heap::BlockHeader::pack(granules, heap::State::make(heap::Kind::Free)));
  auto* end = reinterpret_cast<heap::BlockHeader*>(base + sentinel);
  end->prev_granules = static_cast<std::uint32_t>(granules);
  end->check = heap::BlockHeader::check_for(sentinel, 1);
  end->word.store(heap::BlockHeader::pack(1, heap::State::make(heap::Kind::Sentinel)));
  auto* links = reinterpret_cast<heap::FreeLinks*>(base + arena_offset + kGranule);
  *links = {0, 0};
  std::uint32_t bin = detail::bin_for(granules);
  control->bins[bin] = arena_offset;
  control->bin_bitmap.store(std::uint64_t{1} << bin);
}

heap::ControlLayout Heap::validate(const std::byte* base, std::uint64_t mapped_size,
                                   std::uint64_t region_offset, std::uint64_t region_size,
                                   std::uint32_t registry_capacity, const std::string& segment) {
  const std::string object = "heap of segment \"" + segment + "\"";
  auto corrupt = [&](const std::string& why) {
    throw Error(ErrorKind::CorruptHeap, object, "validate", why);
  };
  if (region_size < sizeof(heap::HeapControl)) corrupt("the allocator region is too small");
  // One copy, checked and then used: the shared words may change meanwhile.
  alignas(heap::HeapControl) std::array<std::byte, sizeof(heap::HeapControl)> bytes;
  std::memcpy(bytes.data(), base + region_offset, bytes.size());
  const auto* control = reinterpret_cast<const heap::HeapControl*>(bytes.data());
  if (control->magic != heap::kControlMagic || control->version != 1) {
    corrupt("the allocator region does not start with a heap control block");
  }
  if (control->checksum != heap::control_checksum(*control)) corrupt("control checksum mismatch");
  if (control->slot_capacity != registry_capacity || control->slot_capacity > heap::kMaxSlots) {
    corrupt("slot records for " + std::to_string(control->slot_capacity) +
            " processes, the registry has " + std::to_string(registry_capacity));
  }
  std::uint64_t regions = (control->arena_size + heap::kSpanBytes - 1) / heap::kSpanBytes;
  const std::uint64_t region_end = region_offset + region_size;
  bool layout_ok =
      control->slots_offset == region_offset + sizeof(heap::HeapControl) &&
      control->types_offset == control->slots_offset + std::uint64_t{control->slot_capacity} *
                                                           sizeof(heap::SlotRecord) &&
      control->span_map_offset ==
          control->types_offset + sizeof(heap::TypeEntry) * heap::kMaxTypes &&
      control->span_map_size == regions && control->span_map_offset + regions <= region_end;
  if (!layout_ok) corrupt("the allocator region's tables do not fit it");
  bool arena_ok = control->arena_offset % heap::kSpanBytes == 0 &&
                  control->arena_offset >= region_end && control->arena_size % kGranule == 0 &&
                  control->arena_size >= 4 * kGranule && control->arena_offset <= mapped_size &&
                  control->arena_size <= mapped_size - control->arena_offset &&
                  control->arena_size / kGranule < (std::uint64_t{1} << 32);
  if (!arena_ok) corrupt("the arena lies outside the segment");
  return {control->slot_capacity, control->arena_offset,    control->arena_size,
          control->slots_offset,  control->span_map_offset, control->span_map_size,
          control->types_offset};
}

Heap Heap::attach(std::byte* base, std::uint64_t mapped_size, std::uint64_t region_offset,
                  std::uint64_t region_size, const RegistryView& registry, std::int64_t slot,
                  std::string segment) {
  const heap::ControlLayout layout =
      validate(base, mapped_size, region_offset, region_size, registry.capacity, segment);
  Heap heap;
  heap.view_ = std::make_shared<HeapView>();
  HeapView& v = *heap.view_;
  v.layout = layout;
  v.base = base;
  v.mapped = mapped_size;
  v.control = reinterpret_cast<heap::HeapControl*>(base + region_offset);
  v.region_size = region_size;
  v.registry = registry;
  v.segment = std::move(segment);
  v.slot = slot;
  v.owner_pid = sys::getpid();
  v.fork_generation = sys::fork_generation();
  v.arena_begin = layout.arena_offset;
  v.arena_end = layout.arena_offset + layout.arena_size - kGranule;
  if (slot >= 0) {
    heap::SlotRecord& record = v.record(static_cast<std::uint32_t>(slot));
    record.pid.store(v.owner_pid, std::memory_order_relaxed);
    v.claim = SlotClaim::of(v.registry.inspect(static_cast<std::uint32_t>(slot)));
  }
  return heap;
}

void Heap::rebase(std::byte* base, std::uint64_t mapped_size,
                  const RegistryView& registry) noexcept {
  if (view_ == nullptr) return;
  std::uint64_t region =
      static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(view_->control) - view_->base);
  view_->base = base;
  view_->mapped = mapped_size;
  view_->control = reinterpret_cast<heap::HeapControl*>(base + region);
  view_->registry = registry;
}

void Heap::set_registry_owner(const std::shared_ptr<ProcessRegistry>& registry) {
  if (view_ != nullptr) view_->registry_owner = registry;
}

void Heap::set_lock_timeout(std::chrono::milliseconds timeout) noexcept {
  if (view_ != nullptr) view_->lock_timeout = timeout;
}

std::chrono::milliseconds Heap::lock_timeout() const noexcept {
  return view_ != nullptr ? view_->lock_timeout : std::chrono::milliseconds{10'000};
}

std::uint32_t Heap::slot() const noexcept {
  return view_ != nullptr && view_->slot >= 0 ? static_cast<std::uint32_t>(view_->slot) : ~0U;
}

const heap::HeapControl& Heap::control() const noexcept { return *view_->control; }

std::byte* Heap::pointer(std::uint64_t offset) const {
  HeapView& v = checked(view_, "pointer");
  if (offset == 0) return nullptr;
  if (offset < v.arena_begin || offset >= v.arena_end) {
    v.fail(ErrorKind::OutOfRange, "pointer",
           "offset " + std::to_string(offset) + " is outside the arena");
  }
  return v.base + offset;
}

std::uint64_t Heap::offset_of(const void* address) const {
  HeapView& v = checked(view_, "offset_of");
  if (address == nullptr) return 0;
  auto a = reinterpret_cast<std::uintptr_t>(address);
  auto b = reinterpret_cast<std::uintptr_t>(v.base);
  if (a < b + v.arena_begin || a >= b + v.arena_end) {
    v.fail(ErrorKind::ForeignPointer, "offset_of", "the address is not inside this heap's arena");
  }
  return a - b;
}

std::size_t Heap::usable_size(std::uint64_t offset) const {
  HeapView& v = checked(view_, "usable_size");
  detail::SmallRef ref = detail::small_ref(v, offset);
  if (ref.span != 0) return detail::class_geometry(ref.class_index).object_size;
  heap::BlockHeader* h = detail::large_header(v, offset, "usable_size");
  return (heap::BlockHeader::granules_of(h->word.load()) - 1) * kGranule;
}

std::uint32_t Heap::type_id(std::string_view name) {
  HeapView& v = *view_;
  if (name.empty()) return 0;
  std::lock_guard<std::mutex> local(v.types_mutex);
  std::string key(name.substr(0, sizeof(heap::TypeEntry::name)));
  auto found = v.type_ids.find(key);
  if (found != v.type_ids.end()) return found->second;
  auto* types = v.at<heap::TypeEntry>(v.layout.types_offset);
  auto lookup = [&]() -> std::uint32_t {
    std::uint32_t count = std::min(v.control->type_count.load(), heap::kMaxTypes);
    for (std::uint32_t i = 0; i < count; ++i) {
      if (types[i].ready.load(std::memory_order_acquire) == 1 &&
          std::string_view(types[i].name.data(), types[i].length) == key) {
        return i + 1;
      }
    }
    return 0;
  };
  std::uint32_t id = lookup();
  if (id == 0) {
    MutexGuard guard(v.control->types_lock);
    if (guard.owner_died()) guard.mark_consistent();  // an unfinished entry is never ready
    id = lookup();
    std::uint32_t count = v.control->type_count.load();
    if (id == 0 && count < heap::kMaxTypes) {
      heap::TypeEntry& entry = types[count];
      entry.ready.store(0);
      entry.length = static_cast<std::uint32_t>(key.size());
      std::memcpy(entry.name.data(), key.data(), key.size());
      entry.ready.store(1, std::memory_order_release);
      v.control->type_count.store(count + 1, std::memory_order_release);
      id = count + 1;
    }
  }
  v.type_ids.emplace(std::move(key), id);
  return id;
}

std::uint64_t Heap::allocate_impl(std::size_t size, std::size_t alignment, heap::Kind kind,
                                  std::uint32_t type, std::atomic<std::uint64_t>* dest,
                                  bool throw_on_oom) {
  HeapView& v = writer(view_, "allocate");
  detail::check_alignment(v, alignment);
  if (size == 0) size = 1;
  // Larger than the whole arena can never fit; refusing it before any
  // rounding also keeps that rounding from wrapping around (SIZE_MAX + 15).
  const bool may_fit = size <= v.arena_end - v.arena_begin;
  const std::uint32_t slot = slot_of(v);
  const std::uint64_t dest_at = dest_offset(v, dest);
  heap::SlotRecord& record = v.record(slot);
  detail::SlotTurn turn(v, record);
  const State final_state = State::make(kind, slot, type);
  if (may_fit && size <= heap::kMaxSmallSize && alignment <= kGranule) {
    const std::uint32_t c = detail::class_for(size);
    heap::ClassCache& cache = record.caches[c];
    if (cache.count.load(std::memory_order_relaxed) == 0) {
      detail::ClassLock lock(v, c);
      detail::refill(v, c, slot);
    }
    std::uint64_t object = cache.head.load(std::memory_order_relaxed);
    if (object != 0) {
      std::atomic<std::uint32_t>* state =
          detail::cached_object(v, object, c, slot, "allocate").state;
      if (dest != nullptr && dest->load(std::memory_order_relaxed) == object) {
        dest->store(0, std::memory_order_relaxed);  // a stale copy must not look like the result
      }
      if (dest != nullptr) set_intent(record.intent, SlotOp::Allocate, object, dest_at);
      fp_alloc_taken.reached();
      cache.head.store(detail::link_of(v, object), std::memory_order_relaxed);
      cache.count.fetch_sub(1, std::memory_order_relaxed);
      if (dest == nullptr) {
        state->store(final_state.word, std::memory_order_release);
      } else {
        state->store(State::make(Kind::Reserved, slot, type).word, std::memory_order_release);
        dest->store(object, std::memory_order_release);
        fp_alloc_dest_written.reached();
        state->store(final_state.word, std::memory_order_release);
        clear_intent(record.intent);
      }
      return object;
    }
    // No object and no room for a new span: a block serves the request.
  }
  if (may_fit) {  // blocks
    std::uint64_t granules = 1 + (size + kGranule - 1) / kGranule;
    granules = std::max<std::uint64_t>(granules, 2);
    std::uint64_t block = 0;
    {
      detail::HeapLock lock(v);
      block = detail::carve_block(v, granules, alignment, State::make(Kind::Reserved, slot, type));
    }
    if (block != 0) {
      std::uint64_t object = block + sizeof(heap::BlockHeader);
      heap::BlockHeader* h = v.block(block);
      std::uint64_t reserved_word = h->word.load(std::memory_order_relaxed);
      std::uint64_t final_word =
          heap::BlockHeader::pack(heap::BlockHeader::granules_of(reserved_word), final_state);
      if (dest != nullptr) {
        if (dest->load(std::memory_order_relaxed) == object) dest->store(0);
        set_intent(record.intent, SlotOp::Allocate, object, dest_at);
        dest->store(object, std::memory_order_release);
        fp_alloc_dest_written.reached();
      }
      h->word.store(final_word, std::memory_order_release);
      if (dest != nullptr) clear_intent(record.intent);
      return object;
    }
  }
  if (!throw_on_oom) return 0;
  HeapStats s = stats();
  v.fail(ErrorKind::OutOfMemory, "allocate",
         "no room for " + std::to_string(size) + " bytes (free " + std::to_string(s.free) + " of " +
             std::to_string(s.capacity) + ", largest free block " + std::to_string(s.largest_free) +
             ", cached by processes " + std::to_string(s.cached) + ")");
}

std::uint64_t Heap::allocate(std::size_t size, std::size_t alignment) {
  return allocate_impl(size, alignment, Kind::Published, 0, nullptr, true);
}

std::uint64_t Heap::try_allocate(std::size_t size, std::size_t alignment) {
  return allocate_impl(size, alignment, Kind::Published, 0, nullptr, false);
}

std::uint64_t Heap::allocate_zeroed(std::size_t size, std::size_t alignment) {
  Reservation reservation = reserve(size, alignment);
  std::memset(reservation.data(), 0, size);
  return reservation.publish();
}

std::uint64_t Heap::allocate_into(std::atomic<std::uint64_t>& dest, std::size_t size,
                                  std::size_t alignment) {
  return allocate_impl(size, alignment, Kind::Published, 0, &dest, true);
}

Reservation Heap::reserve(std::size_t size, std::size_t alignment, std::string_view type) {
  std::uint32_t id = type.empty() ? 0 : type_id(type);
  std::uint64_t offset = allocate_impl(size, alignment, Kind::Reserved, id, nullptr, true);
  return Reservation(*this, offset);
}

void Heap::publish_impl(std::uint64_t offset, std::atomic<std::uint64_t>* dest) {
  HeapView& v = writer(view_, "publish");
  const std::uint32_t slot = slot_of(v);
  const std::uint64_t dest_at = dest_offset(v, dest);
  heap::SlotRecord& record = v.record(slot);
  detail::SlotTurn turn(v, record);
  detail::SmallRef ref = detail::small_ref(v, offset);
  auto publish_word = [&](auto& word, auto current, auto published) {
    if (dest != nullptr) {
      set_intent(record.intent, SlotOp::Publish, offset, dest_at);
      dest->store(offset, std::memory_order_release);
      fp_publish_dest_written.reached();
    }
    bool ok = word.compare_exchange_strong(current, published, std::memory_order_acq_rel);
    clear_intent(record.intent);
    return ok;
  };
  if (ref.span != 0) {
    State state{ref.state->load(std::memory_order_acquire)};
    if (state.kind() != Kind::Reserved || state.owner() != slot) {
      detail::bad_state(v, "publish", offset, state);
    }
    publish_word(*ref.state, state.word, State::make(Kind::Published, 0, state.type()).word);
    return;
  }
  heap::BlockHeader* h = detail::large_header(v, offset, "publish");
  std::uint64_t word = h->word.load(std::memory_order_acquire);
  State state = heap::BlockHeader::state_of(word);
  if (state.kind() != Kind::Reserved || state.owner() != slot) {
    detail::bad_state(v, "publish", offset, state);
  }
  publish_word(h->word, word,
               heap::BlockHeader::pack(heap::BlockHeader::granules_of(word),
                                       State::make(Kind::Published, 0, state.type())));
}

namespace {

// Reserved(slot) -> Published, in the slot's turn (undoing a claim).
void publish_impl_in_turn(HeapView& v, std::uint32_t slot, std::uint64_t offset) {
  detail::SmallRef ref = detail::small_ref(v, offset);
  if (ref.span != 0) {
    State state{ref.state->load()};
    if (state.kind() == Kind::Reserved && state.owner() == slot) {
      ref.state->store(State::make(Kind::Published, 0, state.type()).word);
    }
    return;
  }
  heap::BlockHeader* h = detail::large_header(v, offset, "publish");
  std::uint64_t word = h->word.load();
  State state = heap::BlockHeader::state_of(word);
  if (state.kind() == Kind::Reserved && state.owner() == slot) {
    h->word.store(heap::BlockHeader::pack(heap::BlockHeader::granules_of(word),
                                          State::make(Kind::Published, 0, state.type())));
  }
}

// Frees `offset` on behalf of `slot` (the caller holds the slot's turn).
void free_in_turn(HeapView& v, std::uint32_t slot, std::uint64_t offset, const char* operation) {
  detail::SmallRef ref = detail::small_ref(v, offset);
  if (ref.span != 0) {
    State state{ref.state->load(std::memory_order_acquire)};
    const State cached = State::make(Kind::Cached, slot);
    do {
      if (!detail::may_free(state, slot)) detail::bad_state(v, operation, offset, state);
    } while (!ref.state->compare_exchange_weak(state.word, cached.word, std::memory_order_acq_rel));
    fp_free_cached.reached();
    heap::ClassCache& cache = v.record(slot).caches[ref.class_index];
    detail::link_of(v, offset) = cache.head.load(std::memory_order_relaxed);
    cache.head.store(offset, std::memory_order_relaxed);
    std::uint32_t count = cache.count.fetch_add(1, std::memory_order_relaxed) + 1;
    const detail::ClassGeometry& geometry = detail::class_geometry(ref.class_index);
    if (count > geometry.cache_limit) {
      detail::ClassLock lock(v, ref.class_index);
      detail::flush(v, ref.class_index, slot, count - geometry.cache_limit / 2);
    }
    return;
  }
  detail::HeapLock lock(v);
  heap::BlockHeader* h = detail::large_header(v, offset, operation);
  State state = heap::BlockHeader::state_of(h->word.load(std::memory_order_acquire));
  if (!detail::may_free(state, slot)) detail::bad_state(v, operation, offset, state);
  detail::release_block(v, offset - sizeof(heap::BlockHeader));
}

}  // namespace

void Heap::free(std::uint64_t offset) {
  HeapView& v = writer(view_, "free");
  if (offset == 0) return;
  const std::uint32_t slot = slot_of(v);
  detail::SlotTurn turn(v, v.record(slot));
  free_in_turn(v, slot, offset, "free");
}

void Heap::free_from(std::atomic<std::uint64_t>& dest, std::uint64_t replacement) {
  HeapView& v = writer(view_, "free_from");
  const std::uint32_t slot = slot_of(v);
  const std::uint64_t dest_at = dest_offset(v, &dest);
  heap::SlotRecord& record = v.record(slot);
  detail::SlotTurn turn(v, record);
  std::uint64_t offset = dest.load(std::memory_order_acquire);
  if (offset == 0) v.fail(ErrorKind::InvalidArgument, "free_from", "the location holds no block");
  if (offset == replacement) {
    v.fail(ErrorKind::InvalidArgument, "free_from", "the replacement is the block being freed");
  }
  // Published -> Reserved(this slot) first: from here until the free, the
  // block is ours, and "published iff the location holds it" decides a crash.
  detail::SmallRef ref = detail::small_ref(v, offset);
  heap::BlockHeader* large = ref.span != 0 ? nullptr : detail::large_header(v, offset, "free_from");
  bool claimed = false;
  if (ref.span != 0) {
    State state{ref.state->load(std::memory_order_acquire)};
    if (state.kind() != Kind::Published) detail::bad_state(v, "free_from", offset, state);
    set_intent(record.intent, SlotOp::FreeFrom, offset, dest_at, replacement);
    claimed = ref.state->compare_exchange_strong(
        state.word, State::make(Kind::Reserved, slot, state.type()).word);
  } else {
    std::uint64_t word = large->word.load(std::memory_order_acquire);
    State state = heap::BlockHeader::state_of(word);
    if (state.kind() != Kind::Published) detail::bad_state(v, "free_from", offset, state);
    set_intent(record.intent, SlotOp::FreeFrom, offset, dest_at, replacement);
    claimed = large->word.compare_exchange_strong(
        word, heap::BlockHeader::pack(heap::BlockHeader::granules_of(word),
                                      State::make(Kind::Reserved, slot, state.type())));
  }
  if (!claimed) {
    clear_intent(record.intent);
    v.fail(ErrorKind::DoubleFree, "free_from",
           "block at offset " + std::to_string(offset) + " was freed concurrently");
  }
  std::uint64_t expected = offset;
  if (!dest.compare_exchange_strong(expected, replacement, std::memory_order_acq_rel)) {
    publish_impl_in_turn(v, slot, offset);  // give it back untouched
    clear_intent(record.intent);
    v.fail(ErrorKind::InvalidArgument, "free_from",
           "the location changed while freeing (it must only change under the caller's lock)");
  }
  fp_free_from_unlinked.reached();
  free_in_turn(v, slot, offset, "free_from");
  clear_intent(record.intent);
}

void Heap::flush_cache() {
  HeapView& v = writer(view_, "flush_cache");
  const std::uint32_t slot = slot_of(v);
  detail::SlotTurn turn(v, v.record(slot));
  for (std::uint32_t c = 0; c < heap::kClassCount; ++c) {
    heap::ClassCache& cache = v.record(slot).caches[c];
    std::uint32_t count = cache.count.load(std::memory_order_relaxed);
    if (count == 0) continue;
    detail::ClassLock lock(v, c);
    detail::flush(v, c, slot, count);
  }
}

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

std::uint64_t Reservation::publish() {
  if (offset_ == 0) {
    throw Error(ErrorKind::InvalidArgument, "reservation", "publish", "nothing reserved");
  }
  heap_.publish_impl(offset_, nullptr);
  return std::exchange(offset_, 0);
}

std::uint64_t Reservation::publish(std::atomic<std::uint64_t>& dest) {
  if (offset_ == 0) {
    throw Error(ErrorKind::InvalidArgument, "reservation", "publish", "nothing reserved");
  }
  heap_.publish_impl(offset_, &dest);
  return std::exchange(offset_, 0);
}

void Reservation::cancel() {
  if (offset_ == 0) return;
  heap_.free(offset_);
  offset_ = 0;
}

void Reservation::cancel_noexcept() noexcept {
  try {
    cancel();
  } catch (const Error&) {
    offset_ = 0;  // the reaper frees it when this process detaches or dies
  }
}

}  // namespace shmutils
