#include "shmutils/shm/shm_object.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <climits>
#include <string>

#include "shmutils/fixtures/children.hpp"
#include "shmutils/fixtures/unique_name.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/segment.hpp"
#include "test_support.hpp"

namespace shmutils {
namespace {

using test::kind_of;

using fixtures::unique_segment_name;

TEST(ShmObjectTest, NamesAreNormalizedAndInvalidOnesRejected) {
  EXPECT_EQ(normalize_segment_name("orders"), "/orders");
  EXPECT_EQ(normalize_segment_name("/orders"), "/orders");
  EXPECT_EQ(normalize_segment_name(std::string(NAME_MAX, 'a')), "/" + std::string(NAME_MAX, 'a'));
  const std::vector<std::string> bad_names{
      "", "/", "a/b", "/a/b", ".", "/..", std::string("a\0b", 3)};
  for (const std::string& bad : bad_names) {
    EXPECT_EQ(kind_of([&] { normalize_segment_name(bad); }), ErrorKind::InvalidName) << bad;
  }
  EXPECT_EQ(kind_of([] { normalize_segment_name(std::string(NAME_MAX + 1, 'a')); }),
            ErrorKind::NameTooLong);
}

TEST(ShmObjectTest, ModesCreateOpenAndRefuseAsDocumented) {
  fixtures::ScopedSegmentName guard("modes");
  EXPECT_EQ(kind_of([&] { ShmObject::open(guard.name(), "r"); }), ErrorKind::NotFound);
  EXPECT_EQ(kind_of([&] { ShmObject::open(guard.name(), "r+"); }), ErrorKind::NotFound);
  ShmObject created = ShmObject::open(guard.name(), "x+");
  created.resize(8192);
  EXPECT_EQ(kind_of([&] { ShmObject::open(guard.name(), "x+"); }), ErrorKind::AlreadyExists);
  EXPECT_EQ(kind_of([&] { ShmObject::open(guard.name(), "x"); }), ErrorKind::AlreadyExists);
  ShmObject reader = ShmObject::open(guard.name(), "r");
  EXPECT_FALSE(reader.writable());
  EXPECT_EQ(reader.size(), 8192U);
  EXPECT_EQ(kind_of([&] { reader.resize(1); }), ErrorKind::PermissionDenied);
  ShmObject truncated = ShmObject::open(guard.name(), "w");
  EXPECT_EQ(truncated.size(), 0U) << "w truncates an existing object";
  EXPECT_EQ(kind_of([&] { ShmObject::open(guard.name(), "a+"); }), ErrorKind::InvalidArgument);
  EXPECT_EQ(kind_of([&] {
              ShmObject::open(guard.name(), OpenMode{Access::ReadOnly, Disposition::OpenOrCreate});
            }),
            ErrorKind::InvalidArgument);
}

TEST(ShmObjectTest, CreatedObjectsAre0600AndCloseOnExecByDefault) {
  fixtures::ScopedSegmentName guard("perm");
  ShmObject object = ShmObject::open(guard.name(), "x+");
  EXPECT_EQ(object.stat().st_mode & 0777, 0600U);
  EXPECT_NE(::fcntl(object.fd(), F_GETFD) & FD_CLOEXEC, 0);
  fixtures::ScopedSegmentName other("perm640");
  ShmObject wider = ShmObject::open(other.name(), "x+", 0640);
  EXPECT_EQ(wider.stat().st_mode & 0777, 0640U);
  EXPECT_EQ(kind_of([&] { ShmObject::open(unique_segment_name("bad"), "x+", 010000); }),
            ErrorKind::InvalidArgument);
}

TEST(ShmObjectTest, ClosingAndUnlinkingAreSeparateSteps) {
  fixtures::ScopedSegmentName guard("close");
  {
    ShmObject object = ShmObject::open(guard.name(), "x+");
    object.resize(4096);
    object.close();
    EXPECT_FALSE(object.valid());
    EXPECT_EQ(kind_of([&] { object.size(); }), ErrorKind::BadDescriptor);
  }
  ShmObject again = ShmObject::open(guard.name(), "r+");  // the name outlived the fd
  EXPECT_EQ(again.size(), 4096U);
  again.unlink();
  EXPECT_EQ(kind_of([&] { ShmObject::open(guard.name(), "r"); }), ErrorKind::NotFound);
  again.resize(8192);  // the fd outlives the name
  EXPECT_EQ(again.size(), 8192U);
  EXPECT_EQ(kind_of([&] { ShmObject::unlink(guard.name()); }), ErrorKind::NotFound);
  EXPECT_FALSE(ShmObject::unlink_if_exists(guard.name()));
}

TEST(ShmObjectTest, AnonymousObjectsHaveNoNameToUnlink) {
  ShmObject object = ShmObject::create_anonymous("anon-test");
  EXPECT_TRUE(object.anonymous());
  object.resize(12345);
  EXPECT_EQ(object.size(), 12345U);
  EXPECT_EQ(kind_of([&] { object.unlink(); }), ErrorKind::InvalidArgument);
}

TEST(ShmObjectTest, AnotherUserIsRefusedAPrivateObject) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  fixtures::ScopedSegmentName guard("other-user");
  ShmObject object = ShmObject::open(guard.name(), "x+");
  fixtures::ChildOutcome child = fixtures::run_in_child([&](fixtures::ChildContext&) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) fixtures::skip_child("setuid refused");
    EXPECT_EQ(kind_of([&] { ShmObject::open(guard.name(), "r"); }), ErrorKind::PermissionDenied);
  });
  if (!child.skipped.empty()) GTEST_SKIP() << child.skipped;
  EXPECT_TRUE(child.ok());
}

// A full /dev/shm: a tmpfs of 1 MiB mounted over /dev/shm in a private mount
// namespace of a child process. The child is spawned, not forked: under the
// AddressSanitizer of GCC 12 (no fork handler in its allocator) a child forked
// from this threaded test program hung in malloc on a loaded machine, on a
// lock another thread held at the fork.
SHMUTILS_CHILD_ENTRY(fill_a_private_tmpfs) {
  if (::unshare(CLONE_NEWNS) != 0 ||
      ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      ::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=1m") != 0) {
    fixtures::skip_child("mounting a tmpfs in a private mount namespace is not permitted here");
  }
  std::string name = "/shmutils-full-tmpfs";
  ShmObject object = ShmObject::open(name, "x+");
  EXPECT_EQ(kind_of([&] { object.resize(4 << 20); }), ErrorKind::NoSpace);
  EXPECT_EQ(object.size(), 0U) << "the failed growth was given back";
  object.unlink();
  EXPECT_EQ(kind_of([&] { Segment::create(name, 4 << 20); }), ErrorKind::NoSpace);
  EXPECT_EQ(kind_of([&] { ShmObject::open(name, "r"); }), ErrorKind::NotFound)
      << "the failed create left its name behind";
  Segment small = Segment::create(name, 256 << 10);  // what fits still works
  small.unlink();
}

TEST(ShmObjectTest, FullTmpfsFailsAtCreateWithNoSpaceAndLeavesNoName) {
  fixtures::ChildOutcome child =
      std::move(fixtures::spawn_children(1, "fill_a_private_tmpfs").children.front());
  if (!child.skipped.empty()) GTEST_SKIP() << child.skipped;
  EXPECT_TRUE(child.ok());
}

}  // namespace
}  // namespace shmutils
