// Sizes at every limit: requests near SIZE_MAX, user areas of 0 and of more
// than the segment, segments larger than anything can hold. Each is a clear
// Error or a correct result, never a block smaller than asked, a crash, or a
// name left behind.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstdint>
#include <limits>

#include "shmutils/fixtures/segment_test.hpp"
#include "shmutils/fixtures/unique_name.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/segment.hpp"
#include "test_support.hpp"

namespace shmutils {
namespace {

constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max();

class SizeLimitTest : public fixtures::SegmentTest {
 protected:
  SegmentOptions segment_options() const override { return {.heap = true}; }
  std::size_t segment_size() const override { return 1 << 20; }
};

// Near SIZE_MAX, near the arena's size, and ordinary sizes: an allocation is
// either at least as large as asked or OutOfMemory (0 from try_allocate).
// (An anonymous segment per case: a failing case leaves no name behind.)
RC_GTEST_PROP(SizeLimits, AnAllocationIsAsLargeAsAskedOrOutOfMemory, ()) {
  const std::size_t arena = 1 << 20;
  Segment segment = Segment::create_anonymous(arena, {.heap = true});
  Heap& heap = segment.heap();
  const std::size_t size =
      *rc::gen::oneOf(rc::gen::map(rc::gen::inRange<std::size_t>(0, 32),
                                   [](std::size_t below) { return kMax - below; }),
                      rc::gen::map(rc::gen::inRange<std::size_t>(0, 8192),
                                   [](std::size_t below) { return kMax - below; }),
                      rc::gen::map(rc::gen::inRange<std::size_t>(0, 64),
                                   [](std::size_t below) { return kMax / 2 - below; }),
                      rc::gen::inRange<std::size_t>(arena - 8192, arena + 8192),
                      rc::gen::inRange<std::size_t>(0, 8192));
  const std::size_t alignment = std::size_t{1} << *rc::gen::inRange(0, 13);
  const int form = *rc::gen::inRange(0, 4);
  RC_TAG(form);
  std::uint64_t offset = 0;
  try {
    switch (form) {
      case 0: offset = heap.allocate(size, alignment); break;
      case 1: offset = heap.try_allocate(size, alignment); break;
      case 2: offset = heap.reserve(size, alignment).publish(); break;
      default: offset = heap.allocate_zeroed(size, alignment); break;
    }
  } catch (const Error& e) {
    RC_ASSERT(e.kind() == ErrorKind::OutOfMemory);
    return;
  }
  if (offset == 0) {
    RC_ASSERT(form == 1);
    return;
  }
  RC_ASSERT(heap.usable_size(offset) >= size);
  RC_ASSERT(offset % alignment == 0);
  heap.free(offset);
  RC_ASSERT(heap.audit().ok());
}

TEST_F(SizeLimitTest, AZeroedAllocationOfSizeMaxIsOutOfMemory) {
  EXPECT_EQ(test::kind_of([&] { (void)segment_.heap().allocate_zeroed(kMax); }),
            ErrorKind::OutOfMemory);
  EXPECT_EQ(segment_.heap().try_allocate(kMax - 15), 0U);
}

TEST(SizeLimits, TheUserAreaNeverCoversTheHeap) {
  for (std::size_t user_size : {std::size_t{0}, std::size_t{4096}}) {
    Segment segment = Segment::create_anonymous(1 << 20, {.heap = true, .user_size = user_size});
    const std::byte* arena = segment.heap().pointer(segment.heap().allocate(64));
    std::span<std::byte> user = segment.user_area();
    EXPECT_LE(user.size(), user_size) << "user_size " << user_size;
    EXPECT_TRUE(user.data() + user.size() <= arena) << "user_size " << user_size;
  }
  for (std::size_t user_size : {std::size_t{2} << 20, kMax - 10, kMax}) {
    EXPECT_EQ(test::kind_of([&] {
                Segment::create_anonymous(1 << 20, {.heap = true, .user_size = user_size});
              }),
              ErrorKind::TooSmall)
        << "user_size " << user_size;
  }
}

TEST(SizeLimits, ASegmentLargerThanCanExistIsRefusedAndLeavesNoName) {
  const std::string name = fixtures::unique_segment_name("size-limit");
  for (std::size_t size : {kMax, kMax - 4095, kMax / 2 + 1}) {
    ErrorKind kind = test::kind_of([&] { Segment::create(name, size); });
    EXPECT_EQ(kind, ErrorKind::InvalidArgument) << "size " << size;
    EXPECT_FALSE(Segment::unlink_if_exists(name)) << "size " << size << " left its name";
  }
}

}  // namespace
}  // namespace shmutils
