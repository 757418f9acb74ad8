// The block layer of the allocator: best-fit bins, splits and merges under the
// heap lock, and the repairs that rebuild derived state from the header words.
#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <vector>

#include "heap_view.hpp"
#include "shmutils/shm/fault_point.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_split_intent, "heap.split.intent_written");
SHMUTILS_FAULT_POINT(fp_split_first, "heap.split.first_header_written");
SHMUTILS_FAULT_POINT(fp_merge_intent, "heap.merge.intent_written");
SHMUTILS_FAULT_POINT(fp_merge_written, "heap.merge.header_written");
SHMUTILS_FAULT_POINT(fp_heap_repairing, "heap.repairing");
SHMUTILS_FAULT_POINT(fp_class_repairing, "heap.class.repairing");

namespace detail {

using heap::FreeLinks;
using heap::HeapIntent;
using heap::HeapOp;
using heap::kGranule;

namespace {

constexpr std::uint64_t kMinFreeGranules = 2;  // header + free links

struct ClassTable {
  std::array<ClassGeometry, heap::kClassCount> geometry{};
  std::array<std::uint8_t, heap::kMaxSmallSize / kGranule + 1> by_granules{};

  ClassTable() {
    const std::uint32_t payload = static_cast<std::uint32_t>(heap::kSpanBytes - kGranule);
    for (std::uint32_t c = 0; c < heap::kClassCount; ++c) {
      std::uint32_t size = heap::kClassSizes[c];
      std::uint32_t count = (payload - 64) / (size + 4);
      auto data_offset = [&](std::uint32_t n) { return (64 + 4 * n + 15) / 16 * 16; };
      while (data_offset(count) + count * size > payload) --count;
      // Caches hold about 32 KiB of a class (at least 8 objects, at most 256).
      std::uint32_t limit = std::clamp<std::uint32_t>(32768 / size, 8, 256);
      geometry[c] = {size, count, data_offset(count), limit, std::max<std::uint32_t>(limit / 2, 4)};
    }
    std::uint32_t c = 0;
    for (std::size_t g = 0; g < by_granules.size(); ++g) {
      while (heap::kClassSizes[c] < g * kGranule) ++c;
      by_granules[g] = static_cast<std::uint8_t>(c);
    }
  }
};
const ClassTable g_classes;

std::uint64_t granules_of(std::uint64_t word) { return BlockHeader::granules_of(word); }
State state_of(std::uint64_t word) { return BlockHeader::state_of(word); }

FreeLinks& links(HeapView& v, std::uint64_t block) {
  return *v.at<FreeLinks>(block + sizeof(BlockHeader));
}

void write_header(HeapView& v, std::uint64_t block, std::uint64_t granules, State state,
                  std::uint32_t prev_granules) {
  BlockHeader* h = v.block(block);
  h->prev_granules = prev_granules;
  h->check = BlockHeader::check_for(block, granules);
  h->word.store(BlockHeader::pack(granules, state), std::memory_order_release);
}

void apply_split(HeapView& v, const HeapIntent& in) {
  BlockHeader* first = v.block(in.block);
  first->check = BlockHeader::check_for(in.block, in.first_granules);
  first->word.store(in.first_word, std::memory_order_release);
  fp_split_first.reached();
  std::uint64_t rest = in.block + in.first_granules * kGranule;
  std::uint64_t rest_granules = in.total_granules - in.first_granules;
  write_header(v, rest, rest_granules, State::make(Kind::Free),
               static_cast<std::uint32_t>(in.first_granules));
  v.block(in.block + in.total_granules * kGranule)->prev_granules =
      static_cast<std::uint32_t>(rest_granules);
}

void apply_merge(HeapView& v, const HeapIntent& in) {
  BlockHeader* h = v.block(in.block);
  h->check = BlockHeader::check_for(in.block, in.first_granules);
  h->word.store(in.first_word, std::memory_order_release);
  fp_merge_written.reached();
  // Headers now inside the merged block must never pass for blocks again (a
  // second free of the block would otherwise be taken for a first).
  for (std::uint64_t inner : in.absorbed) {
    if (inner == 0 || inner <= in.block || inner >= in.block + in.first_granules * kGranule) {
      continue;
    }
    BlockHeader* dead = v.block(inner);
    dead->check = heap::kFreedHeaderCheck;
    dead->word.store(BlockHeader::pack(0, State::make(Kind::Free)), std::memory_order_release);
  }
  v.block(in.block + in.first_granules * kGranule)->prev_granules =
      static_cast<std::uint32_t>(in.first_granules);
}

// Splits `block` (total granules) into a first part in `first_state` and a
// free rest, through the intent.
void split(HeapView& v, std::uint64_t block, std::uint64_t total, std::uint64_t first,
           State first_state) {
  HeapIntent& in = v.control->heap_intent;
  in.block = block;
  in.first_granules = first;
  in.first_word = BlockHeader::pack(first, first_state);
  in.total_granules = total;
  in.op.store(static_cast<std::uint64_t>(HeapOp::Split), std::memory_order_release);
  fp_split_intent.reached();
  apply_split(v, in);
  in.op.store(static_cast<std::uint64_t>(HeapOp::None), std::memory_order_release);
}

// Makes [start, start + granules) one free block, through the intent;
// `absorbed` are the headers it swallows.
void merge(HeapView& v, std::uint64_t start, std::uint64_t granules,
           std::array<std::uint64_t, 2> absorbed = {0, 0}) {
  HeapIntent& in = v.control->heap_intent;
  in.block = start;
  in.first_granules = granules;
  in.first_word = BlockHeader::pack(granules, State::make(Kind::Free));
  in.total_granules = granules;
  in.absorbed = absorbed;
  in.op.store(static_cast<std::uint64_t>(HeapOp::Merge), std::memory_order_release);
  fp_merge_intent.reached();
  apply_merge(v, in);
  in.op.store(static_cast<std::uint64_t>(HeapOp::None), std::memory_order_release);
}

// A free block of bin `bin` as its header says (the bins are derived and may
// be damaged: checked before any use).
std::uint64_t free_granules(HeapView& v, std::uint64_t block, const char* operation) {
  std::uint64_t word =
      v.block(v.checked_block(block, operation))->word.load(std::memory_order_relaxed);
  std::uint64_t g = granules_of(word);
  if (state_of(word).kind() != Kind::Free || g < kMinFreeGranules ||
      g > (v.arena_end - block) / kGranule) {
    v.corrupt(operation,
              "a free list names block " + std::to_string(block) + ", which is not a free block");
  }
  return g;
}

// The smallest block in bin `bin` of at least `want` granules, or 0.
std::uint64_t best_in_bin(HeapView& v, std::uint32_t bin, std::uint64_t want) {
  std::uint64_t best = 0;
  std::uint64_t best_granules = ~std::uint64_t{0};
  std::uint64_t steps = 0;
  for (std::uint64_t b = v.control->bins[bin]; b != 0; b = links(v, b).next) {
    if (++steps > v.list_limit()) v.corrupt("allocate", "a free list loops");
    std::uint64_t g = free_granules(v, b, "allocate");
    if (g >= want && g < best_granules) {
      best = b;
      best_granules = g;
      if (g == want) break;
    }
  }
  return best;
}

}  // namespace

const ClassGeometry& class_geometry(std::uint32_t class_index) noexcept {
  return g_classes.geometry[class_index];
}

std::uint32_t class_for(std::size_t size) noexcept {
  return g_classes.by_granules[(size + kGranule - 1) / kGranule];
}

std::uint32_t bin_for(std::uint64_t granules) noexcept {
  if (granules < 32) return static_cast<std::uint32_t>(granules);
  auto log = static_cast<std::uint32_t>(std::bit_width(granules) - 1);  // >= 5
  auto sub = static_cast<std::uint32_t>((granules >> (log - 2)) & 3);
  return std::min<std::uint32_t>(32 + (log - 5) * 4 + sub, heap::kBinCount - 1);
}

std::uint64_t span_of(const HeapView& v, std::uint64_t offset) noexcept {
  if (offset < v.arena_begin || offset >= v.arena_end) return 0;
  std::uint64_t region = (offset - v.arena_begin) / heap::kSpanBytes;
  if (v.span_map(region).load(std::memory_order_acquire) == 0) return 0;
  return v.arena_begin + region * heap::kSpanBytes + sizeof(BlockHeader);
}

bool span_block_well_formed(const HeapView& v, std::uint64_t block, std::uint64_t word) noexcept {
  return block >= v.arena_begin && (block - v.arena_begin) % heap::kSpanBytes == 0 &&
         granules_of(word) == heap::kSpanBytes / kGranule &&
         block + heap::kSpanBytes <= v.arena_end && state_of(word).type() < heap::kClassCount;
}

std::uint64_t checked_span(const HeapView& v, std::uint64_t span, std::uint32_t class_index,
                           const char* operation) {
  const bool found = span >= sizeof(BlockHeader) && span_of(v, span) == span &&
                     (span - sizeof(BlockHeader) - v.arena_begin) % heap::kSpanBytes == 0;
  if (found) {
    std::uint64_t word = v.block(span - sizeof(BlockHeader))->word.load(std::memory_order_acquire);
    if (state_of(word).kind() == Kind::Span && state_of(word).type() == class_index &&
        span_block_well_formed(v, span - sizeof(BlockHeader), word) &&
        v.at<SpanHeader>(span)->class_index == class_index) {
      return span;
    }
  }
  v.corrupt(operation, "a list of spans of class " + std::to_string(class_index) +
                           " names offset " + std::to_string(span) + ", not such a span");
}

void bin_insert(HeapView& v, std::uint64_t block, std::uint64_t granules) {
  std::uint32_t bin = bin_for(granules);
  std::uint64_t head = v.control->bins[bin];
  if (head != 0) v.checked_block(head, "free");
  links(v, block) = {head, 0};
  if (head != 0) links(v, head).prev = block;
  v.control->bins[bin] = block;
  v.control->bin_bitmap.fetch_or(std::uint64_t{1} << bin, std::memory_order_relaxed);
}

void bin_remove(HeapView& v, std::uint64_t block, std::uint64_t granules) {
  std::uint32_t bin = bin_for(granules);
  FreeLinks l = links(v, block);
  if (l.prev != 0) v.checked_block(l.prev, "unlink a free block");
  if (l.next != 0) v.checked_block(l.next, "unlink a free block");
  if (l.prev != 0) {
    links(v, l.prev).next = l.next;
  } else {
    v.control->bins[bin] = l.next;
  }
  if (l.next != 0) links(v, l.next).prev = l.prev;
  if (v.control->bins[bin] == 0) {
    v.control->bin_bitmap.fetch_and(~(std::uint64_t{1} << bin), std::memory_order_relaxed);
  }
}

std::uint64_t carve_block(HeapView& v, std::uint64_t granules, std::uint64_t alignment,
                          State state) {
  const bool aligned = alignment > kGranule;
  // Spans align their block (header) to the span grid; user blocks their payload.
  const bool span = alignment == heap::kSpanBytes;
  // Bytes to skip at the front of `block` to reach the boundary, leaving
  // either nothing or a free block of at least kMinFreeGranules in front.
  auto lead_of = [&](std::uint64_t block) -> std::uint64_t {
    if (!aligned) return 0;
    std::uint64_t start = span ? block - v.arena_begin : block + sizeof(BlockHeader);
    std::uint64_t lead = (start + alignment - 1) / alignment * alignment - start;
    if (lead != 0 && lead < kMinFreeGranules * kGranule) lead += alignment;
    return lead;
  };
  std::uint64_t block = 0;
  std::uint32_t bin = bin_for(granules);
  if (!aligned) {
    block = best_in_bin(v, bin, granules);
    if (block == 0) {
      std::uint64_t above = bin + 1 < heap::kBinCount
                                ? v.control->bin_bitmap.load(std::memory_order_relaxed) &
                                      (~std::uint64_t{0} << (bin + 1))
                                : 0;
      if (above == 0) return 0;
      block = best_in_bin(v, static_cast<std::uint32_t>(std::countr_zero(above)), granules);
      if (block == 0) return 0;
    }
  } else {
    // The smallest block, in the lowest bin that has one, with room for the
    // request after its boundary.
    std::uint64_t bins =
        v.control->bin_bitmap.load(std::memory_order_relaxed) & (~std::uint64_t{0} << bin);
    for (; bins != 0 && block == 0; bins &= bins - 1) {
      std::uint64_t best_granules = ~std::uint64_t{0};
      auto b_index = static_cast<std::uint32_t>(std::countr_zero(bins));
      std::uint64_t steps = 0;
      for (std::uint64_t b = v.control->bins[b_index]; b != 0; b = links(v, b).next) {
        if (++steps > v.list_limit()) v.corrupt("allocate", "a free list loops");
        std::uint64_t g = free_granules(v, b, "allocate");
        const std::uint64_t need = lead_of(b) / kGranule + granules;
        // A span is exactly kSpanBytes: a rest too small to be a free block
        // (one granule) cannot be split off, and must not stay inside it.
        const bool rest_ok = !span || g == need || g - need >= kMinFreeGranules;
        if (need <= g && rest_ok && g < best_granules) {
          block = b;
          best_granules = g;
        }
      }
    }
    if (block == 0) return 0;
  }
  std::uint64_t total = granules_of(v.block(block)->word.load(std::memory_order_relaxed));
  bin_remove(v, block, total);
  if (aligned) {
    std::uint64_t lead = lead_of(block);
    if (lead != 0) {
      std::uint64_t lead_granules = lead / kGranule;
      split(v, block, total, lead_granules, State::make(Kind::Free));
      bin_insert(v, block, lead_granules);
      block += lead;
      total -= lead_granules;
    }
  }
  if (total - granules >= kMinFreeGranules) {
    split(v, block, total, granules, state);
    bin_insert(v, block + granules * kGranule, total - granules);
  } else {
    v.block(block)->word.store(BlockHeader::pack(total, state), std::memory_order_release);
  }
  return block;
}

void release_block(HeapView& v, std::uint64_t block) {
  BlockHeader* h = v.block(block);
  std::uint64_t start = block;
  std::uint64_t total = granules_of(h->word.load(std::memory_order_acquire));
  std::array<std::uint64_t, 2> absorbed{0, 0};
  if (h->prev_granules != 0) {
    const std::uint64_t prev_granules = h->prev_granules;
    if (prev_granules > (block - v.arena_begin) / kGranule) {
      v.corrupt("free", "block " + std::to_string(block) + " names a neighbour before the arena");
    }
    std::uint64_t prev = block - prev_granules * kGranule;
    std::uint64_t word = v.block(prev)->word.load(std::memory_order_acquire);
    if (granules_of(word) != prev_granules) {
      v.corrupt("free", "block " + std::to_string(block) + " and its neighbour disagree on sizes");
    }
    if (state_of(word).kind() == Kind::Free) {
      bin_remove(v, prev, granules_of(word));
      start = prev;
      total += granules_of(word);
      absorbed[0] = block;
    }
  }
  const std::uint64_t own = granules_of(h->word.load(std::memory_order_acquire));
  if (own == 0 || own > (v.arena_end - block) / kGranule) {
    v.corrupt("free", "block at offset " + std::to_string(block) + " has a broken header");
  }
  std::uint64_t next = block + own * kGranule;
  std::uint64_t next_word = v.block(next)->word.load(std::memory_order_acquire);
  if (next < v.arena_end && state_of(next_word).kind() == Kind::Free) {
    bin_remove(v, next, granules_of(next_word));
    total += granules_of(next_word);
    absorbed[1] = next;
  }
  merge(v, start, total, absorbed);
  bin_insert(v, start, total);
}

void repair_blocks(HeapView& v) {
  fp_heap_repairing.reached();
  HeapIntent& in = v.control->heap_intent;
  auto op = static_cast<HeapOp>(in.op.load(std::memory_order_acquire));
  if (op != HeapOp::None) {
    bool inside = in.block >= v.arena_begin && in.block < v.arena_end && in.first_granules != 0 &&
                  in.total_granules >= in.first_granules &&
                  in.block + in.total_granules * kGranule <= v.arena_end;
    if (!inside) v.corrupt("repair", "the heap intent names blocks outside the arena");
    if (op == HeapOp::Split) apply_split(v, in);
    if (op == HeapOp::Merge) apply_merge(v, in);
    in.op.store(static_cast<std::uint64_t>(HeapOp::None), std::memory_order_release);
  }
  v.control->bins.fill(0);
  v.control->bin_bitmap.store(0, std::memory_order_relaxed);
  std::vector<std::uint8_t> spans(v.layout.span_map_size, 0);
  std::uint64_t prev = 0;  // the previous block, 0 before the first
  std::uint64_t prev_granules = 0;
  bool prev_free = false;
  std::uint64_t block = v.arena_begin;
  while (block < v.arena_end) {
    BlockHeader* h = v.block(block);
    std::uint64_t word = h->word.load(std::memory_order_acquire);
    std::uint64_t g = granules_of(word);
    if (g == 0 || block + g * kGranule > v.arena_end || !state_of(word).valid_bits()) {
      v.corrupt("repair", "block at offset " + std::to_string(block) + " has a broken header");
    }
    h->prev_granules = static_cast<std::uint32_t>(prev_granules);
    h->check = BlockHeader::check_for(block, g);
    Kind kind = state_of(word).kind();
    if (kind == Kind::Free && prev_free) {
      // Two free neighbours (a merge that never started): make them one.
      bin_remove(v, prev, prev_granules);
      merge(v, prev, prev_granules + g, {block, 0});
      bin_insert(v, prev, prev_granules + g);
      prev_granules += g;
      block = prev + prev_granules * kGranule;
      v.block(block)->prev_granules = static_cast<std::uint32_t>(prev_granules);
      continue;
    }
    if (kind == Kind::Free) bin_insert(v, block, g);
    if (kind == Kind::Span && !span_block_well_formed(v, block, word)) {
      v.corrupt("repair", "block at offset " + std::to_string(block) + " is no span of a class");
    }
    if (kind == Kind::Span) spans[(block - v.arena_begin) / heap::kSpanBytes] = 1;
    prev = block;
    prev_granules = g;
    prev_free = kind == Kind::Free;
    block += g * kGranule;
  }
  if (block != v.arena_end ||
      state_of(v.block(block)->word.load(std::memory_order_acquire)).kind() != Kind::Sentinel) {
    v.corrupt("repair", "the blocks do not end at the arena's sentinel");
  }
  v.block(block)->prev_granules = static_cast<std::uint32_t>(prev_granules);
  for (std::uint64_t r = 0; r < spans.size(); ++r) {
    if (v.span_map(r).load(std::memory_order_relaxed) != spans[r]) {
      v.span_map(r).store(spans[r], std::memory_order_release);
    }
  }
}

void rebuild_classes(HeapView& v, std::uint64_t class_mask) {
  fp_class_repairing.reached();
  for (std::uint32_t c = 0; c < heap::kClassCount; ++c) {
    if ((class_mask >> c & 1) == 0) continue;
    v.control->classes[c].partial = 0;
    v.control->classes[c].spans = 0;
  }
  for (std::uint64_t block = v.arena_begin; block < v.arena_end;) {
    std::uint64_t word = v.block(block)->word.load(std::memory_order_acquire);
    State state = state_of(word);
    if (granules_of(word) == 0 || block + granules_of(word) * kGranule > v.arena_end) {
      v.corrupt("rebuild", "block at offset " + std::to_string(block) + " has a broken header");
    }
    if (state.kind() == Kind::Span && !span_block_well_formed(v, block, word)) {
      v.corrupt("rebuild", "block at offset " + std::to_string(block) + " is no span of a class");
    }
    if (state.kind() == Kind::Span && (class_mask >> state.type() & 1) != 0) {
      std::uint64_t span = block + sizeof(BlockHeader);
      auto* header = v.at<SpanHeader>(span);
      std::atomic<std::uint32_t>* states = v.span_states(span);
      std::uint32_t free_count = 0;
      // The class's geometry, not the span's own header, bounds the walk.
      const ClassGeometry& geometry = class_geometry(state.type());
      header->class_index = state.type();
      header->object_count = geometry.object_count;
      header->data_offset = geometry.data_offset;
      if (header->cursor >= geometry.object_count) header->cursor = 0;
      for (std::uint32_t i = 0; i < geometry.object_count; ++i) {
        if (State{states[i].load(std::memory_order_acquire)}.kind() == Kind::Free) ++free_count;
      }
      ClassControl& cls = v.control->classes[state.type()];
      header->free_count = free_count;
      header->in_partial = free_count > 0 ? 1 : 0;
      header->next_partial = 0;
      if (free_count > 0) {
        header->next_partial = cls.partial;
        cls.partial = span;
      }
      ++cls.spans;
    }
    block += granules_of(word) * kGranule;
  }
}

void release_empty_spans(HeapView& v, std::uint32_t class_index) {
  ClassControl& cls = v.control->classes[class_index];
  const ClassGeometry& geometry = class_geometry(class_index);
  std::uint64_t* link = &cls.partial;
  std::uint64_t steps = 0;
  while (*link != 0 && cls.spans > 1) {
    if (++steps > v.list_limit()) v.corrupt("free", "a list of spans loops");
    std::uint64_t span = checked_span(v, *link, class_index, "free");
    auto* header = v.at<SpanHeader>(span);
    if (header->free_count != geometry.object_count) {
      link = &header->next_partial;
      continue;
    }
    *link = header->next_partial;
    header->in_partial = 0;
    --cls.spans;
    std::uint64_t block = span - sizeof(BlockHeader);
    v.span_map((block - v.arena_begin) / heap::kSpanBytes).store(0, std::memory_order_release);
    release_block(v, block);
  }
}

}  // namespace detail
}  // namespace shmutils
