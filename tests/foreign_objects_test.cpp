// What else lives in /dev/shm: FIFOs, directories, small random files, empty
// files, another user's segment, names that are not UTF-8. Opening refuses
// them at once with a message that says what they are; shmctl never hangs,
// never aborts, and never removes one without --force.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "shmctl_support.hpp"
#include "shmutils/fixtures/crash_cleanup.hpp"
#include "shmutils/fixtures/unique_name.hpp"
#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/segment.hpp"
#include "test_support.hpp"

namespace shmutils::test {
namespace {

using namespace std::chrono_literals;

std::string path_of(const std::string& name) { return "/dev/shm" + name; }

// A name in /dev/shm removed at the end of the test whatever it holds (and
// by the crash and deadline handlers, unless it is a directory).
struct ObjectGuard {
  explicit ObjectGuard(const std::string& suffix = "")
      : name(fixtures::unique_segment_name("foreign") + suffix) {
    fixtures::remove_on_crash(name);
  }
  ~ObjectGuard() {
    fixtures::forget_on_crash(name);
    if (::unlink(path_of(name).c_str()) != 0) ::rmdir(path_of(name).c_str());
  }
  ObjectGuard(const ObjectGuard&) = delete;
  ObjectGuard& operator=(const ObjectGuard&) = delete;
  std::string name;
};

std::string error_of(const std::function<void()>& f, ErrorKind* kind = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (kind != nullptr) *kind = e.kind();
    return e.what();
  }
  return "no error";
}

TEST(ForeignObjects, AFifoIsRefusedAtOnceByOpenAndEveryShmctlCommand) {
  ObjectGuard fifo;
  ASSERT_EQ(::mkfifo(path_of(fifo.name).c_str(), 0600), 0);
  ErrorKind kind{};
  std::string why = error_of([&] { Segment::open(fifo.name, Access::ReadOnly); }, &kind);
  EXPECT_EQ(kind, ErrorKind::BadMagic) << why;
  EXPECT_NE(why.find("a FIFO"), std::string::npos) << why;
  why = error_of([&] { Segment::open(fifo.name); }, &kind);
  EXPECT_NE(why.find("a FIFO"), std::string::npos) << why;
  // shmctl's runner fails the test when a command takes more than 30 s.
  EXPECT_EQ(shmctl({"ls"}).code, 0);
  ToolRun inspect = shmctl({"--json", "inspect", fifo.name});
  EXPECT_EQ(inspect.code, 2) << inspect.out;
  EXPECT_NE(inspect.out.find("a FIFO"), std::string::npos) << inspect.out;
  EXPECT_EQ(shmctl({"audit", fifo.name}).code, 2);
  ToolRun rm = shmctl({"--json", "rm", fifo.name});
  EXPECT_EQ(rm.code, 1) << rm.out;
  EXPECT_EQ(rm.json()["removed"], false) << rm.out;
  struct stat st {};
  EXPECT_EQ(::lstat(path_of(fifo.name).c_str(), &st), 0) << "rm removed it without --force";
  EXPECT_EQ(shmctl({"rm", "--force", fifo.name}).code, 0);
  EXPECT_NE(::lstat(path_of(fifo.name).c_str(), &st), 0);
}

TEST(ForeignObjects, ADirectoryIsNotASegmentNotATruncatedOne) {
  ObjectGuard directory;
  ASSERT_EQ(::mkdir(path_of(directory.name).c_str(), 0700), 0);
  std::string why = error_of([&] { Segment::open(directory.name, Access::ReadOnly); });
  EXPECT_NE(why.find("a directory"), std::string::npos) << why;
  EXPECT_EQ(why.find("truncated"), std::string::npos) << why;
}

TEST(ForeignObjects, ASmallRandomFileIsNotASegmentAndAnEmptyOneIsNotOfferedForTakeOver) {
  ObjectGuard small;
  {
    int fd = ::open(path_of(small.name).c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "hello, world", 12), 12);
    ::close(fd);
  }
  ErrorKind kind{};
  std::string why = error_of([&] { Segment::open(small.name); }, &kind);
  EXPECT_EQ(kind, ErrorKind::BadMagic) << why;
  EXPECT_NE(why.find("not a shmutils segment"), std::string::npos) << why;
  ObjectGuard empty;
  ::close(::open(path_of(empty.name).c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600));
  why = error_of([&] { Segment::open(empty.name, Access::ReadWrite, {.init_timeout = 300ms}); });
  EXPECT_EQ(why.find("open_or_create"), std::string::npos) << why;
  EXPECT_NE(why.find("0 bytes"), std::string::npos) << why;
}

TEST(ForeignObjects, RmRefusesAnotherUsersSegmentAndOneStillBeingInitialized) {
  ObjectGuard theirs;
  {
    Segment segment = Segment::create(theirs.name, 1 << 20);
    ASSERT_EQ(::fchown(segment.fd(), 65534, 65534), 0) << "the test runs as root";
  }
  ToolRun inspect = shmctl({"inspect", theirs.name});
  EXPECT_EQ(inspect.code, 2);
  EXPECT_EQ(shmctl({"--any-owner", "inspect", theirs.name}).code, 0);
  ToolRun rm = shmctl({"--json", "rm", theirs.name});
  EXPECT_EQ(rm.code, 1) << rm.out;
  EXPECT_NE(rm.out.find("another user"), std::string::npos) << rm.out;
  EXPECT_TRUE(Segment::unlink_if_exists(theirs.name)) << "rm removed another user's segment";

  // A creator that holds the init lock and has not published yet.
  ObjectGuard creating;
  int fd = ::open(path_of(creating.name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  ToolRun early = shmctl({"--json", "--timeout", "0.3", "rm", creating.name});
  EXPECT_EQ(early.code, 1) << early.out;
  EXPECT_NE(early.out.find("initializing"), std::string::npos) << early.out;
  ::close(fd);
}

TEST(ForeignObjects, NamesThatAreNotUtf8AreEscapedNeverAbort) {
  ObjectGuard odd("-\xff\xfe\x01");
  ::close(::open(path_of(odd.name).c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600));
  ToolRun ls = shmctl({"--json", "ls"});
  ASSERT_EQ(ls.code, 0) << ls.out;
  EXPECT_NE(ls.out.find("\\\\xFF\\\\xFE\\\\x01"), std::string::npos) << ls.out;
  ToolRun text = shmctl({"ls"});
  EXPECT_EQ(text.code, 0);
  EXPECT_EQ(text.out.find('\x01'), std::string::npos) << "a control character was printed";
  ToolRun rm = shmctl({"--json", "rm", "--force", odd.name});
  EXPECT_EQ(rm.code, 0) << rm.out;
  EXPECT_EQ(rm.json()["removed"], true) << rm.out;
}

}  // namespace
}  // namespace shmutils::test
