#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/fixtures/children.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>

#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/uuid.hpp"

namespace shmutils {
namespace {

TEST(SysTest, StartTimeNamesALiveProcessAndNotAZombieOrAFreePid) {
  auto own = sys::process_start_time(::getpid());
  ASSERT_TRUE(own.has_value());
  EXPECT_TRUE(sys::process_alive(::getpid(), *own));
  EXPECT_FALSE(sys::process_alive(::getpid(), *own + 1));
  EXPECT_FALSE(sys::process_start_time(0).has_value());
  EXPECT_FALSE(sys::process_start_time(-5).has_value());
  EXPECT_FALSE(sys::process_start_time(4'194'304 + 1).has_value());  // above pid_max
  pid_t zombie = sys::fork("zombie");
  if (zombie == 0) ::_exit(0);
  std::uint64_t until = sys::monotonic_ns() + 5'000'000'000ULL;
  while (sys::process_start_time(zombie).has_value() && sys::monotonic_ns() < until) {
    sys::sleep_ns(1'000'000);
  }
  EXPECT_FALSE(sys::process_start_time(zombie).has_value()) << "a zombie counts as dead";
  EXPECT_EQ(sys::wait(zombie).exit_code, 0);
}

TEST(SysTest, ChildPidsListsExactlyThisProcesssChildren) {
  auto child = fixtures::start_child([](fixtures::ChildContext&) { ::pause(); });
  auto children = sys::child_pids(::getpid());
  EXPECT_NE(std::find(children.begin(), children.end(), child.pid()), children.end());
  child.kill();
  children = sys::child_pids(::getpid());
  EXPECT_EQ(std::find(children.begin(), children.end(), child.pid()), children.end());
}

TEST(SysTest, DescriptorMessagesCarryAnFdOrNone) {
  auto [a, b] = sys::socket_pair();
  sys::send_with_fd(a.get(), "no fd here", -1);
  auto plain = sys::receive_with_fd(b.get());
  EXPECT_EQ(plain.message, "no fd here");
  EXPECT_FALSE(plain.fd.valid());
  EXPECT_THROW(sys::send_with_fd(a.get(), "", -1), Error);
  a.close();
  try {
    sys::receive_with_fd(b.get());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotFound);
  }
}

TEST(SysTest, RandomBytesAndUuidsDiffer) {
  Uuid a = Uuid::random();
  Uuid b = Uuid::random();
  EXPECT_NE(a, b);
  EXPECT_FALSE(a.is_nil());
  EXPECT_TRUE(Uuid{}.is_nil());
  EXPECT_EQ(Uuid::parse(a.to_string()), a);
  EXPECT_THROW(Uuid::parse("XYZ"), Error);
  EXPECT_THROW(Uuid::parse(std::string(32, 'G')), Error);
}

TEST(SysTest, PageSizeRounding) {
  std::size_t page = sys::page_size();
  EXPECT_EQ(sys::round_up_to_page(0), 0U);
  EXPECT_EQ(sys::round_up_to_page(1), page);
  EXPECT_EQ(sys::round_up_to_page(page), page);
  EXPECT_EQ(sys::round_up_to_page(page + 1), 2 * page);
}

}  // namespace
}  // namespace shmutils
