#include "shmutils/shm/mapping.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstring>

#include "shmutils/fixtures/children.hpp"
#include "shmutils/fixtures/unique_name.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/mapping_registry.hpp"
#include "shmutils/shm/shm_object.hpp"
#include "test_support.hpp"

namespace shmutils {
namespace {

using test::kind_of;

const std::size_t kPage = sys::page_size();

Mapping anonymous(std::size_t size, Protection protection = Protection::ReadWrite,
                  MapFlags flags = MapFlags::Private) {
  MapRequest request;
  request.size = size;
  request.protection = protection;
  request.flags = flags;
  return Mapping::map(request);
}

TEST(MappingTest, SizesAreRoundedUpToPages) {
  Mapping m = anonymous(1);
  EXPECT_EQ(m.size(), kPage);
  EXPECT_EQ(m.page_count(), 1U);
  Mapping n = anonymous(kPage + 1);
  EXPECT_EQ(n.size(), 2 * kPage);
}

TEST(MappingTest, BadRequestsAreRejectedBeforeMmap) {
  EXPECT_EQ(kind_of([] { anonymous(0); }), ErrorKind::InvalidArgument);
  EXPECT_EQ(kind_of([] {
              anonymous(kPage, Protection::ReadWrite, MapFlags::Shared | MapFlags::Private);
            }),
            ErrorKind::InvalidArgument);
  EXPECT_EQ(kind_of([] { anonymous(kPage, Protection::ReadWrite, MapFlags::None); }),
            ErrorKind::InvalidArgument);
  EXPECT_EQ(
      kind_of([] { anonymous(kPage, Protection::ReadWrite, MapFlags::Private | MapFlags::Fixed); }),
      ErrorKind::InvalidArgument);
  MapRequest misaligned;
  misaligned.size = kPage;
  misaligned.flags = MapFlags::Private | MapFlags::FixedNoReplace;
  misaligned.hint = reinterpret_cast<void*>(0x10001);
  EXPECT_EQ(kind_of([&] { Mapping::map(misaligned); }), ErrorKind::InvalidArgument);
  MapRequest bad_fd;
  bad_fd.size = kPage;
  bad_fd.fd = 1 << 20;
  EXPECT_EQ(kind_of([&] { Mapping::map(bad_fd); }), ErrorKind::BadDescriptor);
}

TEST(MappingTest, ProtectionsAreEnforcedByTheKernel) {
  Mapping readable = anonymous(kPage, Protection::Read);
  EXPECT_EQ(readable.data()[0], std::byte{0});
  EXPECT_TRUE(
      fixtures::run_in_child([&](fixtures::ChildContext&) { readable.data()[0] = std::byte{1}; },
                             {.expected_signal = SIGSEGV})
          .ok());

  Mapping guarded = anonymous(2 * kPage);
  guarded.data()[kPage] = std::byte{7};
  guarded.protect(kPage, kPage, Protection::None);
  EXPECT_TRUE(fixtures::run_in_child(
                  [&](fixtures::ChildContext&) {
                    volatile std::byte seen = guarded.data()[kPage];
                    (void)seen;
                  },
                  {.expected_signal = SIGSEGV})
                  .ok());
  guarded.data()[0] = std::byte{1};  // the first page is still writable
  guarded.protect(kPage, kPage, Protection::Read);
  EXPECT_EQ(guarded.data()[kPage], std::byte{7});
  EXPECT_EQ(kind_of([&] { guarded.protect(1, kPage, Protection::Read); }),
            ErrorKind::InvalidArgument);
  EXPECT_EQ(kind_of([&] { guarded.protect(2 * kPage, kPage, Protection::Read); }),
            ErrorKind::OutOfRange);
  Mapping executable = anonymous(kPage, Protection::Read | Protection::Exec);
  EXPECT_TRUE(has(executable.protection(), Protection::Exec));
}

TEST(MappingTest, FixedMappingsLandExactlyAndNoReplaceRefusesAnOccupiedRange) {
  Mapping reserved = anonymous(4 * kPage, Protection::None);
  std::byte* target = reserved.data() + kPage;
  MapRequest request;
  request.size = kPage;
  request.flags = MapFlags::Private | MapFlags::FixedNoReplace;
  request.hint = target;
  EXPECT_EQ(kind_of([&] { Mapping::map(request); }), ErrorKind::AlreadyExists);
  std::span<std::byte> range = reserved.release();  // keep the range; Fixed will replace a page
  request.flags = MapFlags::Private | MapFlags::Fixed;
  Mapping fixed = Mapping::map(request);
  EXPECT_EQ(fixed.data(), target);
  fixed.data()[0] = std::byte{9};
  fixed = Mapping();
  sys::munmap(range.data(), range.size(), "test range");
}

TEST(MappingTest, NoReservePopulateAndHugePagesAreAcceptedOrClearlyUnsupported) {
  Mapping lazy =
      anonymous(64 * kPage, Protection::ReadWrite, MapFlags::Private | MapFlags::NoReserve);
  lazy.data()[63 * kPage] = std::byte{1};
  Mapping eager =
      anonymous(4 * kPage, Protection::ReadWrite, MapFlags::Private | MapFlags::Populate);
  EXPECT_EQ(eager.data()[3 * kPage], std::byte{0});
  try {
    Mapping huge =
        anonymous(2 << 20, Protection::ReadWrite, MapFlags::Private | MapFlags::HugePages);
    huge.data()[0] = std::byte{1};
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotSupported) << e.what();
  }
}

TEST(MappingTest, AdviseSyncLockAndRelease) {
  Mapping m = anonymous(2 * kPage);
  m.data()[0] = std::byte{5};
  m.advise(0, kPage, Advice::DontNeed);  // private anonymous pages read back as zero
  EXPECT_EQ(m.data()[0], std::byte{0});
  m.advise(0, 2 * kPage, Advice::WillNeed);
  EXPECT_EQ(kind_of([&] { m.advise(0, 3 * kPage, Advice::Normal); }), ErrorKind::OutOfRange);

  ShmObject object = ShmObject::create_anonymous("sync");
  object.resize(kPage);
  MapRequest shared;
  shared.size = kPage;
  shared.fd = object.fd();
  Mapping s = Mapping::map(shared);
  s.data()[1] = std::byte{3};
  s.sync(0, kPage);
  s.sync(0, kPage, SyncMode::Async);
  s.lock_in_memory();
  s.unlock_from_memory();

  std::span<std::byte> kept = s.release();
  EXPECT_FALSE(s.valid());
  EXPECT_EQ(kept[1], std::byte{3}) << "release leaves the range mapped";
  sys::munmap(kept.data(), kept.size(), "released");
}

TEST(MappingTest, TwoMappingsOfOneObjectAtDifferentAddressesSeeTheSameBytes) {
  ShmObject object = ShmObject::create_anonymous("twice");
  object.resize(3 * kPage);
  MapRequest request;
  request.size = 3 * kPage;
  request.fd = object.fd();
  Mapping a = Mapping::map(request);
  Mapping b = Mapping::map(request);
  ASSERT_NE(a.data(), b.data());
  a.data()[2 * kPage + 5] = std::byte{42};
  EXPECT_EQ(b.data()[2 * kPage + 5], std::byte{42});
  request.offset = kPage;  // a window starting at the second page
  request.size = kPage;
  Mapping window = Mapping::map(request);
  b.data()[kPage] = std::byte{17};
  EXPECT_EQ(window.data()[0], std::byte{17});
  request.offset = 100;
  EXPECT_EQ(kind_of([&] { Mapping::map(request); }), ErrorKind::InvalidArgument);
}

TEST(MappingTest, AddressTranslationIsBoundsChecked) {
  Mapping m = anonymous(4 * kPage);
  std::byte* base = m.data();
  EXPECT_EQ(m.to_offset(base + 100), 100U);
  EXPECT_EQ(m.to_offset(base + m.size()), m.size());  // one past the end
  EXPECT_EQ(kind_of([&] { m.to_offset(base + m.size() + 1); }), ErrorKind::OutOfRange);
  EXPECT_EQ(kind_of([&] { m.to_offset(base - 1); }), ErrorKind::OutOfRange);
  EXPECT_EQ(m.to_address(100), base + 100);
  EXPECT_EQ(m.to_address(m.size()), base + m.size());
  EXPECT_EQ(kind_of([&] { m.to_address(m.size() + 1); }), ErrorKind::OutOfRange);
  EXPECT_TRUE(m.contains(base));
  EXPECT_FALSE(m.contains(base + m.size()));

  EXPECT_EQ(m.page_address(2), base + 2 * kPage);
  EXPECT_EQ(kind_of([&] { m.page_address(4); }), ErrorKind::OutOfRange);
  EXPECT_EQ(m.page_index(base + 2 * kPage + 7), 2U);
  EXPECT_EQ(kind_of([&] { m.page_index(base + m.size()); }), ErrorKind::OutOfRange);
  auto pages = m.pages(1, 2);
  EXPECT_EQ(pages.data(), base + kPage);
  EXPECT_EQ(pages.size(), 2 * kPage);
  EXPECT_EQ(kind_of([&] { m.pages(3, 2); }), ErrorKind::OutOfRange);
  auto view = m.bytes(10, 20);
  view[0] = std::byte{1};
  EXPECT_EQ(base[10], std::byte{1});
  EXPECT_EQ(kind_of([&] { m.bytes(m.size() - 1, 2); }), ErrorKind::OutOfRange);
  EXPECT_EQ(kind_of([&] { m.bytes(SIZE_MAX, 2); }), ErrorKind::OutOfRange);
}

TEST(MappingTest, LiveMappingsAreFoundByAnyInnerAddressWithoutSideEffects) {
  MapRequest request;
  request.size = 2 * kPage;
  request.flags = MapFlags::Private;
  request.name = "findable";
  Mapping m = Mapping::map(request);
  for (int i = 0; i < 2; ++i) {  // a lookup must not consume the entry
    auto info = find_mapping(m.data() + kPage + 3);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->base, m.data());
    EXPECT_EQ(info->size, 2 * kPage);
    EXPECT_EQ(info->name, "findable");
  }
  EXPECT_FALSE(find_mapping(m.data() + 2 * kPage).has_value() &&
               find_mapping(m.data() + 2 * kPage)->base == m.data());
  std::byte* old = m.data();
  Mapping moved = std::move(m);
  EXPECT_TRUE(find_mapping(old).has_value());
  moved.unmap();
  auto gone = find_mapping(old);
  EXPECT_TRUE(!gone.has_value() || gone->base != old);
}

}  // namespace
}  // namespace shmutils
