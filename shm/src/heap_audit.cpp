// The allocator's audit, figures and dump. The walker reads through bounds
// checks only, so it runs on a live heap (frozen first), on a segment nobody
// uses, and on arbitrary bytes (the fuzzer feeds it those).
#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <unordered_map>
#include <vector>

#include "heap_view.hpp"
#include "shmutils/shm/detail/sys.hpp"

namespace shmutils {

using heap::kGranule;

namespace {

std::string at_offset(std::uint64_t offset) { return "offset " + std::to_string(offset); }

// True when a robust lock's data may be stale: held, or its holder died.
bool needs_repair(const Mutex& lock) {
  auto& word = const_cast<Mutex&>(lock).futex().word;
  std::uint32_t value = word.load(std::memory_order_acquire);
  return (value & RobustFutex::kTidMask) != 0 || (value & RobustFutex::kOwnerDied) != 0 ||
         lock.state() != Mutex::State::Consistent;
}

class Walker {
 public:
  // frozen: every lock and live process's turn is held (a live audit);
  // heap_held: at least the heap lock is held (figures, dumps).
  Walker(const std::byte* base, std::uint64_t mapped, std::uint64_t control_offset,
         std::uint64_t region_size, const RegistryView& registry, bool frozen, bool heap_held)
      : base_(base),
        mapped_(mapped),
        control_offset_(control_offset),
        region_size_(region_size),
        registry_(registry),
        frozen_(frozen),
        heap_held_(heap_held) {}

  HeapAudit run(bool want_entries);
  std::vector<HeapEntry> entries;
  // Slots whose turn the auditor holds; a process that attached after the
  // freeze began may still free into its cache, so only these are checked.
  std::set<std::uint32_t> frozen_slots;

 private:
  template <class T>
  const T* get(std::uint64_t offset) const {
    if (offset > mapped_ || sizeof(T) > mapped_ - offset || offset % alignof(T) != 0) {
      return nullptr;
    }
    return reinterpret_cast<const T*>(base_ + offset);
  }
  void problem(std::string text) {
    if (audit_.problems.size() < 200) audit_.problems.push_back(std::move(text));
  }
  bool slot_alive(std::uint32_t slot);
  std::string type_name(std::uint32_t id) const;
  bool walk_blocks();
  struct Header {
    std::uint64_t granules;
    heap::State state;
  };
  std::optional<Header> check_header(std::uint64_t block, std::uint64_t prev_granules);
  void count_free_block(std::uint64_t block, std::uint64_t payload, bool prev_free);
  void count_live(std::uint64_t object, std::uint64_t size, heap::State state);
  void walk_span(std::uint64_t block, std::uint64_t g, std::uint64_t payload, heap::State state);
  bool check_arena_end(std::uint64_t block);
  void check_bins();
  void check_classes();
  void check_slots();

  struct SpanInfo {
    std::uint32_t class_index;
    std::uint32_t free_count;
    std::uint32_t in_partial;
  };

  const std::byte* base_;
  std::uint64_t mapped_;
  std::uint64_t control_offset_;
  std::uint64_t region_size_;
  RegistryView registry_;
  bool frozen_;
  bool heap_held_;
  const heap::HeapControl* control_ = nullptr;
  heap::ControlLayout layout_;  // control_'s fixed fields, read and checked once
  std::uint64_t begin_ = 0;
  std::uint64_t end_ = 0;
  HeapAudit audit_;
  std::vector<std::string> notes_;
  std::set<std::uint64_t> free_blocks_;
  std::unordered_map<std::uint64_t, SpanInfo> spans_;  // by payload offset
  // Cached objects per (slot, class), from the span states.
  std::unordered_map<std::uint64_t, std::uint32_t> cached_by_slot_class_;
  std::unordered_map<std::uint32_t, std::optional<bool>> alive_;
  struct Holdings {
    std::uint64_t cached = 0;
    std::uint64_t reserved = 0;
  };
  std::map<std::uint32_t, Holdings> dead_holdings_;  // by slot: what no live process owns
  bool heap_stale_ = false;
};

bool Walker::slot_alive(std::uint32_t slot) {
  auto& known = alive_[slot];
  if (!known) {
    if (!registry_.valid() || slot >= registry_.capacity) {
      known = false;
    } else {
      SlotInfo info = registry_.inspect(slot);
      known = info.state != SlotState::Free && info.alive;
    }
  }
  return *known;
}

std::string Walker::type_name(std::uint32_t id) const {
  if (id == 0 || id > heap::kMaxTypes) return {};
  const auto* entry =
      get<heap::TypeEntry>(layout_.types_offset + (id - 1) * sizeof(heap::TypeEntry));
  if (entry == nullptr || entry->ready.load() != 1) return "type #" + std::to_string(id);
  return std::string(entry->name.data(), std::min<std::size_t>(entry->length, entry->name.size()));
}

// One header of the block walk, its word read once: nullopt when the walk
// cannot go on past it (its size runs out of the arena, or it lies outside
// the mapping).
std::optional<Walker::Header> Walker::check_header(std::uint64_t block,
                                                   std::uint64_t prev_granules) {
  const auto* h = get<heap::BlockHeader>(block);
  if (h == nullptr) {
    problem("block at " + at_offset(block) + " lies outside the mapping");
    return std::nullopt;
  }
  std::uint64_t word = h->word.load(std::memory_order_acquire);
  std::uint64_t g = heap::BlockHeader::granules_of(word);
  heap::State state = heap::BlockHeader::state_of(word);
  if (g == 0 || g > (end_ - block) / kGranule) {
    problem("block at " + at_offset(block) + " has size " + std::to_string(g * kGranule) +
            ", running past the arena's end (blocks overlap or the header is torn)");
    return std::nullopt;
  }
  if (h->check != heap::BlockHeader::check_for(block, g)) {
    problem("block at " + at_offset(block) + ": header check does not match");
  }
  if (!heap_stale_ && h->prev_granules != prev_granules) {
    problem("block at " + at_offset(block) + ": previous-size field " +
            std::to_string(h->prev_granules * kGranule) + ", the block before has " +
            std::to_string(prev_granules * kGranule));
  }
  if (!state.valid_bits() || state.kind() == heap::Kind::Cached ||
      state.kind() == heap::Kind::Sentinel) {
    problem("block at " + at_offset(block) + ": invalid state word " + std::to_string(state.word));
  }
  return Header{g, state};
}

void Walker::count_free_block(std::uint64_t block, std::uint64_t payload, bool prev_free) {
  HeapStats& s = audit_.stats;
  if (prev_free && !heap_stale_) {
    problem("free blocks at " + at_offset(block) + " and before it were not coalesced");
  }
  s.free += payload;
  ++s.free_blocks;
  s.largest_free = std::max(s.largest_free, payload);
  free_blocks_.insert(block);
}

// A reserved or published object (a large block's payload, or a span's
// object): counted, its dead owner's holdings noted, listed.
void Walker::count_live(std::uint64_t object, std::uint64_t size, heap::State state) {
  HeapStats& s = audit_.stats;
  s.live += size;
  ++s.live_count;
  (state.kind() == heap::Kind::Reserved ? s.reserved : s.published) += size;
  if (state.kind() == heap::Kind::Reserved && !slot_alive(state.owner())) {
    ++dead_holdings_[state.owner()].reserved;
  }
  if (entries.size() < 1'000'000) {
    entries.push_back({object, size, state.kind(), state.owner(), type_name(state.type())});
  }
}

void Walker::walk_span(std::uint64_t block, std::uint64_t g, std::uint64_t payload,
                       heap::State state) {
  HeapStats& s = audit_.stats;
  std::uint64_t span = block + kGranule;
  const auto* header = get<heap::SpanHeader>(span);
  const std::uint32_t c = state.type();
  bool geometry_ok = header != nullptr && c < heap::kClassCount &&
                     (block - begin_) % heap::kSpanBytes == 0 && g == heap::kSpanBytes / kGranule &&
                     header->class_index == c;
  const detail::ClassGeometry* geometry =
      c < heap::kClassCount ? &detail::class_geometry(c) : nullptr;
  geometry_ok = geometry_ok && header->object_count == geometry->object_count &&
                header->data_offset == geometry->data_offset;
  if (!geometry_ok) {
    problem("span at " + at_offset(span) + " has a broken header or is off the span grid");
    s.metadata += payload;
    return;
  }
  std::uint64_t region = (block - begin_) / heap::kSpanBytes;
  const auto* mark = get<std::atomic<std::uint8_t>>(layout_.span_map_offset + region);
  if (!heap_stale_ && (mark == nullptr || mark->load() != 1)) {
    problem("span at " + at_offset(span) + " is missing from the span map");
  }
  const auto* states = get<std::atomic<std::uint32_t>>(span + sizeof(heap::SpanHeader));
  SpanInfo info{c, 0, header->in_partial};
  s.metadata += payload - std::uint64_t{geometry->object_count} * geometry->object_size;
  ++s.spans;
  for (std::uint32_t i = 0; i < geometry->object_count; ++i) {
    heap::State os{states[i].load(std::memory_order_acquire)};
    const std::uint64_t object =
        span + geometry->data_offset + std::uint64_t{i} * geometry->object_size;
    switch (os.kind()) {
      case heap::Kind::Free:
        ++info.free_count;
        s.free += geometry->object_size;
        break;
      case heap::Kind::Cached:
        s.cached += geometry->object_size;
        ++cached_by_slot_class_[std::uint64_t{os.owner()} << 8 | c];
        if (!slot_alive(os.owner())) ++dead_holdings_[os.owner()].cached;
        break;
      case heap::Kind::Reserved:
      case heap::Kind::Published: count_live(object, geometry->object_size, os); break;
      default:
        problem("object at " + at_offset(object) + " has an invalid state word " +
                std::to_string(os.word));
        s.metadata += geometry->object_size;
    }
  }
  spans_[span] = info;
}

// After the walk: it must end at the sentinel, and every span-map mark must
// have its span.
bool Walker::check_arena_end(std::uint64_t block) {
  if (block != end_) {
    problem("the blocks do not end at the sentinel");
    return false;
  }
  const auto* sentinel = get<heap::BlockHeader>(end_);
  if (sentinel == nullptr ||
      heap::BlockHeader::state_of(sentinel->word.load()).kind() != heap::Kind::Sentinel) {
    problem("the arena's sentinel block is missing");
    return false;
  }
  audit_.stats.metadata += kGranule;
  if (!heap_stale_) {
    for (std::uint64_t r = 0; r < layout_.span_map_size; ++r) {
      const auto* mark = get<std::atomic<std::uint8_t>>(layout_.span_map_offset + r);
      if (mark != nullptr && mark->load() != 0 &&
          !spans_.contains(begin_ + r * heap::kSpanBytes + kGranule)) {
        problem("span map marks region " + std::to_string(r) + " but no span is there");
      }
    }
  }
  return true;
}

// Every block from the arena's start to its sentinel, each header read once.
bool Walker::walk_blocks() {
  HeapStats& s = audit_.stats;
  std::uint64_t block = begin_;
  std::uint64_t prev_granules = 0;
  bool prev_free = false;
  const std::uint64_t max_blocks = (end_ - begin_) / kGranule + 1;
  for (std::uint64_t n = 0; block < end_ && n < max_blocks; ++n) {
    const std::optional<Header> header = check_header(block, prev_granules);
    if (!header) return false;
    const std::uint64_t g = header->granules;
    const heap::State state = header->state;
    ++s.blocks;
    s.metadata += kGranule;
    const std::uint64_t payload = (g - 1) * kGranule;
    switch (state.kind()) {
      case heap::Kind::Free: count_free_block(block, payload, prev_free); break;
      case heap::Kind::Reserved:
      case heap::Kind::Published: count_live(block + kGranule, payload, state); break;
      case heap::Kind::Span: walk_span(block, g, payload, state); break;
      default: s.metadata += payload; break;
    }
    prev_granules = g;
    prev_free = state.kind() == heap::Kind::Free;
    block += g * kGranule;
  }
  return check_arena_end(block);
}

void Walker::check_bins() {
  if (heap_stale_) return;
  std::uint64_t listed = 0;
  std::uint64_t bitmap = control_->bin_bitmap.load();
  for (std::uint32_t bin = 0; bin < heap::kBinCount; ++bin) {
    std::uint64_t prev = 0;
    std::uint64_t steps = 0;
    std::uint64_t b = control_->bins[bin];
    if ((b != 0) != ((bitmap >> bin & 1) != 0)) {
      problem("bin " + std::to_string(bin) + ": bitmap bit disagrees with the list");
    }
    for (; b != 0; ++steps) {
      if (steps > free_blocks_.size()) {
        problem("bin " + std::to_string(bin) + " has a cycle");
        break;
      }
      if (!free_blocks_.contains(b)) {
        problem("bin " + std::to_string(bin) + " links " + at_offset(b) +
                ", which is not a free block");
        break;
      }
      const auto* h = get<heap::BlockHeader>(b);
      const auto* links = get<heap::FreeLinks>(b + kGranule);
      if (detail::bin_for(heap::BlockHeader::granules_of(h->word.load())) != bin) {
        problem("free block at " + at_offset(b) + " sits in the wrong bin");
      }
      if (links->prev != prev) problem("free block at " + at_offset(b) + ": back link broken");
      ++listed;
      prev = b;
      b = links->next;
    }
  }
  if (listed != free_blocks_.size()) {
    problem(std::to_string(free_blocks_.size()) + " free blocks but " + std::to_string(listed) +
            " in the bins (a free block nobody can find is a leak)");
  }
}

void Walker::check_classes() {
  for (std::uint32_t c = 0; c < heap::kClassCount; ++c) {
    const heap::ClassControl& cls = control_->classes[c];
    if (needs_repair(cls.lock) && !frozen_) {
      notes_.push_back("class " + std::to_string(c) + " lock needs repair; not checked");
      continue;
    }
    std::uint64_t spans_of_class = 0;
    std::uint64_t partial_expected = 0;
    for (const auto& [span, info] : spans_) {
      if (info.class_index != c) continue;
      ++spans_of_class;
      if (info.free_count > 0) ++partial_expected;
      const auto* header = get<heap::SpanHeader>(span);
      if (header->free_count != info.free_count) {
        problem("span at " + at_offset(span) + " counts " + std::to_string(header->free_count) +
                " free objects, its states say " + std::to_string(info.free_count));
      }
      if (info.free_count > 0 && info.in_partial != 1) {
        problem("span at " + at_offset(span) + " has free objects but is not on its class list");
      }
    }
    if (cls.spans != spans_of_class) {
      problem("class " + std::to_string(c) + " counts " + std::to_string(cls.spans) +
              " spans, the arena holds " + std::to_string(spans_of_class));
    }
    std::uint64_t steps = 0;
    for (std::uint64_t span = cls.partial; span != 0; ++steps) {
      auto found = spans_.find(span);
      if (steps > spans_of_class || found == spans_.end() || found->second.class_index != c) {
        problem("class " + std::to_string(c) + " span list is broken at " + at_offset(span));
        break;
      }
      span = get<heap::SpanHeader>(span)->next_partial;
    }
    if (steps != partial_expected && steps <= spans_of_class) {
      problem("class " + std::to_string(c) + " lists " + std::to_string(steps) +
              " spans with free objects, " + std::to_string(partial_expected) + " have some");
    }
  }
}

void Walker::check_slots() {
  for (std::uint32_t slot = 0; slot < layout_.slot_capacity; ++slot) {
    const auto* record = get<heap::SlotRecord>(layout_.slots_offset +
                                               std::uint64_t{slot} * sizeof(heap::SlotRecord));
    if (record == nullptr) {
      problem("slot records run past the mapping");
      return;
    }
    bool alive = slot_alive(slot);
    bool frozen = frozen_ && frozen_slots.contains(slot);
    auto op = record->intent.op.load();
    if (op != 0 && alive && frozen) {
      problem("process slot " + std::to_string(slot) + " has an operation in flight while frozen");
    } else if (op != 0 && !alive) {
      notes_.push_back("process slot " + std::to_string(slot) +
                       " died inside an operation: the reaper finishes or undoes it");
    }
    for (std::uint32_t c = 0; c < heap::kClassCount; ++c) {
      const heap::ClassCache& cache = record->caches[c];
      std::uint32_t count = cache.count.load();
      std::uint32_t states = 0;
      auto found = cached_by_slot_class_.find(std::uint64_t{slot} << 8 | c);
      if (found != cached_by_slot_class_.end()) states = found->second;
      const detail::ClassGeometry& geometry = detail::class_geometry(c);
      // The span an object of class c at `object` lives in, or 0.
      auto span_holding = [&](std::uint64_t object) -> std::uint64_t {
        if (object < begin_ || object >= end_) return 0;
        const std::uint64_t span =
            begin_ + (object - begin_) / heap::kSpanBytes * heap::kSpanBytes + kGranule;
        auto info = spans_.find(span);
        const std::uint64_t data = span + geometry.data_offset;
        const bool is_object = info != spans_.end() && info->second.class_index == c &&
                               object >= data && (object - data) % geometry.object_size == 0;
        return is_object ? span : 0;
      };
      // Whatever a process does, its cache's head names an object of the
      // class or nothing: the one check that holds while it runs (and the
      // pointer its next allocation follows).
      const std::uint64_t head = cache.head.load();
      if (head != 0 && span_holding(head) == 0) {
        problem("process slot " + std::to_string(slot) + " cache of class " + std::to_string(c) +
                " starts at " + at_offset(head) + ", not an object of that class");
        continue;
      }
      if (!frozen && alive) continue;  // a running process moves its cache at will
      // A dead process's record may be half reset by a reaper that died or
      // stopped mid-reap; its holdings are counted from the states above and
      // the next reaper resets the record.
      if (!alive) continue;
      std::uint64_t length = 0;
      std::uint64_t object = head;
      for (; object != 0 && length <= count; ++length) {
        const std::uint64_t span = span_holding(object);
        const std::uint64_t data = span + geometry.data_offset;
        if (span == 0) {
          problem("process slot " + std::to_string(slot) + " cache of class " + std::to_string(c) +
                  " links " + at_offset(object) + ", not an object of that class");
          break;
        }
        const auto* state = get<std::atomic<std::uint32_t>>(
            span + sizeof(heap::SpanHeader) + (object - data) / geometry.object_size * 4);
        heap::State os{state->load()};
        if (os.kind() != heap::Kind::Cached || os.owner() != slot) {
          problem("process slot " + std::to_string(slot) + " caches " + at_offset(object) +
                  ", whose state is kind " + std::to_string(static_cast<unsigned>(os.kind())) +
                  " of slot " + std::to_string(os.owner()));
          break;
        }
        const auto* next = get<std::uint64_t>(object);
        object = next == nullptr ? 0 : *next;
      }
      if (length > count) {
        problem("process slot " + std::to_string(slot) + " cache of class " + std::to_string(c) +
                " is longer than its count (a cycle?)");
      } else if (length != count || states != count) {
        if (alive) {
          problem("process slot " + std::to_string(slot) + " cache of class " + std::to_string(c) +
                  ": count " + std::to_string(count) + ", list " + std::to_string(length) +
                  ", states " + std::to_string(states));
        }
      }
    }
  }
}

HeapAudit Walker::run(bool want_entries) {
  control_ = get<heap::HeapControl>(control_offset_);
  if (control_ == nullptr) {
    problem("the allocator region lies outside the mapping");
    return audit_;
  }
  // The same checks Heap::validate makes when a segment is opened, on one copy.
  try {
    layout_ =
        Heap::validate(base_, mapped_, control_offset_, region_size_,
                       registry_.valid() ? registry_.capacity : control_->slot_capacity, "(audit)");
  } catch (const Error& e) {
    problem(e.what());
    return audit_;
  }
  begin_ = layout_.arena_offset;
  end_ = layout_.arena_offset + layout_.arena_size - kGranule;
  audit_.stats.capacity = layout_.arena_size;
  heap_stale_ = !frozen_ && !heap_held_ && needs_repair(control_->heap_lock);
  if (heap_stale_)
    notes_.push_back("heap lock held or needs repair; derived block state not checked");
  if (control_->heap_intent.op.load() != 0 && !heap_stale_ && (frozen_ || heap_held_)) {
    problem("the heap intent is set while nobody holds the heap lock");
  }
  if (walk_blocks()) {
    for (const auto& [slot, held] : dead_holdings_) {
      problem("process slot " + std::to_string(slot) + " is not a live process but holds " +
              std::to_string(held.cached) + " cached objects and " + std::to_string(held.reserved) +
              " unpublished blocks (reap pending)");
    }
    check_bins();
    check_classes();
    check_slots();
    const HeapStats& s = audit_.stats;
    if (s.free + s.live + s.cached + s.metadata != s.capacity) {
      problem("accounting: free " + std::to_string(s.free) + " + live " + std::to_string(s.live) +
              " + cached " + std::to_string(s.cached) + " + metadata " +
              std::to_string(s.metadata) + " != capacity " + std::to_string(s.capacity));
    }
  }
  if (!want_entries) entries.clear();
  for (auto& n : notes_) audit_.notes.push_back(std::move(n));
  return audit_;
}

// What an auditor writes into the turns it holds: a token whose byte of the
// segment's file it keeps locked through a description of its own, so that the
// slots' processes see it alive, in whatever namespace, until it dies.
class AuditorToken {
 public:
  explicit AuditorToken(const detail::HeapView& v) {
    if (v.registry.probe_fd < 0) return;  // an offline view: nobody to wait for us
    const std::string object = "segment \"" + v.segment + "\"";
    lock_fd_ = sys::reopen(v.registry.probe_fd, O_RDONLY, object);
    for (int attempt = 0; attempt < 16; ++attempt) {
      std::uint32_t candidate = 0;
      sys::random_bytes(std::as_writable_bytes(std::span(&candidate, 1)));
      candidate &= ~detail::kAuditorTurn;
      if (candidate == 0) continue;
      const std::uint64_t byte = detail::kAuditorLockOffset + candidate;
      // A byte nobody else locks: another auditor's token must not vouch for ours.
      if (sys::ofd_byte_locked_elsewhere(lock_fd_.get(), byte, object)) continue;
      if (!sys::try_ofd_lock_shared_byte(lock_fd_.get(), byte, object)) continue;
      token_ = detail::kAuditorTurn | candidate;
      return;
    }
    throw Error(ErrorKind::Timeout, object, "audit", "no free auditor token after 16 attempts");
  }
  // 0 when this view cannot be waited for (offline).
  std::uint32_t value() const noexcept { return token_; }

 private:
  UniqueFd lock_fd_;  // closing it drops the lock
  std::uint32_t token_ = 0;
};

// Holds every live process's turn, every class lock and the heap lock.
class Freeze {
 public:
  Freeze(detail::HeapView& v, unsigned timeout_ms) : v_(v), token_(v) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    const std::uint32_t self = token_.value();
    for (std::uint32_t slot = 0; slot < v.registry.capacity; ++slot) {
      if (!v.registry.valid() || slot >= v.registry.capacity) break;
      SlotInfo info = v.registry.inspect(slot);
      if (info.state == SlotState::Free || !info.alive) continue;
      if (self == 0) {
        incomplete_.push_back("process " + std::to_string(info.pid) + " (slot " +
                              std::to_string(slot) + "): no descriptor to take turns with");
      } else if (detail::take_turn(v.record(slot).op_lock, self, v.registry.probe_fd,
                                   sys::deadline_ns(deadline))) {
        turns_.push_back(slot);
      } else {
        incomplete_.push_back("process " + std::to_string(info.pid) + " (slot " +
                              std::to_string(slot) + ") stayed inside the allocator");
      }
    }
    for (std::uint32_t c = 0; c < heap::kClassCount; ++c) {
      Mutex& lock = v.control->classes[c].lock;
      LockResult r = lock.acquire_until(deadline);
      if (!holds_lock(r)) {
        incomplete_.push_back("class " + std::to_string(c) + " lock: " + std::string(to_string(r)));
        continue;
      }
      classes_.push_back(c);
      if (r == LockResult::OwnerDied) {
        if (!detail::repair_class(v, c, sys::deadline_ns(deadline))) {
          // Left owner-dead for the next holder; this audit cannot vouch for it.
          classes_.pop_back();
          lock.release();
          incomplete_.push_back("class " + std::to_string(c) + " needs repair (heap lock busy)");
          continue;
        }
        lock.mark_consistent();
      }
    }
    LockResult r = v.control->heap_lock.acquire_until(deadline);
    if (r == LockResult::OwnerDied) {
      detail::repair_blocks(v);
      v.control->heap_lock.mark_consistent();
    }
    heap_ = holds_lock(r);
    if (!heap_) incomplete_.push_back("heap lock: " + std::string(to_string(r)));
  }
  ~Freeze() {
    if (heap_) v_.control->heap_lock.release();
    for (std::uint32_t c : classes_) v_.control->classes[c].lock.release();
    for (std::uint32_t slot : turns_) detail::give_turn(v_.record(slot).op_lock);
  }
  Freeze(const Freeze&) = delete;
  Freeze& operator=(const Freeze&) = delete;
  const std::vector<std::string>& incomplete() const { return incomplete_; }
  const std::vector<std::uint32_t>& turns() const { return turns_; }

 private:
  detail::HeapView& v_;
  std::vector<std::uint32_t> turns_;
  std::vector<std::uint32_t> classes_;
  bool heap_ = false;
  AuditorToken token_;
  std::vector<std::string> incomplete_;
};

std::uint64_t control_offset(const detail::HeapView& v) {
  return static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(v.control) - v.base);
}

}  // namespace

HeapAudit Heap::audit(unsigned timeout_ms, std::vector<HeapEntry>* live) const {
  if (view_ == nullptr) {
    throw Error(ErrorKind::InvalidArgument, "heap", "audit", "this segment has no heap");
  }
  detail::HeapView& v = *view_;
  // Our own turn is taken by the freeze like everyone else's: no thread of
  // this process may be inside the allocator meanwhile.
  Freeze freeze(v, timeout_ms);
  Walker walker(v.base, v.mapped, control_offset(v), v.region_size, v.registry,
                freeze.incomplete().empty(), true);
  walker.frozen_slots.insert(freeze.turns().begin(), freeze.turns().end());
  HeapAudit result = walker.run(live != nullptr);
  if (live != nullptr) {
    *live = std::move(walker.entries);
    std::sort(live->begin(), live->end(),
              [](const HeapEntry& a, const HeapEntry& b) { return a.offset < b.offset; });
  }
  for (const std::string& why : freeze.incomplete()) {
    result.complete = false;
    result.notes.push_back("not frozen: " + why);
  }
  return result;
}

HeapAudit Heap::audit_offline(const std::byte* base, std::uint64_t mapped_size,
                              std::uint64_t region_offset, std::uint64_t region_size,
                              const RegistryView& registry, std::vector<HeapEntry>* live) {
  Walker walker(base, mapped_size, region_offset, region_size, registry, false, false);
  HeapAudit result = walker.run(live != nullptr);
  if (live != nullptr) {
    *live = std::move(walker.entries);
    std::sort(live->begin(), live->end(),
              [](const HeapEntry& a, const HeapEntry& b) { return a.offset < b.offset; });
  }
  return result;
}

std::vector<HeapEntry> Heap::dump_offline(const std::byte* base, std::uint64_t mapped_size,
                                          std::uint64_t region_offset, std::uint64_t region_size,
                                          const RegistryView& registry) {
  Walker walker(base, mapped_size, region_offset, region_size, registry, false, false);
  walker.run(true);
  std::vector<HeapEntry> result = std::move(walker.entries);
  std::sort(result.begin(), result.end(),
            [](const HeapEntry& a, const HeapEntry& b) { return a.offset < b.offset; });
  return result;
}

HeapStats Heap::stats() const {
  if (view_ == nullptr) {
    throw Error(ErrorKind::InvalidArgument, "heap", "stats", "this segment has no heap");
  }
  detail::HeapView& v = *view_;
  detail::HeapLock lock(v);
  Walker walker(v.base, v.mapped, control_offset(v), v.region_size, v.registry, false, true);
  return walker.run(false).stats;
}

std::vector<HeapEntry> Heap::dump() const {
  if (view_ == nullptr) {
    throw Error(ErrorKind::InvalidArgument, "heap", "dump", "this segment has no heap");
  }
  detail::HeapView& v = *view_;
  detail::HeapLock lock(v);
  Walker walker(v.base, v.mapped, control_offset(v), v.region_size, v.registry, false, true);
  walker.run(true);
  std::vector<HeapEntry> result = std::move(walker.entries);
  std::sort(result.begin(), result.end(),
            [](const HeapEntry& a, const HeapEntry& b) { return a.offset < b.offset; });
  return result;
}

bool Heap::await_reap(SlotClaim claim, unsigned timeout_ms) const {
  if (view_ == nullptr || claim.empty()) return true;
  detail::HeapView& v = *view_;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (!v.registry.find(claim).has_value()) return true;
    if (auto registry = v.registry_owner.lock()) registry->reap_dead();
    if (std::chrono::steady_clock::now() >= deadline) return false;
    sys::sleep_ns(1'000'000);
  }
}

SlotClaim Heap::claim() const noexcept { return view_ == nullptr ? SlotClaim{} : view_->claim; }

}  // namespace shmutils
