// shmutils heap layout — the in-segment structures of the crash-safe
// allocator. docs/segment-format.md describes every byte; this header is their
// only definition in code. heap.hpp is the API that works on them.
//
// Contract
//   Lives:       the allocator region (HeapControl, then one SlotRecord per
//                registry slot, then the span map) and the arena, a run of
//                blocks from arena_offset to arena_offset + arena_size.
//   Truth:       what a crash can never leave ambiguous is kept in single
//                words: a block's header word (size and state) and a small
//                object's state word. Everything else — the free bins, the span
//                map, the per-class span lists, each span's free count — is
//                derived and rebuilt from those words when a lock holder dies.
//   Intents:     an operation that touches more than one word records what it
//                is about to do first (HeapIntent under the heap lock, a slot's
//                Intent for its process), so a survivor can finish or undo it.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmutils/shm/mutex.hpp"

namespace shmutils::heap {

inline constexpr std::uint64_t kGranule = 16;  // every block and object is aligned to this
inline constexpr std::uint64_t kSpanBytes =
    std::uint64_t{64} * 1024;                         // one span = one span-map region
inline constexpr std::uint64_t kMaxSmallSize = 4096;  // larger requests are blocks
inline constexpr std::uint32_t kClassCount = 28;
inline constexpr std::uint32_t kBinCount = 64;
inline constexpr std::uint32_t kMaxSlots = 4095;  // the owner field has 12 bits
inline constexpr std::uint32_t kMaxTypes = 255;   // type ids 1..255; 0 = none
inline constexpr std::uint64_t kControlMagic = 0x50414548534D4853ULL;  // "SHMSHEAP"

// The object sizes of the small classes, smallest first.
inline constexpr std::array<std::uint32_t, kClassCount> kClassSizes = {
    16,  32,  48,  64,  80,  96,   112,  128,  160,  192,  224,  256,  320,  384,
    448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096};

// What a block or a small object is. Stored in the low 4 bits of a state word.
enum class Kind : std::uint32_t {
  Free = 0,       // available (in a bin, or a span's free object)
  Reserved = 1,   // handed to `owner` and not yet published: freed if owner dies
  Published = 2,  // reachable from the segment: survives any process
  Cached = 3,     // small objects only: in `owner`'s cache
  Span = 4,       // blocks only: a span of small objects (class in `type`)
  Sentinel = 5,   // blocks only: the 16-byte end marker of the arena
};

// A state word: kind | owner slot << 4 | type id << 16. Owner is meaningful
// for Reserved and Cached; type is the type id (or the class of a Span).
struct State {
  std::uint32_t word = 0;

  static constexpr State make(Kind kind, std::uint32_t owner = 0, std::uint32_t type = 0) {
    return State{static_cast<std::uint32_t>(kind) | (owner & 0xfffU) << 4 | (type & 0xffU) << 16};
  }
  constexpr Kind kind() const { return static_cast<Kind>(word & 0xfU); }
  constexpr std::uint32_t owner() const { return (word >> 4) & 0xfffU; }
  constexpr std::uint32_t type() const { return (word >> 16) & 0xffU; }
  constexpr bool valid_bits() const { return (word & 0xff000000U) == 0 && (word & 0xfU) <= 5; }
  friend constexpr bool operator==(State, State) = default;
};

// At the start of every block; the payload follows. word = size in granules
// (header included) | State << 32. prev_granules is the size of the block
// before (0 for the first); check ties the header to its offset and size, so a
// pointer into the middle of a block is not taken for a block.
struct BlockHeader {
  std::atomic<std::uint64_t> word;
  std::uint32_t prev_granules;
  std::uint32_t check;

  static constexpr std::uint64_t pack(std::uint64_t granules, State state) {
    return granules | std::uint64_t{state.word} << 32;
  }
  static constexpr std::uint64_t granules_of(std::uint64_t word) { return word & 0xffffffffU; }
  static constexpr State state_of(std::uint64_t word) {
    return State{static_cast<std::uint32_t>(word >> 32)};
  }
  static constexpr std::uint32_t check_for(std::uint64_t offset, std::uint64_t granules) {
    std::uint64_t h = (offset ^ 0x9E3779B97F4A7C15ULL) * 0xBF58476D1CE4E5B9ULL ^ granules;
    h ^= h >> 31;
    return static_cast<std::uint32_t>(h * 0x94D049BB133111EBULL >> 32);
  }
};
static_assert(sizeof(BlockHeader) == kGranule);

// A free block's payload: its links in a bin (offsets from the segment base).
struct FreeLinks {
  std::uint64_t next;
  std::uint64_t prev;
};

// At the start of a span's payload (64 KiB aligned from the arena start). The
// object states follow it, then the objects. class_index, object_count and
// data_offset are written before the block becomes a Span and never change.
struct SpanHeader {
  std::uint32_t class_index;
  std::uint32_t object_count;
  std::uint32_t data_offset;   // from the span payload to object 0
  std::uint32_t free_count;    // derived: objects in state Free
  std::uint64_t next_partial;  // derived: next span of this class with free objects
  std::uint32_t in_partial;    // derived: 1 while on the class's partial list
  std::uint32_t cursor;        // derived: where the next search for a free object starts
  std::uint64_t reserved[4];
  // States of the objects: std::atomic<std::uint32_t>[object_count].
};
static_assert(sizeof(SpanHeader) == 64);

// The heap lock's intent: header writes that a dead holder may have left half
// done. Redoing them is idempotent (each is a plain store of a computed value).
enum class HeapOp : std::uint64_t { None = 0, Split = 1, Merge = 2 };
struct HeapIntent {
  std::atomic<std::uint64_t> op;          // HeapOp
  std::uint64_t block;                    // offset of the first block
  std::uint64_t first_granules;           // Split: size of the first part; Merge: of the whole
  std::uint64_t first_word;               // Split/Merge: the first block's new header word
  std::uint64_t total_granules;           // Split: size of both parts together
  std::array<std::uint64_t, 2> absorbed;  // Merge: headers swallowed (0 = none), poisoned
};

// An absorbed header: size 0, so it is never taken for a block, and a check
// that tells a later free of it is a double free.
inline constexpr std::uint32_t kFreedHeaderCheck = 0xF4EEDF4EU;

struct ClassControl {
  Mutex lock;             // refills and flushes of this class
  std::uint64_t partial;  // derived: first span with free objects (offset) or 0
  std::uint64_t spans;    // derived: spans of this class
};

// The per-process record, one per registry slot.
enum class SlotOp : std::uint64_t {
  None = 0,
  Allocate = 1,   // obj taken from the cache / carved; dest (if any) being written
  Publish = 2,    // obj (Reserved) being published into dest
  FreeFrom = 3,   // obj being unlinked from dest (replaced by aux) and freed
  FreeBlock = 4,  // large obj being freed under the heap lock
};
struct Intent {
  std::atomic<std::uint64_t> op;  // SlotOp
  std::atomic<std::uint64_t> obj;
  std::atomic<std::uint64_t> dest;  // offset of a std::atomic<uint64_t> in the segment; 0: none
  std::atomic<std::uint64_t> aux;   // FreeFrom: the value that replaces obj in dest
};

struct ClassCache {
  std::atomic<std::uint64_t> head;  // first cached object (offset); its first 8 bytes link on
  std::atomic<std::uint32_t> count;
  std::uint32_t padding;
};

struct alignas(64) SlotRecord {
  std::atomic<std::uint32_t> op_lock;  // threads of the owning process take turns
  std::atomic<std::int32_t> pid;       // who set up this record (diagnostics)
  std::uint64_t padding;
  Intent intent;
  std::array<ClassCache, kClassCount> caches;
};

struct TypeEntry {
  std::atomic<std::uint32_t> ready;  // 1 once name is complete
  std::uint32_t length;
  std::array<char, 120> name;  // truncated to fit; enough to tell types apart in a dump
};

// The start of the allocator region. The fields up to `checksum` are written
// once at format time and checked on every open.
struct alignas(64) HeapControl {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t slot_capacity;    // = the registry's capacity
  std::uint64_t arena_offset;     // from the segment base, 64-byte aligned
  std::uint64_t arena_size;       // bytes, a multiple of kGranule, sentinel included
  std::uint64_t slots_offset;     // SlotRecord[slot_capacity], from the segment base
  std::uint64_t span_map_offset;  // std::atomic<uint8_t>[span_map_size], from the segment base
  std::uint64_t span_map_size;    // arena_size / kSpanBytes rounded up
  std::uint64_t types_offset;     // TypeEntry[kMaxTypes], from the segment base
  std::uint64_t checksum;         // FNV-1a 64 of the fields above
  std::uint64_t padding[7];

  Mutex heap_lock;  // blocks: bins, splits, merges, spans coming and going
  HeapIntent heap_intent;
  std::atomic<std::uint64_t> bin_bitmap;      // derived: bit i set when bin i is non-empty
  std::array<std::uint64_t, kBinCount> bins;  // derived: first free block of each bin
  std::array<ClassControl, kClassCount> classes;
  Mutex types_lock;
  std::atomic<std::uint32_t> type_count;
};
static_assert(std::is_standard_layout_v<HeapControl>);

std::uint64_t control_checksum(const HeapControl& control) noexcept;

// HeapControl's fixed fields as Heap::validate read them, once: whoever uses
// them afterwards uses this copy, never the shared words again (a writer could
// change them between the check and the use).
struct ControlLayout {
  std::uint32_t slot_capacity = 0;
  std::uint64_t arena_offset = 0;
  std::uint64_t arena_size = 0;
  std::uint64_t slots_offset = 0;
  std::uint64_t span_map_offset = 0;
  std::uint64_t span_map_size = 0;
  std::uint64_t types_offset = 0;
};

}  // namespace shmutils::heap
