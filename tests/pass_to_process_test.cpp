// Passing a segment and a pointer into it to another process: forked, exec'd
// (posix_spawn of a helper binary), and over a Unix socket. Each receiver maps
// the segment at another address than the parent, walks the data linked by
// offset pointers and changes it; the parent sees the changes.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdio>

#include "linked_list.hpp"
#include "shmutils/fixtures/children.hpp"
#include "shmutils/fixtures/segment_test.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/segment_handle.hpp"
#include "test_support.hpp"

namespace shmutils {
namespace {

constexpr std::uint64_t kNodes = 1000;

void expect_changed_elsewhere(const Segment& segment, const test::ListRoot* root) {
  EXPECT_EQ(root->walked, kNodes);
  EXPECT_NE(root->walker_base, reinterpret_cast<std::uintptr_t>(segment.base()))
      << "the receiver must map the segment at another address";
  std::uint64_t i = 0;
  for (auto* node = root->head.get(); node != nullptr; node = node->next.get(), ++i) {
    ASSERT_EQ(node->value, i + 1000) << "node " << i;
  }
  EXPECT_EQ(i, kNodes);
}

std::string hex(const void* address) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%lx",
                static_cast<unsigned long>(reinterpret_cast<std::uintptr_t>(address)));
  return buffer;
}

class PassToProcessTest : public fixtures::SegmentTest {};

TEST_F(PassToProcessTest, AForkedChildAttachesElsewhereWalksAndChangesTheList) {
  test::ListRoot* root = test::build_list(segment_, kNodes);
  auto handle = PortableHandle<test::ListRoot>::of(segment_, root).to_string();
  ASSERT_TRUE(fixtures::run_in_child([&](fixtures::ChildContext&) {
                // Guard the inherited range: a stale absolute pointer would fault at once.
                ::mprotect(segment_.base(), segment_.mapped_size(), PROT_NONE);
                auto parsed = PortableHandle<test::ListRoot>::parse(handle);
                Segment mine = Segment::attach(parsed.segment);
                EXPECT_EQ(test::walk_and_change(mine, parsed.resolve(mine), 0), 0);
              }).ok());
  expect_changed_elsewhere(segment_, root);
}

TEST_F(PassToProcessTest, AnExecdChildAttachesFromAHandleInArgv) {
  test::ListRoot* root = test::build_list(segment_, kNodes);
  auto handle = PortableHandle<test::ListRoot>::of(segment_, root).to_string();
  auto child = framework::ChildProcess::spawn(SHMUTILS_HELPER_PATH,
                                              {"shmutils_test_helper", handle, hex(segment_.base()),
                                               std::to_string(segment_.mapped_size())});
  auto status = child.wait_for(std::chrono::seconds(30));
  ASSERT_TRUE(status.has_value()) << "helper hung";
  ASSERT_TRUE(status->success()) << status->to_string();
  expect_changed_elsewhere(segment_, root);
}

TEST(PassAnonymousTest, AnExecdChildInheritsAnAnonymousSegmentByFd) {
  Segment segment = Segment::create_anonymous(1 << 20);
  test::ListRoot* root = test::build_list(segment, kNodes);
  PortableHandle<test::ListRoot> handle{segment.inheritable_descriptor(), segment.to_offset(root)};
  auto child = framework::ChildProcess::spawn(
      SHMUTILS_HELPER_PATH, {"shmutils_test_helper", handle.to_string(), hex(segment.base()),
                             std::to_string(segment.mapped_size())});
  auto status = child.wait_for(std::chrono::seconds(30));
  ASSERT_TRUE(status.has_value()) << "helper hung";
  ASSERT_TRUE(status->success()) << status->to_string();
  expect_changed_elsewhere(segment, root);
}

TEST(PassAnonymousTest, AnAnonymousSegmentTravelsOverAUnixSocket) {
  Segment segment = Segment::create_anonymous(1 << 20);
  test::ListRoot* root = test::build_list(segment, kNodes);
  std::uint64_t root_offset = segment.to_offset(root);
  auto [parent_end, child_end] = sys::socket_pair();
  auto child = fixtures::start_child([&, fd = child_end.get()](fixtures::ChildContext&) {
    // Drop everything inherited: the segment must arrive through the socket.
    std::byte* old_base = segment.base();
    std::size_t old_size = segment.mapped_size();
    segment.close();
    Mapping guard = Mapping::map({.size = old_size,
                                  .protection = Protection::None,
                                  .flags = MapFlags::Private | MapFlags::FixedNoReplace,
                                  .hint = old_base});
    Segment received = receive_segment(fd);
    auto* mine = SegmentHandle<test::ListRoot>(root_offset).resolve(received);
    EXPECT_EQ(test::walk_and_change(received, mine, 0), 0);
  });
  // The child blocks in receive_segment until this send.
  send_segment(parent_end.get(), segment);
  ASSERT_TRUE(child.finish().ok());
  expect_changed_elsewhere(segment, root);
}

TEST_F(PassToProcessTest, HandlesRefuseTheWrongTypeTheWrongSegmentAndBadOffsets) {
  test::ListRoot* root = test::build_list(segment_, 3);
  auto text = PortableHandle<test::ListRoot>::of(segment_, root).to_string();
  EXPECT_THROW(PortableHandle<int>::parse(text), Error);
  Segment other = Segment::create_anonymous(1 << 20);
  auto parsed = PortableHandle<test::ListRoot>::parse(text);
  try {
    parsed.resolve(other);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::WrongSegment);
  }
  EXPECT_THROW(SegmentHandle<test::ListRoot>(segment_.size()).resolve(segment_), Error);
  EXPECT_THROW(SegmentHandle<test::ListRoot>(segment_.user_offset() + 1).resolve(segment_), Error);
  EXPECT_THROW(SegmentHandle<test::ListRoot>().resolve(segment_), Error);
  EXPECT_EQ(SegmentHandle<test::ListRoot>::of(segment_, root).resolve(segment_), root);
  EXPECT_THROW(PortableHandle<test::ListRoot>::parse("no-hash"), Error);
}

}  // namespace
}  // namespace shmutils
