// The allocator's operations: allocate (from the per-process caches or the
// best-fit blocks), publish, free, and the small lookups (pointer, usable
// size, type ids). The caches, blocks, locks, format and reaper have files of
// their own (heap_cache, heap_blocks, heap_locks, heap_format, heap_reap).
#include "shmutils/shm/heap.hpp"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <optional>
#include <vector>

#include "heap_view.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/fault_point.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_alloc_taken, "heap.allocate.taken");
SHMUTILS_FAULT_POINT(fp_alloc_dest_written, "heap.allocate.dest_written");
SHMUTILS_FAULT_POINT(fp_publish_dest_written, "heap.publish.dest_written");
SHMUTILS_FAULT_POINT(fp_free_cached, "heap.free.state_cached");
SHMUTILS_FAULT_POINT(fp_free_from_unlinked, "heap.free_from.unlinked");

namespace detail {

using heap::kGranule;
using heap::SlotOp;

HeapView& checked(const std::shared_ptr<HeapView>& view, const char* operation) {
  if (view == nullptr) {
    throw Error(ErrorKind::InvalidArgument, "heap", operation,
                "this segment has no heap (create it with SegmentOptions::heap)");
  }
  return *view;
}

void clear_intent(heap::Intent& intent) noexcept {
  intent.op.store(static_cast<std::uint64_t>(SlotOp::None), std::memory_order_release);
}

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

namespace {

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

void check_alignment(const HeapView& v, std::size_t alignment) {
  if (alignment == 0 || !std::has_single_bit(alignment) || alignment > sys::page_size()) {
    v.fail(ErrorKind::InvalidArgument, "allocate",
           "alignment " + std::to_string(alignment) + " is not a power of two up to the page size");
  }
}

}  // namespace

}  // namespace detail

using detail::checked;
using detail::clear_intent;
using detail::HeapView;
using detail::slot_of;
using heap::kGranule;
using heap::Kind;
using heap::SlotOp;
using heap::State;

namespace {

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

}  // namespace

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

const heap::HeapControl& detail::heap_control(const Heap& heap) noexcept {
  return *heap.view_->control;
}

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
