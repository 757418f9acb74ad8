// No input crashes the process: arbitrary bytes presented as a segment, and
// headers mutated field by field (with the checksum repaired, as a hostile
// writer would), only ever yield an Error or a valid segment.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <unistd.h>

#include <cstring>

#include "shmutils/fixtures/unique_name.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/segment.hpp"
#include "test_support.hpp"

namespace shmutils {
namespace {

using test::kind_of;

void write_object(const std::string& name, const std::vector<std::uint8_t>& bytes,
                  std::size_t size) {
  ShmObject object = ShmObject::open(name, "w+");
  object.resize(size);
  RC_ASSERT(::pwrite(object.fd(), bytes.data(), std::min(bytes.size(), size), 0) >= 0);
}

// Opening must end in a valid segment or an Error whose kind is one of the
// validation kinds; anything else (a crash, another exception) fails.
void expect_clean_outcome(const std::string& name) {
  SegmentOptions quick;
  quick.init_timeout = std::chrono::milliseconds(150);
  try {
    Segment segment = Segment::open(name, Access::ReadWrite, quick);
    RC_ASSERT(segment.size() >= Segment::minimum_size(1));
  } catch (const Error& e) {
    RC_TAG(to_string(e.kind()));
  }
}

RC_GTEST_PROP(HostileSegmentProperty, ArbitraryBytesNeverCrashOpen,
              (const std::vector<std::uint8_t>& noise)) {
  fixtures::ScopedSegmentName guard("noise");
  const auto size = *rc::gen::inRange<std::size_t>(1, std::size_t{3} * 4096);
  std::vector<std::uint8_t> bytes = noise;
  if (*rc::gen::arbitrary<bool>() && bytes.size() >= 8) {
    std::memcpy(bytes.data(), &kSegmentMagic, 8);  // get past the magic check
  }
  write_object(guard.name(), bytes, size);
  expect_clean_outcome(guard.name());
}

RC_GTEST_PROP(HostileSegmentProperty, AnyHeaderFieldRewrittenWithARepairedChecksumIsCaught,
              (std::uint64_t value)) {
  fixtures::ScopedSegmentName guard("mutated");
  {
    Segment segment = Segment::create(guard.name(), 64 << 10, {.register_process = false});
    SegmentHeader copy;
    std::memcpy(static_cast<void*>(&copy), segment.base(), sizeof copy);
    const auto field =
        *rc::gen::inRange<std::size_t>(1, 18);  // any 8-byte word after the magic, up to total_size
    std::memcpy(reinterpret_cast<std::byte*>(&copy) + field * 8, &value, 8);
    if (field * 8 != offsetof(SegmentHeader, checksum)) copy.checksum = header_checksum(copy);
    std::vector<std::uint8_t> bytes(sizeof copy);
    std::memcpy(bytes.data(), &copy, sizeof copy);
    ShmObject object = ShmObject::open(guard.name(), "r+");
    RC_ASSERT(::pwrite(object.fd(), bytes.data(), bytes.size(), 0) ==
              static_cast<ssize_t>(bytes.size()));
  }
  expect_clean_outcome(guard.name());
}

}  // namespace
}  // namespace shmutils
