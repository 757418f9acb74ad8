#include "shmutils/shm/byte_stream.hpp"

#include <gtest/gtest.h>

#include <array>

#include "shmutils/shm/error.hpp"

namespace shmutils {
namespace {

TEST(ByteStreamTest, ReadsAndWritesMoveTheCursorAndClampAtTheEnd) {
  std::array<std::byte, 8> buffer{};
  ByteStream stream(buffer);
  std::array<std::byte, 5> five{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4},
                                std::byte{5}};
  EXPECT_EQ(stream.write(five), 5U);
  EXPECT_EQ(stream.tell(), 5U);
  EXPECT_EQ(stream.remainder(), 3U);
  EXPECT_EQ(stream.write(five), 3U);  // clamped
  EXPECT_EQ(stream.remainder(), 0U);
  EXPECT_EQ(stream.write(five), 0U);
  EXPECT_EQ(buffer[7], std::byte{3});

  stream.seek(-8, SeekFrom::End);
  auto first = stream.read(3);
  ASSERT_EQ(first.size(), 3U);
  EXPECT_EQ(first[2], std::byte{3});
  stream.seek(2, SeekFrom::Current);
  EXPECT_EQ(stream.tell(), 5U);
  EXPECT_EQ(stream.read(100).size(), 3U);
}

TEST(ByteStreamTest, SeekingOutsideTheRangeThrowsOutOfRange) {
  std::array<std::byte, 4> buffer{};
  ByteStream stream(buffer);
  EXPECT_EQ(stream.seek(4), 4U);  // the end itself is a valid position
  try {
    stream.seek(5);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfRange);
  }
  EXPECT_THROW(stream.seek(-1, SeekFrom::Begin), Error);
  EXPECT_EQ(stream.tell(), 4U);  // a failed seek leaves the cursor alone
}

}  // namespace
}  // namespace shmutils
