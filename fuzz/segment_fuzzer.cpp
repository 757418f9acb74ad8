// libFuzzer target: arbitrary bytes as a segment, opened and audited. Opening
// must reject what it cannot read with an Error, and the offline audit must
// report (never crash on, never hang on) whatever the heap regions hold.
//
// Each input is tried twice: as it is, and with the header's magic, version,
// size and checksum repaired, so that most inputs get past the header and the
// fuzzer spends its time on the registry, the allocator region and the arena.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/segment.hpp"
#include "shmutils/shm/segment_header.hpp"
#include "shmutils/shm/shm_object.hpp"

namespace {

using namespace shmutils;

constexpr std::size_t kMaxInput = 4 << 20;

void open_and_audit(const std::vector<std::uint8_t>& bytes) {
  ShmObject scratch = ShmObject::create_anonymous("shmutils-fuzz");
  if (!bytes.empty()) {
    scratch.resize(bytes.size());
    Mapping writer = Mapping::map({.size = bytes.size(),
                                   .protection = Protection::ReadWrite,
                                   .flags = MapFlags::Shared,
                                   .fd = scratch.fd()});
    std::memcpy(writer.data(), bytes.data(), bytes.size());
  }
  // Read-only and unregistered: a tool looking at a file, as shmctl does.
  ShmObject view = ShmObject::adopt(sys::dup_cloexec(scratch.fd(), "fuzz"), "fuzz", true, false);
  SegmentOptions options;
  options.register_process = false;
  options.init_timeout = std::chrono::milliseconds(1);
  try {
    Segment segment = Segment::adopt(std::move(view), options);
    if (segment.layout().allocator.size != 0) {
      (void)segment.audit_offline();
      const SegmentLayout& layout = segment.layout();
      (void)Heap::dump_offline(segment.base(), segment.mapped_size(), layout.allocator.offset,
                               layout.allocator.size, segment.registry().view());
    }
  } catch (const Error&) {
    // A clear rejection is the expected outcome for most inputs.
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > kMaxInput) return 0;
  std::vector<std::uint8_t> bytes(data, data + size);
  // Magic 0 means "being initialized": opening waits for a creator, which is
  // the init protocol's business, not the parser's. Skip the raw try then.
  if (size >= 8 && (bytes[0] | bytes[1] | bytes[2] | bytes[3] | bytes[4] | bytes[5] | bytes[6] |
                    bytes[7]) != 0) {
    open_and_audit(bytes);
  }
  if (size >= sizeof(SegmentHeader)) {
    SegmentHeader header;
    std::memcpy(static_cast<void*>(&header), bytes.data(), sizeof header);
    header.magic.store(kSegmentMagic);
    header.layout_version = kLayoutVersion;
    header.header_size = sizeof(SegmentHeader);
    header.total_size.store(size);
    header.checksum = header_checksum(header);
    std::memcpy(bytes.data(), static_cast<const void*>(&header), sizeof header);
    // The heap control block has a checksum of its own: repair it as well.
    std::uint64_t control = header.allocator.offset;
    if (header.allocator.size != 0 && control % 64 == 0 && control < size &&
        sizeof(heap::HeapControl) <= size - control) {
      heap::HeapControl fixed;
      std::memcpy(static_cast<void*>(&fixed), bytes.data() + control, sizeof fixed);
      fixed.checksum = heap::control_checksum(fixed);
      std::memcpy(bytes.data() + control + offsetof(heap::HeapControl, checksum), &fixed.checksum,
                  sizeof fixed.checksum);
    }
    open_and_audit(bytes);
  }
  return 0;
}
