#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <shmutils/fixtures/segment_test.hpp>
#include <shmutils/properties/generators.hpp>
#include <shmutils/shm/open_mode.hpp>

class ConsumerSegmentTest : public shmutils::fixtures::SegmentTest {};

TEST_F(ConsumerSegmentTest, FixtureGivesAWritableSegment) {
  segment_.user_area()[0] = std::byte{1};
  EXPECT_EQ(shmutils::Segment::open(name_).user_area()[0], std::byte{1});
}

RC_GTEST_PROP(ConsumerProperty, OpenModeFlagsRoundTrip, (shmutils::OpenMode mode)) {
  RC_PRE(!(mode.may_create() && !mode.writable()));
  RC_ASSERT(shmutils::from_flags(shmutils::to_flags(mode)) == mode);
}
