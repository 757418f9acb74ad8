// A peer that may write a segment can write anything into it. Whatever it
// writes into the allocator's lists, caches and tables, the others get
// CorruptHeap (or another Error), never a stray access; the offline audit
// reports what the live one would; fields validated at open are not re-read.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string_view>

#include "shmutils/shm/detail/heap_layout.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/name_directory.hpp"
#include "shmutils/shm/segment.hpp"
#include "test_support.hpp"

namespace shmutils {
namespace {

using test::kind_of;

constexpr std::uint64_t kFarAway = std::uint64_t{1} << 60;
constexpr std::uint32_t kClass64 = 3;  // heap::kClassSizes[3] == 64
static_assert(heap::kClassSizes[kClass64] == 64);

class HostilePeerTest : public ::testing::Test {
 protected:
  Segment segment_ = Segment::create_anonymous(1 << 20, {.max_processes = 4, .heap = true});
  Heap& heap_ = segment_.heap();

  heap::HeapControl& control() {
    return const_cast<heap::HeapControl&>(detail::heap_control(heap_));
  }
  heap::SlotRecord& own_record() {
    return reinterpret_cast<heap::SlotRecord*>(
        segment_.base() + detail::heap_control(heap_).slots_offset)[heap_.slot()];
  }
  heap::FreeLinks& links_of_block(std::uint64_t block) {
    return *reinterpret_cast<heap::FreeLinks*>(segment_.base() + block + sizeof(heap::BlockHeader));
  }
  bool audit_reports(std::string_view what) {
    HeapAudit audit = segment_.audit_offline();
    for (const std::string& problem : audit.problems) {
      if (problem.find(what) != std::string::npos) return true;
    }
    ADD_FAILURE() << "the offline audit did not report \"" << what << "\"; it found "
                  << audit.problems.size() << " problem(s)";
    return false;
  }
};

TEST_F(HostilePeerTest, AFreeListLinkOutOfTheArenaIsCorruptHeapNotAStrayAccess) {
  std::uint64_t before = heap_.allocate(8000);
  std::uint64_t freed = heap_.allocate(8000);
  std::uint64_t after = heap_.allocate(8000);
  heap_.free(freed);
  for (std::uint64_t head : control().bins) {
    if (head != 0) links_of_block(head).next = kFarAway;
  }
  // A smaller request searches the freed block's bin past its first block.
  EXPECT_EQ(kind_of([&] { (void)heap_.allocate(4000); }), ErrorKind::CorruptHeap);
  (void)before;
  (void)after;
}

TEST_F(HostilePeerTest, ACacheHeadOutOfTheArenaIsCorruptHeapAndTheOfflineAuditSaysSo) {
  heap_.free(heap_.allocate(64));  // into this process's cache
  own_record().caches[kClass64].head.store(kFarAway);
  EXPECT_TRUE(audit_reports("cache of class " + std::to_string(kClass64) + " starts at"));
  EXPECT_EQ(kind_of([&] { (void)heap_.allocate(64); }), ErrorKind::CorruptHeap);
  EXPECT_EQ(kind_of([&] { heap_.flush_cache(); }), ErrorKind::CorruptHeap);
}

TEST_F(HostilePeerTest, ASpanListLinkOutOfTheArenaIsCorruptHeapNotAStrayAccess) {
  heap_.free(heap_.allocate(64));
  heap_.flush_cache();  // the next allocation refills from the class's spans
  control().classes[kClass64].partial = kFarAway;
  EXPECT_EQ(kind_of([&] { (void)heap_.allocate(64); }), ErrorKind::CorruptHeap);
}

TEST_F(HostilePeerTest, ASpanHeaderNamingNoClassIsCorruptHeap) {
  std::uint64_t object = heap_.allocate(64);
  const std::uint64_t arena = detail::heap_control(heap_).arena_offset;
  const std::uint64_t span =
      arena + (object - arena) / heap::kSpanBytes * heap::kSpanBytes + sizeof(heap::BlockHeader);
  reinterpret_cast<heap::SpanHeader*>(segment_.base() + span)->class_index = 200;
  EXPECT_EQ(kind_of([&] { heap_.free(object); }), ErrorKind::CorruptHeap);
}

TEST_F(HostilePeerTest, ANameOutOfTheHeapIsReportedOfflineAndRefusedByFind) {
  (void)segment_.names().construct<std::uint64_t>("answer", 42U);
  auto* table = reinterpret_cast<NameTable*>(segment_.base() + segment_.layout().names.offset);
  bool rewritten = false;
  for (std::uint32_t i = 0; i < table->capacity; ++i) {
    NameEntry& entry = table->entries()[i];
    if (std::string_view(entry.name.data(), entry.name_length) == "answer") {
      entry.offset.store(kFarAway);
      rewritten = true;
    }
  }
  ASSERT_TRUE(rewritten);
  EXPECT_TRUE(audit_reports("named object \"answer\" points at offset"));
  const ErrorKind kind = kind_of([&] { (void)segment_.names().find<std::uint64_t>("answer"); });
  EXPECT_TRUE(kind == ErrorKind::OutOfRange || kind == ErrorKind::CorruptHeap) << to_string(kind);
}

// Another process truncates the segment under a reader: the offline audit
// reads a copy, so the reader gets Truncated instead of SIGBUS.
TEST_F(HostilePeerTest, TheOfflineAuditOfASegmentTruncatedUnderItIsTruncatedNotSigbus) {
  heap_.free(heap_.allocate(100'000));
  ASSERT_EQ(::ftruncate(segment_.fd(), 8192), 0);
  EXPECT_EQ(kind_of([&] { (void)segment_.audit_offline(); }), ErrorKind::Truncated);
  ASSERT_EQ(::ftruncate(segment_.fd(), static_cast<off_t>(segment_.mapped_size())), 0);
  EXPECT_FALSE(segment_.audit_offline().ok()) << "the truncation zeroed the arena's headers";
}

// The control block's table offsets were validated at open: a peer moving
// them afterwards moves nothing for this attachment.
TEST_F(HostilePeerTest, HeapTablesMovedAfterOpenAreNotFollowed) {
  control().slots_offset = kFarAway;
  control().span_map_offset = kFarAway;
  control().types_offset = kFarAway;
  std::uint64_t object = 0;
  EXPECT_NO_THROW(object = heap_.allocate(64));
  EXPECT_NO_THROW(heap_.free(object));
  EXPECT_NO_THROW(heap_.free(heap_.allocate(100'000)));
}

}  // namespace
}  // namespace shmutils
