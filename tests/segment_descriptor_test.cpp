#include "shmutils/shm/segment_descriptor.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "shmutils/properties/generators.hpp"
#include "shmutils/shm/error.hpp"

namespace shmutils {
namespace {

TEST(SegmentDescriptorTest, NamedAndAnonymousRoundTripThroughText) {
  SegmentDescriptor named{false, "/orders", -1, 1 << 20, Uuid::random()};
  std::string text = named.to_string();
  EXPECT_EQ(text.rfind("shmutils-segment:1;name=/orders;size=1048576;uuid=", 0), 0U) << text;
  EXPECT_EQ(SegmentDescriptor::parse(text), named);
  SegmentDescriptor anon{true, "memfd name", 7, 4096, Uuid::random()};
  EXPECT_EQ(SegmentDescriptor::parse(anon.to_string()), anon);
  EXPECT_NE(anon.to_string().find("memfd=memfd%20name;fd=7"), std::string::npos);
}

TEST(SegmentDescriptorTest, MalformedTextIsRejectedWithTheReason) {
  std::string uuid = Uuid::random().to_string();
  const std::vector<std::string> bad_texts{
      std::string(""),
      std::string("garbage"),
      "shmutils-segment:2;name=/a;size=1;uuid=" + uuid,
      "shmutils-segment:1;size=1;uuid=" + uuid,
      "shmutils-segment:1;name=/a;uuid=" + uuid,
      "shmutils-segment:1;name=/a;size=1",
      "shmutils-segment:1;name=/a;size=x;uuid=" + uuid,
      "shmutils-segment:1;name=/a;size=-1;uuid=" + uuid,
      "shmutils-segment:1;name=/a;size=1;uuid=abc",
      "shmutils-segment:1;name=/a;name=/b;size=1;uuid=" + uuid,
      "shmutils-segment:1;name=/a;fd=3;size=1;uuid=" + uuid,
      "shmutils-segment:1;memfd=m;size=1;uuid=" + uuid,
      "shmutils-segment:1;memfd=m;fd=-3;size=1;uuid=" + uuid,
      "shmutils-segment:1;name=a;size=1;uuid=" + uuid,
      "shmutils-segment:1;name=/a%2;size=1;uuid=" + uuid,
      "shmutils-segment:1;name=/a;size=1;uuid=" + uuid + ";color=red",
      "shmutils-segment:1;name=/a;size=1;uuid=" + uuid + ";novalue",
  };
  for (const std::string& bad : bad_texts) {
    try {
      SegmentDescriptor::parse(bad);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << bad;
    }
  }
}

RC_GTEST_PROP(SegmentDescriptorProperty, AnyNameSizeAndUuidRoundTrips,
              (const std::string& name_tail, std::uint64_t size, Uuid uuid, bool anonymous)) {
  SegmentDescriptor d;
  d.anonymous = anonymous;
  d.name = anonymous ? name_tail : "/" + name_tail;
  d.fd = anonymous ? 3 : -1;
  d.size = size;
  d.uuid = uuid;
  std::string text = d.to_string();
  RC_ASSERT(text.find(' ') == std::string::npos);
  RC_ASSERT(SegmentDescriptor::parse(text) == d);
}

}  // namespace
}  // namespace shmutils
