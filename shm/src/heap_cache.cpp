// The per-process caches of small objects: a batch is moved from the class's
// spans into a cache (refill) and back (flush), under the class lock.
#include <cstring>

#include "heap_view.hpp"
#include "shmutils/shm/fault_point.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_refill_partial, "heap.refill.partial");
SHMUTILS_FAULT_POINT(fp_flush_partial, "heap.flush.partial");
SHMUTILS_FAULT_POINT(fp_span_carved, "heap.span.carved");

namespace detail {

using heap::kGranule;

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

}  // namespace detail
}  // namespace shmutils
