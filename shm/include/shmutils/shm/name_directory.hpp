// shmutils::NameDirectory — objects in a segment's heap found by name: how
// processes agree on shared definitions without passing offsets around.
//
// Contract
//   Lives:       the names region of a segment created with SegmentOptions::heap
//                (a fixed table of max_names entries, docs/segment-format.md);
//                objects live in the heap. Segment::names() hands out the view.
//   Typed:       an entry records the type it was constructed as; find<T> of
//                another type throws TypeMismatch.
//   Atomic:      construct, find_or_construct and destroy run under the
//                directory's robust lock: exactly one of several racing
//                find_or_construct calls constructs. Constructors run under the
//                lock too, so a constructor must not use the directory itself.
//   Crash:       a process killed while constructing leaves no entry and no
//                block (the block is published into the entry only when the
//                constructor returned); killed while destroying, the entry and
//                block go away on the next directory operation (the destructor
//                may have run in part: destroying is one-way). The next holder
//                of the lock first waits for the dead process's slot to be
//                reaped, so the heap has settled what it had in flight.
//   Limits:      names up to 95 bytes; max_names entries (SegmentOptions).
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/repairing_lock.hpp"
#include "shmutils/shm/type_name.hpp"

namespace shmutils {

enum class NameState : std::uint32_t {
  Empty = 0,
  Constructing = 1,
  Ready = 2,
  Destroying = 3,
  Removed = 4,  // a tombstone: keeps probe chains intact
};

struct NameEntry {
  std::atomic<std::uint32_t> state;  // NameState
  std::uint32_t name_length;
  std::atomic<std::uint64_t> offset;  // the object's block; 0 until published
  std::uint64_t type_hash;            // FNV-1a 64 of the type's name
  std::uint64_t size;                 // sizeof the object
  std::array<char, 96> name;
};
static_assert(sizeof(NameEntry) == 128);

struct alignas(64) NameTable {
  RepairingLock lock;
  std::uint32_t capacity;
  std::uint32_t reserved[3];
  // NameEntry[capacity] follow, 64-byte aligned.
  NameEntry* entries() noexcept {
    return reinterpret_cast<NameEntry*>(reinterpret_cast<std::byte*>(this) + sizeof(NameTable));
  }
};

struct NamedObject {
  std::string name;
  std::uint64_t offset = 0;  // the block; Heap::dump() tells its type
  std::uint64_t size = 0;
  NameState state = NameState::Empty;
};

class NameDirectory {
 public:
  NameDirectory() = default;
  NameDirectory(NameTable* table, Heap heap, std::string segment)
      : table_(table), heap_(std::move(heap)), segment_(std::move(segment)) {}
  bool valid() const noexcept { return table_ != nullptr; }

  // Constructs a T named `name`; AlreadyExists if the name is taken.
  template <class T, class... Args>
  T* construct(std::string_view name, Args&&... args) {
    return static_cast<T*>(locate(name, type_name<T>(), sizeof(T), alignof(T), Mode::Create,
                                  [&](void* at) { new (at) T(std::forward<Args>(args)...); }));
  }
  // The T named `name`, or nullptr; TypeMismatch if it is another type.
  template <class T>
  T* find(std::string_view name) {
    return static_cast<T*>(locate(name, type_name<T>(), sizeof(T), alignof(T), Mode::Find, {}));
  }
  template <class T, class... Args>
  T* find_or_construct(std::string_view name, Args&&... args) {
    return static_cast<T*>(locate(name, type_name<T>(), sizeof(T), alignof(T), Mode::FindOrCreate,
                                  [&](void* at) { new (at) T(std::forward<Args>(args)...); }));
  }
  // Destroys and frees the T named `name`; false if there is none.
  template <class T>
  bool destroy(std::string_view name) {
    return remove(name, type_name<T>(), [](void* at) { static_cast<T*>(at)->~T(); });
  }

  // Every entry (a snapshot, read without the lock).
  std::vector<NamedObject> list() const;
  // Ready entries must name live published blocks; one sentence per problem.
  std::vector<std::string> check(const std::vector<HeapEntry>& live) const;

  static std::size_t region_size(std::uint32_t capacity) noexcept {
    return sizeof(NameTable) + std::size_t{capacity} * sizeof(NameEntry);
  }
  static void format(NameTable* table, std::uint32_t capacity) noexcept;
  // Throws CorruptHeader when the table does not fit its region.
  static void validate(const NameTable* table, std::uint64_t region_size,
                       const std::string& segment);
  void rebase(NameTable* table, Heap heap) noexcept {
    table_ = table;
    heap_ = std::move(heap);
  }

 private:
  enum class Mode { Find, Create, FindOrCreate };
  void* locate(std::string_view name, std::string_view type, std::size_t size,
               std::size_t alignment, Mode mode, const std::function<void(void*)>& init);
  bool remove(std::string_view name, std::string_view type,
              const std::function<void(void*)>& destroy);
  void repair();
  std::string object(std::string_view name) const;

  NameTable* table_ = nullptr;
  Heap heap_;
  std::string segment_;
};

}  // namespace shmutils
