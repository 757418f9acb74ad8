// shmutils::Mapping — one mmap'ed range of this process's address space.
//
// Contract
//   Lives:       process-local, move-only; the one owner of the range. The
//                destructor unmaps; release() gives the range up without
//                unmapping (the seed's "detach").
//   Sizes:       rounded up to whole pages; size() is the rounded size.
//   Offsets:     everything that takes an offset checks it against size() and
//                throws OutOfRange; to_address(size()) (one past the end) is
//                allowed, as for pointers.
//   Fork:        a forked child inherits the range at the same address; each
//                process's Mapping unmaps its own copy.
//   Registry:    every live Mapping is findable by any address inside it
//                (find_mapping, mapping_registry.hpp), without side effects.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace shmutils {

enum class Protection : unsigned { None = 0, Read = 1, Write = 2, Exec = 4, ReadWrite = 3 };
constexpr Protection operator|(Protection a, Protection b) noexcept {
  return static_cast<Protection>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr bool has(Protection set, Protection bit) noexcept {
  return (static_cast<unsigned>(set) & static_cast<unsigned>(bit)) != 0;
}

enum class MapFlags : unsigned {
  None = 0,
  Shared = 1 << 0,          // changes visible to every mapping of the object
  Private = 1 << 1,         // copy-on-write
  Anonymous = 1 << 2,       // no object; implied when no fd is given
  Fixed = 1 << 3,           // exactly at the hint, replacing what is there
  FixedNoReplace = 1 << 4,  // exactly at the hint, failing if anything is there
  NoReserve = 1 << 5,       // no swap reservation
  Populate = 1 << 6,        // prefault the pages now
  HugePages = 1 << 7,       // MAP_HUGETLB; needs reserved huge pages
};
constexpr MapFlags operator|(MapFlags a, MapFlags b) noexcept {
  return static_cast<MapFlags>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr bool has(MapFlags set, MapFlags bit) noexcept {
  return (static_cast<unsigned>(set) & static_cast<unsigned>(bit)) != 0;
}

enum class Advice {
  Normal,
  Random,
  Sequential,
  WillNeed,
  DontNeed,
  Remove,
  DontFork,
  DoFork,
  HugePage,
  NoHugePage,
  DontDump,
  DoDump
};

enum class SyncMode { Sync, Async, SyncInvalidate };

struct MapRequest {
  std::size_t size = 0;  // bytes; rounded up to pages; must be > 0
  Protection protection = Protection::ReadWrite;
  MapFlags flags = MapFlags::Shared;       // exactly one of Shared / Private
  int fd = -1;                             // -1: anonymous memory
  std::uint64_t offset = 0;                // into the object; page aligned
  void* hint = nullptr;                    // address wish; binding with Fixed*
  std::string name = "anonymous mapping";  // names the mapping in errors
};

class Mapping {
 public:
  // Maps per the request; throws Error (InvalidArgument for bad combinations,
  // the errno's kind with an mmap-specific explanation otherwise).
  static Mapping map(const MapRequest& request);

  Mapping() = default;
  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  void unmap();
  // Gives up ownership without unmapping: the range stays mapped for good.
  std::span<std::byte> release() noexcept;

  std::byte* data() const noexcept { return base_; }
  std::size_t size() const noexcept { return size_; }
  bool valid() const noexcept { return base_ != nullptr; }
  Protection protection() const noexcept { return protection_; }
  const std::string& name() const noexcept { return name_; }

  // Sub-range operations; offset and length must lie inside the mapping and
  // offset must be page aligned (length is rounded up to pages).
  void protect(std::size_t offset, std::size_t length, Protection protection);
  void advise(std::size_t offset, std::size_t length, Advice advice);
  void sync(std::size_t offset, std::size_t length, SyncMode mode = SyncMode::Sync);
  void lock_in_memory();
  void unlock_from_memory();

  // Address utilities.
  bool contains(const void* address) const noexcept;
  std::size_t to_offset(const void* address) const;  // absolute -> relative
  std::byte* to_address(std::size_t offset) const;   // relative -> absolute
  std::span<std::byte> bytes(std::size_t offset, std::size_t length) const;
  std::size_t page_count() const noexcept;
  std::byte* page_address(std::size_t page_index) const;
  std::size_t page_index(const void* address) const;
  std::span<std::byte> pages(std::size_t first_page, std::size_t count) const;

 private:
  void check_range(std::size_t offset, std::size_t length, const char* operation) const;

  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  Protection protection_ = Protection::None;
  std::string name_;
};

}  // namespace shmutils
