// shmutils::SegmentHeader — the first bytes of every segment. The layout is
// documented in docs/segment-format.md; this header is its only definition.
//
// Contract
//   Lives:       inside a segment, at offset 0; standard layout, no pointers.
//   Immutable:   every field before `checksum` is written once by the creator
//                before `magic` is published, and is covered by the checksum.
//   Mutable:     `total_size` (resize) and `magic` (published last, with
//                release order: a reader that sees the magic sees the rest).
//   Validation:  validate_header() checks magic, version, header size,
//                checksum, the size against the object's real size, and every
//                region against the bounds, before anything else is touched.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "shmutils/shm/uuid.hpp"

namespace shmutils {

// "SHMUTILS" read as a little-endian 64-bit word.
inline constexpr std::uint64_t kSegmentMagic = 0x534C4954554D4853ULL;
inline constexpr std::uint32_t kLayoutVersion = 4;

struct SegmentRegion {
  std::uint64_t offset;  // from the segment base; 0 with size 0 means absent
  std::uint64_t size;
};

struct SegmentHeader {
  std::atomic<std::uint64_t> magic;  // kSegmentMagic once initialized; 0 before
  std::uint32_t layout_version;
  std::uint32_t header_size;  // sizeof(SegmentHeader)
  std::array<std::byte, 16> uuid;
  std::uint32_t creator_uid;
  std::int32_t creator_pid;
  std::uint64_t creator_start_time;  // /proc start time of the creator
  std::uint64_t created_realtime_ns;
  std::uint64_t minimum_size;  // the end of the last fixed region
  SegmentRegion registry;      // process registry (process_registry.hpp)
  SegmentRegion allocator;     // heap control and tables (heap_layout.hpp); 0,0 = no heap
  SegmentRegion names;         // name directory (name_directory.hpp); 0,0 = no heap
  SegmentRegion user;          // the raw user area; size 0 = up to total_size
  std::uint64_t checksum;      // FNV-1a 64 of bytes [8, offsetof(checksum))
  std::atomic<std::uint64_t> total_size;  // the segment's size; changes on resize
  std::array<std::byte, 112> reserved;    // zero; pads the header to 256 bytes
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::is_standard_layout_v<SegmentHeader>);
static_assert(sizeof(SegmentHeader) == 256, "the header is part of the on-disk layout");

// FNV-1a 64 over the checksummed fields of the header.
std::uint64_t header_checksum(const SegmentHeader& header) noexcept;

// The header's layout as validate_header read it, once: an attachment uses
// this copy, never the shared words again (a peer could change them between
// the check and the use).
struct SegmentLayout {
  std::uint64_t total_size = 0;  // at validation; resize() publishes changes in the header
  std::uint64_t minimum_size = 0;
  SegmentRegion registry{};
  SegmentRegion allocator{};
  SegmentRegion names{};
  SegmentRegion user{};
};

// Copies the header once and checks the copy. Throws BadMagic,
// VersionMismatch, CorruptHeader or Truncated (object_size smaller than
// total_size), naming `segment`. object_size is the fstat size.
SegmentLayout validate_header(const SegmentHeader& header, std::uint64_t object_size,
                              const std::string& segment);

}  // namespace shmutils
