#include "shmutils/shm/segment.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include "shmutils/fixtures/children.hpp"
#include "shmutils/fixtures/segment_test.hpp"
#include "shmutils/fixtures/unique_name.hpp"
#include "shmutils/framework/kill_at.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "test_support.hpp"

namespace shmutils {
namespace {

using test::kind_of;

using fixtures::unique_segment_name;

// Writes bytes straight into the object, the way a hostile or buggy process would.
void poke(const std::string& name, std::size_t offset, const void* bytes, std::size_t length) {
  ShmObject object = ShmObject::open(name, "r+");
  ASSERT_EQ(::pwrite(object.fd(), bytes, length, static_cast<off_t>(offset)),
            static_cast<ssize_t>(length));
}

class SegmentBasics : public fixtures::SegmentTest {};

TEST_F(SegmentBasics, CreateWritesAValidHeaderAndRegistersTheCreator) {
  const SegmentHeader& h = segment_.header();
  EXPECT_EQ(h.magic.load(), kSegmentMagic);
  EXPECT_EQ(h.layout_version, kLayoutVersion);
  EXPECT_EQ(h.creator_uid, ::geteuid());
  EXPECT_EQ(h.creator_pid, ::getpid());
  EXPECT_EQ(segment_.size(), 1U << 20);
  EXPECT_FALSE(segment_.uuid().is_nil());
  EXPECT_TRUE(segment_.registration().valid());
  EXPECT_EQ(segment_.registry().slots().size(), 1U);
  EXPECT_EQ(segment_.user_area().size(), segment_.size() - segment_.user_offset());
  EXPECT_EQ(segment_.object().stat().st_mode & 0777, 0600U);
}

TEST_F(SegmentBasics, ASecondAttachmentSeesTheSameUserBytes) {
  Segment other = Segment::open(name_);
  EXPECT_NE(other.base(), segment_.base());
  EXPECT_EQ(other.uuid(), segment_.uuid());
  std::memcpy(segment_.user_area().data(), "hello", 6);
  EXPECT_STREQ(reinterpret_cast<const char*>(other.user_area().data()), "hello");
  EXPECT_EQ(segment_.registry().slots().size(), 2U);
  Segment reader = Segment::open(name_, Access::ReadOnly);
  EXPECT_FALSE(reader.writable());
  EXPECT_FALSE(reader.registration().valid()) << "a read-only attachment cannot register";
  EXPECT_STREQ(reinterpret_cast<const char*>(reader.user_area().data()), "hello");
}

TEST_F(SegmentBasics, ExclusiveCreateOfAnExistingNameFails) {
  EXPECT_EQ(kind_of([&] { Segment::create(name_, 1 << 20); }), ErrorKind::AlreadyExists);
  EXPECT_EQ(kind_of([&] { Segment::open(name_, "x+", 1 << 20); }), ErrorKind::AlreadyExists);
}

TEST_F(SegmentBasics, ModeWReplacesTheSegmentWithoutTruncatingAttachedProcesses) {
  std::memcpy(segment_.user_area().data(), "old", 4);
  Segment fresh = Segment::open(name_, "w+", 1 << 16);
  EXPECT_NE(fresh.uuid(), segment_.uuid());
  EXPECT_EQ(fresh.size(), 1U << 16);
  EXPECT_EQ(fresh.user_area()[0], std::byte{0});
  EXPECT_STREQ(reinterpret_cast<const char*>(segment_.user_area().data()), "old");
  EXPECT_EQ(Segment::open(name_, "r").uuid(), fresh.uuid());
}

TEST_F(SegmentBasics, ResizeGrowsAndShrinksAndOthersRefresh) {
  Segment other = Segment::open(name_);
  segment_.resize(4 << 20);
  EXPECT_EQ(segment_.size(), 4U << 20);
  segment_.user_area()[(3 << 20)] = std::byte{9};
  EXPECT_EQ(other.mapped_size(), 1U << 20);
  other.refresh();
  EXPECT_EQ(other.mapped_size(), 4U << 20);
  EXPECT_EQ(other.user_area()[(3 << 20)], std::byte{9});
  EXPECT_EQ(other.registry().slots().size(), 2U) << "the registry view follows the remap";
  segment_.resize(Segment::minimum_size() + 100);
  other.refresh();
  EXPECT_EQ(other.size(), segment_.size());
  EXPECT_EQ(kind_of([&] { segment_.resize(100); }), ErrorKind::TooSmall);
  other.close();
  EXPECT_EQ(segment_.registry().slots().size(), 1U) << "the remapped registration still detaches";
}

TEST_F(SegmentBasics, UnlinkRemovesTheNameButNotTheAttachment) {
  segment_.unlink();
  EXPECT_EQ(kind_of([&] { Segment::open(name_); }), ErrorKind::NotFound);
  segment_.user_area()[0] = std::byte{1};
  EXPECT_EQ(segment_.user_area()[0], std::byte{1});
}

TEST(SegmentTest, OpeningAMissingSegmentFailsWithNotFound) {
  EXPECT_EQ(kind_of([] { Segment::open(unique_segment_name("missing")); }), ErrorKind::NotFound);
  EXPECT_EQ(kind_of([] { Segment::open("bad/name"); }), ErrorKind::InvalidName);
  EXPECT_EQ(kind_of([] { Segment::open(std::string(300, 'n')); }), ErrorKind::NameTooLong);
  EXPECT_EQ(kind_of([] { Segment::open(unique_segment_name("m"), "a", 4096); }),
            ErrorKind::InvalidArgument);
}

TEST(SegmentTest, SizesBelowTheLayoutAreTooSmall) {
  fixtures::ScopedSegmentName guard("small");
  EXPECT_EQ(kind_of([&] { Segment::create(guard.name(), 100); }), ErrorKind::TooSmall);
  EXPECT_EQ(kind_of([&] { Segment::create(guard.name(), Segment::minimum_size(64) - 1); }),
            ErrorKind::TooSmall);
  EXPECT_EQ(
      kind_of([&] { Segment::create(guard.name(), 1 << 20, SegmentOptions{.max_processes = 0}); }),
      ErrorKind::InvalidArgument);
  EXPECT_FALSE(Segment::unlink_if_exists(guard.name())) << "a refused create leaves no name";
  Segment exact = Segment::create(guard.name(), Segment::minimum_size(4), {.max_processes = 4});
  EXPECT_EQ(exact.registry().capacity(), 4U);
}

class CorruptionTest : public fixtures::SegmentTest {
 protected:
  ErrorKind open_kind() {
    return kind_of([&] { Segment::open(name_); });
  }
};

TEST_F(CorruptionTest, AFlippedByteInTheHeaderIsCaughtByTheChecksum) {
  std::byte flipped = segment_.base()[offsetof(SegmentHeader, created_realtime_ns)] ^ std::byte{1};
  poke(name_, offsetof(SegmentHeader, created_realtime_ns), &flipped, 1);
  EXPECT_EQ(open_kind(), ErrorKind::CorruptHeader);
}

TEST_F(CorruptionTest, AFlippedMagicIsBadMagic) {
  std::byte flipped = segment_.base()[3] ^ std::byte{0x40};
  poke(name_, 3, &flipped, 1);
  EXPECT_EQ(open_kind(), ErrorKind::BadMagic);
}

TEST_F(CorruptionTest, AnotherLayoutVersionIsAVersionMismatch) {
  std::uint32_t version = kLayoutVersion + 1;
  poke(name_, offsetof(SegmentHeader, layout_version), &version, sizeof version);
  EXPECT_EQ(open_kind(), ErrorKind::VersionMismatch);
}

TEST_F(CorruptionTest, AnOutOfBoundsRegionWithAValidChecksumIsCorrupt) {
  SegmentHeader copy;
  std::memcpy(static_cast<void*>(&copy), segment_.base(), sizeof copy);
  copy.registry.offset = 1ULL << 40;
  copy.checksum = header_checksum(copy);  // a hostile writer can fix the checksum
  poke(name_, 0, &copy, sizeof copy);
  EXPECT_EQ(open_kind(), ErrorKind::CorruptHeader);
  copy.registry.offset = sizeof(SegmentHeader) + 64;
  copy.registry.size = 16;  // too small for the table it claims
  copy.checksum = header_checksum(copy);
  poke(name_, 0, &copy, sizeof copy);
  EXPECT_EQ(open_kind(), ErrorKind::CorruptHeader);
}

TEST_F(CorruptionTest, RandomBytesAreNotASegment) {
  std::vector<unsigned char> noise(512);
  for (std::size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<unsigned char>(i * 7 + 1);
  poke(name_, 0, noise.data(), noise.size());
  EXPECT_EQ(open_kind(), ErrorKind::BadMagic);
}

TEST_F(CorruptionTest, ATruncationByAnotherProcessIsReportedNotASigbus) {
  ASSERT_TRUE(fixtures::run_in_child([&](fixtures::ChildContext&) {
                ShmObject::open(name_, "r+").resize(64 << 10);
              }).ok());
  EXPECT_EQ(open_kind(), ErrorKind::Truncated);
  EXPECT_EQ(kind_of([&] { segment_.check_not_truncated(); }), ErrorKind::Truncated);
  ASSERT_TRUE(fixtures::run_in_child([&](fixtures::ChildContext&) {
                ShmObject::open(name_, "r+").resize(100);
              }).ok());
  EXPECT_EQ(open_kind(), ErrorKind::Truncated);
}

TEST_F(CorruptionTest, ASegmentOwnedByAnotherUidIsRefusedUnlessAllowed) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give the segment to another uid";
  sys::fchown(segment_.fd(), 65534, 65534, "test");
  EXPECT_EQ(open_kind(), ErrorKind::PermissionDenied);
  Segment allowed = Segment::open(name_, Access::ReadWrite, {.allow_foreign_owner = true});
  EXPECT_EQ(allowed.uuid(), segment_.uuid());
}

// A creator killed by SIGKILL at a fault point inside initialization.

class DeadCreatorTest : public ::testing::TestWithParam<const char*> {};

TEST_P(DeadCreatorTest, OpenersNeverHangAndOpenOrCreateTakesOver) {
  fixtures::ScopedSegmentName guard("dead-creator");
  ASSERT_TRUE(fixtures::run_in_child(
                  [&](fixtures::ChildContext&) {
                    framework::ScopedKillAt kill(GetParam());
                    Segment::create(guard.name(), 1 << 20);
                  },
                  {.expected_signal = SIGKILL})
                  .ok())
      << "the creator should die at " << GetParam();
  SegmentOptions quick;
  quick.init_timeout = std::chrono::milliseconds(500);
  std::uint64_t start = sys::monotonic_ns();
  EXPECT_EQ(kind_of([&] { Segment::open(guard.name(), Access::ReadWrite, quick); }),
            ErrorKind::NotInitialized);
  EXPECT_LT(sys::monotonic_ns() - start, 5'000'000'000ULL) << "bounded wait";
  Segment taken = Segment::open_or_create(guard.name(), 1 << 20, quick);
  EXPECT_EQ(taken.header().magic.load(), kSegmentMagic);
  EXPECT_EQ(taken.size(), 1U << 20);
  EXPECT_EQ(Segment::open(guard.name()).uuid(), taken.uuid());
}

INSTANTIATE_TEST_SUITE_P(AtEveryInitPoint, DeadCreatorTest,
                         ::testing::Values("segment.init.after_create",
                                           "segment.init.after_truncate",
                                           "segment.init.before_publish"),
                         [](const auto& param_info) {
                           std::string name = param_info.param;
                           for (char& c : name)
                             if (c == '.') c = '_';
                           return name;
                         });

TEST(SegmentInitTest, AStuckCreatorMakesOpenersTimeOutInsteadOfHanging) {
  fixtures::ScopedSegmentName guard("stuck-creator");
  auto child = fixtures::start_child([&](fixtures::ChildContext&) {
    FaultHookFunction stall_before_publish([](const FaultPoint& point, std::uint64_t) {
      if (point.name() == "segment.init.before_publish") ::pause();
      return FaultAction::Continue;
    });
    ScopedFaultHook stall(stall_before_publish);
    Segment::create(guard.name(), 1 << 20);
  });
  // Wait for the creator to reach the stall (the object exists with its size).
  std::uint64_t until = sys::monotonic_ns() + 10'000'000'000ULL;
  while (sys::monotonic_ns() < until) {
    UniqueFd fd;
    if (sys::try_shm_open(guard.name(), O_RDONLY, 0, fd) == 0 &&
        sys::fstat(fd.get(), "t").st_size > 0)
      break;
    sys::sleep_ns(1'000'000);
  }
  SegmentOptions quick;
  quick.init_timeout = std::chrono::milliseconds(300);
  EXPECT_EQ(kind_of([&] { Segment::open(guard.name(), Access::ReadWrite, quick); }),
            ErrorKind::Timeout);
  EXPECT_EQ(kind_of([&] { Segment::open_or_create(guard.name(), 1 << 20, quick); }),
            ErrorKind::Timeout);
  child.kill();
  Segment taken = Segment::open_or_create(guard.name(), 1 << 20, quick);  // now it can take over
  EXPECT_TRUE(taken.valid());
}

TEST(SegmentTest, AnonymousSegmentsAreSharedWithForkedChildren) {
  Segment segment = Segment::create_anonymous(1 << 20);
  EXPECT_TRUE(segment.anonymous());
  EXPECT_EQ(kind_of([&] { segment.unlink(); }), ErrorKind::InvalidArgument);
  ASSERT_TRUE(fixtures::run_in_child([&](fixtures::ChildContext&) {
                segment.user_area()[0] = std::byte{77};
              }).ok());
  EXPECT_EQ(segment.user_area()[0], std::byte{77});
}

TEST(SegmentTest, AttachingADescriptorOfARecreatedNameFailsWithWrongSegment) {
  fixtures::ScopedSegmentName guard("recreated");
  SegmentDescriptor old;
  {
    Segment first = Segment::create(guard.name(), 1 << 20);
    old = first.descriptor();
    first.unlink();
  }
  Segment second = Segment::create(guard.name(), 1 << 20);
  EXPECT_EQ(kind_of([&] { Segment::attach(old); }), ErrorKind::WrongSegment);
  EXPECT_EQ(Segment::attach(second.descriptor().to_string()).uuid(), second.uuid());
}

TEST(SegmentTest, AnAddressHintPlacesTheMappingOrFailsClearly) {
  fixtures::ScopedSegmentName guard("hint");
  Mapping probe =
      Mapping::map({.size = 2 << 20, .protection = Protection::None, .flags = MapFlags::Private});
  std::byte* where = probe.data();
  probe = Mapping();
  Segment placed = Segment::create(guard.name(), 1 << 20, {.address_hint = where});
  EXPECT_EQ(placed.base(), where);
  EXPECT_EQ(
      kind_of([&] { Segment::open(guard.name(), Access::ReadWrite, {.address_hint = where}); }),
      ErrorKind::AlreadyExists);
}

TEST(SegmentTest, MoveAssignmentDetachesTheOldSegmentFirst) {
  fixtures::ScopedSegmentName a("move-a");
  fixtures::ScopedSegmentName b("move-b");
  Segment first = Segment::create(a.name(), 1 << 20);
  Segment observer = Segment::open(a.name());
  EXPECT_EQ(observer.registry().slots().size(), 2U);
  first = Segment::create(b.name(), 1 << 20);
  EXPECT_EQ(observer.registry().slots().size(), 1U);
  EXPECT_EQ(first.name(), b.name());
}

}  // namespace
}  // namespace shmutils

namespace shmutils {
namespace {

// What creating a segment with the given permissions (umask 0) says on stderr.
std::string said_creating(mode_t permissions, bool writable_by_others) {
  fixtures::ScopedSegmentName guard("mode");
  const mode_t umask_before = ::umask(0);
  ::testing::internal::CaptureStderr();
  {
    SegmentOptions options;
    options.permissions = permissions;
    options.writable_by_others = writable_by_others;
    Segment segment = Segment::create(guard.name(), 64 << 10, options);
  }
  std::string said = ::testing::internal::GetCapturedStderr();
  ::umask(umask_before);
  return said;
}

TEST(SegmentModeTest, CreatingASegmentOthersMayWriteSaysSoUnlessMeant) {
  const std::string wide = said_creating(0660, false);
  EXPECT_NE(wide.find("mode 0660"), std::string::npos) << wide;
  EXPECT_NE(wide.find("docs/security.md"), std::string::npos) << wide;
  EXPECT_EQ(said_creating(0666, true), "");
  EXPECT_EQ(said_creating(0600, false), "");
  EXPECT_EQ(said_creating(0640, false), "") << "others may read it, not write it";
}

}  // namespace
}  // namespace shmutils
