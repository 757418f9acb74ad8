#include "shmutils/shm/segment_header.hpp"

#include <array>
#include <cstddef>
#include <cstring>

#include "shmutils/shm/error.hpp"

namespace shmutils {

std::uint64_t header_checksum(const SegmentHeader& header) noexcept {
  const auto* bytes = reinterpret_cast<const unsigned char*>(&header);
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (std::size_t i = offsetof(SegmentHeader, layout_version);
       i < offsetof(SegmentHeader, checksum); ++i) {
    hash ^= bytes[i];
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

SegmentLayout validate_header(const SegmentHeader& shared, std::uint64_t object_size,
                              const std::string& segment) {
  const std::string object = "segment \"" + segment + "\"";
  alignas(SegmentHeader) std::array<std::byte, sizeof(SegmentHeader)> bytes;
  std::memcpy(bytes.data(), static_cast<const void*>(&shared), bytes.size());
  const auto& header = *reinterpret_cast<const SegmentHeader*>(bytes.data());
  std::uint64_t magic = header.magic.load(std::memory_order_acquire);
  if (magic != kSegmentMagic) {
    throw Error(ErrorKind::BadMagic, object, "validate header",
                "first 8 bytes are not \"SHMUTILS\"");
  }
  if (header.layout_version != kLayoutVersion) {
    throw Error(ErrorKind::VersionMismatch, object, "validate header",
                "layout version " + std::to_string(header.layout_version) +
                    ", this build reads version " + std::to_string(kLayoutVersion));
  }
  auto corrupt = [&](const std::string& why) {
    throw Error(ErrorKind::CorruptHeader, object, "validate header", why);
  };
  if (header.header_size != sizeof(SegmentHeader)) {
    corrupt("header size " + std::to_string(header.header_size));
  }
  if (header_checksum(header) != header.checksum) corrupt("checksum mismatch");
  std::uint64_t total = header.total_size.load(std::memory_order_acquire);
  if (total < header.minimum_size) {
    corrupt("total size " + std::to_string(total) + " below the layout's minimum " +
            std::to_string(header.minimum_size));
  }
  if (object_size < total) {
    throw Error(ErrorKind::Truncated, object, "validate header",
                "the header says " + std::to_string(total) + " bytes but only " +
                    std::to_string(object_size) + " remain");
  }
  auto check_region = [&](const SegmentRegion& region, const char* what, bool required) {
    if (region.offset == 0 && region.size == 0 && !required) return;
    bool ok = region.offset >= sizeof(SegmentHeader) && region.offset % 64 == 0 &&
              region.size <= header.minimum_size &&
              region.offset <= header.minimum_size - region.size;
    if (!ok) {
      corrupt(std::string(what) + " region [" + std::to_string(region.offset) + ", +" +
              std::to_string(region.size) + ") is outside the layout of " +
              std::to_string(header.minimum_size) + " bytes");
    }
  };
  check_region(header.registry, "registry", true);
  check_region(header.allocator, "allocator", false);
  check_region(header.names, "names", false);
  check_region(header.user, "user", true);
  if (header.user.offset < header.registry.offset + header.registry.size) {
    corrupt("user region overlaps the registry");
  }
  return {total, header.minimum_size, header.registry, header.allocator, header.names, header.user};
}

}  // namespace shmutils
