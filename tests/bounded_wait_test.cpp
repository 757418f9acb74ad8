// Every wait ends: a lock of the segment's own held by a stopped process or
// by a forged holder makes a call fail with Timeout naming the holder, never
// wait forever.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <string>

#include "shmctl_support.hpp"
#include "shmutils/fixtures/children.hpp"
#include "shmutils/fixtures/segment_test.hpp"
#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/detail/heap_layout.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/name_directory.hpp"
#include "shmutils/shm/segment.hpp"
#include "stopped_holder.hpp"

namespace shmutils {
namespace {

using test::shmctl;
using test::ToolRun;

using namespace std::chrono_literals;

// Calls f, which must throw Error(Timeout) whose text holds every one of `says`.
template <class F>
void expect_timeout(F&& f, std::initializer_list<const char*> says) {
  const std::uint64_t start = sys::monotonic_ns();
  try {
    f();
    ADD_FAILURE() << "no Timeout";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Timeout) << e.what();
    for (const char* text : says) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos)
          << "\"" << text << "\" missing from: " << e.what();
    }
  }
  EXPECT_LT(sys::monotonic_ns() - start, 10'000'000'000ULL) << "the bound was not kept";
}

Mutex& reap_lock_of(Segment& segment) { return segment.registry().table()->reap_lock; }

class RegistryWaitTest : public fixtures::SegmentTest {
 protected:
  SegmentOptions segment_options() const override {
    return {.max_processes = 3, .lock_timeout = 300ms};
  }
};

TEST_F(RegistryWaitTest, AReapLockHeldByAStoppedProcessEndsReapsAndOpensWithTimeout) {
  bool stopped = false;
  framework::ChildProcess holder = test::stopped_holder_of(name_, &reap_lock_of, &stopped);
  ASSERT_TRUE(stopped);
  expect_timeout([&] { segment_.reap_dead(); }, {"reap lock", "stopped"});
  // A third slot held by a dead process fills the table: an open must reap,
  // and cannot take the reap lock.
  auto dead = fixtures::start_child(
      [this](fixtures::ChildContext&) {
        Segment mine = Segment::open(name_);
        sys::raise_signal(SIGKILL);
      },
      {.expected_signal = SIGKILL});
  ASSERT_TRUE(dead.finish().ok());
  expect_timeout([&] { Segment::open(name_, Access::ReadWrite, {.lock_timeout = 300ms}); },
                 {"reap lock", "stopped"});
  ToolRun tool = shmctl({"--json", "--timeout", "0.3", "reap", name_});
  EXPECT_EQ(tool.code, 2) << tool.out;
  EXPECT_NE(tool.out.find("stopped"), std::string::npos) << tool.out;
  EXPECT_EQ(tool.json()["kind"], "timed out") << tool.out;
  holder.kill();
  Segment late = Segment::open(name_);  // the holder's death freed the lock
  EXPECT_TRUE(late.registration().valid());
}

class HeapWaitTest : public fixtures::SegmentTest {
 protected:
  SegmentOptions segment_options() const override { return {.lock_timeout = 300ms, .heap = true}; }
  std::size_t segment_size() const override { return 4 << 20; }
  Mutex& heap_lock() {
    return const_cast<heap::HeapControl&>(detail::heap_control(segment_.heap())).heap_lock;
  }
};

TEST_F(HeapWaitTest, AHeapLockHeldByAForgedLiveHolderEndsAllocateWithTimeout) {
  // tid 1 is init: alive, and never going to release anything.
  heap_lock().futex().holder_pid_namespace.store(
      static_cast<std::uint32_t>(sys::pid_namespace_id()));
  heap_lock().futex().holder_pid.store(1);
  heap_lock().futex().word.store(1);
  expect_timeout([&] { (void)segment_.heap().allocate(64 << 10); },
                 {"heap lock", "pid 1 (tid 1, alive)"});
  heap_lock().futex().word.store(0);
  heap_lock().futex().holder_pid.store(0);
}

TEST_F(HeapWaitTest, AHeapLockHeldByADeadTidWithNoPidEndsAllocateWithTimeout) {
  auto ghost = fixtures::start_child([](fixtures::ChildContext&) {});
  const pid_t dead = ghost.pid();
  ASSERT_TRUE(ghost.finish().ok());
  heap_lock().futex().word.store(static_cast<std::uint32_t>(dead));
  expect_timeout([&] { (void)segment_.heap().allocate(64 << 10); },
                 {"heap lock", "an unrecorded pid"});
  heap_lock().futex().word.store(0);
}

Mutex& name_lock_of(Segment& segment) {
  auto* table = reinterpret_cast<NameTable*>(segment.base() + segment.header().names.offset);
  return table->lock.mutex;
}

TEST_F(HeapWaitTest, ANameLockHeldByAStoppedProcessEndsFindWithTimeout) {
  bool stopped = false;
  framework::ChildProcess holder = test::stopped_holder_of(name_, &name_lock_of, &stopped);
  ASSERT_TRUE(stopped);
  expect_timeout([&] { (void)segment_.names().find<int>("anything"); }, {"stopped"});
  holder.kill();
  EXPECT_EQ(segment_.names().find<int>("anything"), nullptr) << "usable once the holder died";
}

}  // namespace
}  // namespace shmutils
