#include <algorithm>
#include <cstring>
#include <map>
#include <random>

#include "heap_test_support.hpp"
#include "shmutils/fixtures/children.hpp"
#include "shmutils/shm/detail/sys.hpp"

namespace shmutils::test {
namespace {

struct Order {
  std::uint64_t id = 7;
  double price = 1.5;
};

void fill(Heap& heap, std::uint64_t offset, std::size_t size, std::uint8_t seed) {
  std::memset(heap.pointer(offset), seed, size);
}

bool intact(Heap& heap, std::uint64_t offset, std::size_t size, std::uint8_t seed) {
  const std::byte* p = heap.pointer(offset);
  for (std::size_t i = 0; i < size; ++i) {
    if (p[i] != std::byte{seed}) return false;
  }
  return true;
}

TEST_F(HeapTest, AFreshHeapAuditsCleanAndAccountsForEveryByte) {
  HeapAudit audit = segment_.audit();
  EXPECT_TRUE(audit.ok()) << (audit.problems.empty() ? "" : audit.problems.front());
  const HeapStats& s = audit.stats;
  EXPECT_GT(s.capacity, 7U << 20);
  EXPECT_EQ(s.live, 0U);
  EXPECT_EQ(s.free_blocks, 1U);
  EXPECT_EQ(s.free + s.live + s.cached + s.metadata, s.capacity);
}

// A span is exactly 64 KiB. A free block one granule longer than a span, on
// the span grid, cannot give the granule back (a free block needs two): it
// must not become a span, which would keep the stray granule inside it with
// a header that no longer matches its size.
TEST_F(HeapTest, AFreeBlockOneGranuleLongerThanASpanIsNotCarvedIntoOne) {
  Heap& heap = segment_.heap();
  std::uint64_t first = heap.allocate(heap::kSpanBytes);  // 1 + 4096 granules, at the arena's start
  ASSERT_EQ((first - sizeof(heap::BlockHeader) - detail::heap_control(heap).arena_offset) %
                heap::kSpanBytes,
            0U)
      << "the setup needs the block on the span grid";
  std::uint64_t separator = heap.allocate(8192);
  heap.free(first);
  std::uint64_t small = heap.allocate(64);  // the first span of its class
  HeapAudit audit = segment_.audit();
  EXPECT_TRUE(audit.ok()) << (audit.problems.empty() ? "" : audit.problems.front());
  heap.free(small);
  heap.free(separator);
  heap.flush_cache();
  audit = segment_.audit();
  EXPECT_TRUE(audit.ok()) << (audit.problems.empty() ? "" : audit.problems.front());
}

TEST_F(HeapTest, BlocksAreAlignedDisjointAndKeepTheirContents) {
  std::mt19937_64 random(1);
  std::map<std::uint64_t, std::pair<std::size_t, std::uint8_t>> live;
  for (int i = 0; i < 1000; ++i) {
    std::size_t size = std::uniform_int_distribution<std::size_t>(1, 9000)(random);
    std::size_t alignment = std::size_t{16} << (random() % 9);  // 16 .. 4096
    std::uint64_t offset = heap().allocate(size, alignment);
    ASSERT_EQ(reinterpret_cast<std::uintptr_t>(heap().pointer(offset)) % alignment, 0U);
    ASSERT_GE(heap().usable_size(offset), size);
    auto seed = static_cast<std::uint8_t>(i);
    fill(heap(), offset, size, seed);
    live[offset] = {size, seed};
  }
  std::uint64_t end = 0;
  for (const auto& [offset, entry] : live) {
    ASSERT_GE(offset, end) << "blocks overlap";
    end = offset + entry.first;
    ASSERT_TRUE(intact(heap(), offset, entry.first, entry.second));
  }
  for (const auto& [offset, entry] : live) heap().free(offset);
  heap().flush_cache();
  HeapAudit audit = segment_.audit();
  EXPECT_TRUE(audit.ok()) << (audit.problems.empty() ? "" : audit.problems.front());
  EXPECT_EQ(audit.stats.live, 0U);
}

TEST_F(HeapTest, AllocateZeroedGivesZeroBytesEvenWhereGarbageWas) {
  for (std::size_t size : {std::size_t{40}, std::size_t{30'000}}) {
    std::uint64_t dirty = heap().allocate(size);
    std::memset(heap().pointer(dirty), 0xAB, size);
    heap().free(dirty);
    std::uint64_t clean = heap().allocate_zeroed(size);
    EXPECT_EQ(clean, dirty) << "the same memory comes back";
    const std::byte* p = heap().pointer(clean);
    EXPECT_TRUE(std::all_of(p, p + size, [](std::byte b) { return b == std::byte{0}; }));
  }
}

TEST_F(HeapTest, FreedNeighboursCoalesceBackIntoOneBlock) {
  HeapStats before = heap().stats();
  std::uint64_t a = heap().allocate(100'000);
  std::uint64_t b = heap().allocate(100'000);
  std::uint64_t c = heap().allocate(100'000);
  EXPECT_EQ(heap().stats().free_blocks, 1U);
  heap().free(b);
  EXPECT_EQ(heap().stats().free_blocks, 2U) << "a hole between two live blocks";
  heap().free(a);
  EXPECT_EQ(heap().stats().free_blocks, 2U) << "a merged with the hole";
  heap().free(c);
  HeapStats after = heap().stats();
  EXPECT_EQ(after.free_blocks, 1U);
  EXPECT_EQ(after.largest_free, before.largest_free);
}

TEST_F(HeapTest, OutOfMemoryIsAClearResultAndTheHeapRecovers) {
  EXPECT_EQ(heap().try_allocate(64 << 20), 0U);
  try {
    (void)heap().allocate(64 << 20);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory);
    EXPECT_NE(std::string(e.what()).find("largest free block"), std::string::npos) << e.what();
  }
  std::vector<std::uint64_t> blocks;
  for (std::uint64_t offset; (offset = heap().try_allocate(60'000)) != 0;) blocks.push_back(offset);
  EXPECT_GT(blocks.size(), 100U);
  EXPECT_EQ(heap().try_allocate(60'000), 0U);
  for (std::uint64_t offset : blocks) heap().free(offset);
  EXPECT_NE(heap().try_allocate(6 << 20), 0U) << "everything coalesced again";
}

TEST_F(HeapTest, DoubleFreesAndForeignPointersAreErrors) {
  std::uint64_t small = heap().allocate(40);
  std::uint64_t large = heap().allocate(20'000);
  EXPECT_EQ(kind_of([&] { heap().free(small + 16); }), ErrorKind::ForeignPointer);
  EXPECT_EQ(kind_of([&] { heap().free(large + 16); }), ErrorKind::ForeignPointer);
  EXPECT_EQ(kind_of([&] { heap().free(large + 4096); }), ErrorKind::ForeignPointer);
  EXPECT_EQ(kind_of([&] { heap().free(64); }), ErrorKind::ForeignPointer) << "outside the arena";
  heap().free(small);
  heap().free(large);
  EXPECT_EQ(kind_of([&] { heap().free(small); }), ErrorKind::DoubleFree);
  EXPECT_EQ(kind_of([&] { heap().free(large); }), ErrorKind::DoubleFree);
  EXPECT_EQ(kind_of([&] { (void)heap().allocate(1, 3); }), ErrorKind::InvalidArgument);
  EXPECT_TRUE(segment_.audit().ok()) << "errors leave the heap intact";
}

TEST_F(HeapTest, AllocateIntoAndReservationsPublishThroughALocation) {
  std::atomic<std::uint64_t>& dest = table(0)[0];
  std::uint64_t offset = heap().allocate_into(dest, 100);
  EXPECT_EQ(dest.load(), offset);
  {
    Reservation dropped = heap().reserve(5000);
    EXPECT_EQ(heap().stats().reserved, heap().usable_size(dropped.offset()));
  }
  EXPECT_EQ(heap().stats().reserved, 0U) << "an unpublished reservation is cancelled";
  Reservation kept = heap().reserve(5000);
  std::uint64_t published = kept.publish(table(0)[1]);
  EXPECT_EQ(table(0)[1].load(), published);
  heap().free_from(dest);
  EXPECT_EQ(dest.load(), 0U);
  EXPECT_EQ(kind_of([&] { heap().free_from(dest); }), ErrorKind::InvalidArgument);
  EXPECT_EQ(leaked_bytes(1), 0U);
}

TEST_F(HeapTest, TheDumpNamesTheTypesOfConstructedObjects) {
  Order* order = heap().construct<Order>();
  EXPECT_EQ(order->id, 7U);
  std::uint64_t raw = heap().allocate(24);
  std::vector<HeapEntry> dump = heap().dump();
  ASSERT_EQ(dump.size(), 2U);
  auto typed = std::find_if(dump.begin(), dump.end(), [&](const HeapEntry& e) {
    return e.offset == heap().offset_of(order);
  });
  ASSERT_NE(typed, dump.end());
  EXPECT_NE(typed->type.find("Order"), std::string::npos) << typed->type;
  auto untyped =
      std::find_if(dump.begin(), dump.end(), [&](const HeapEntry& e) { return e.offset == raw; });
  ASSERT_NE(untyped, dump.end());
  EXPECT_EQ(untyped->type, "");
  heap().destroy(order);
  EXPECT_EQ(heap().dump().size(), 1U);
}

TEST_F(HeapTest, AForkedChildMustAttachBeforeAllocating) {
  EXPECT_TRUE(fixtures::run_in_child([&](fixtures::ChildContext&) {
                EXPECT_EQ(kind_of([&] { (void)heap().allocate(16); }), ErrorKind::InvalidArgument);
                Segment own = attach_child();
                own.heap().free(own.heap().allocate(16));
              }).ok());
}

TEST_F(HeapTest, ADetachingProcessGivesBackItsCachesAndReservations) {
  ASSERT_TRUE(fixtures::run_in_child([&](fixtures::ChildContext&) {
                Segment own = attach_child();
                for (int i = 0; i < 100; ++i) own.heap().free(own.heap().allocate(48));
                Reservation forgotten = own.heap().reserve(30'000);
                own.heap().reserve(64).publish(table(own, 0)[0]);
                forgotten.publish();  // published without a location: stays live
              }).ok());
  HeapStats s = heap().stats();
  EXPECT_EQ(s.cached, 0U);
  EXPECT_EQ(s.reserved, 0U);
  EXPECT_EQ(s.live, 64U + 30'000U) << "the two published blocks stay";
  expect_healthy("after a clean detach");
}

TEST_F(HeapTest, ProcessesAllocateAndFreeConcurrently) {
  constexpr int kChildren = 4;
  std::vector<fixtures::RunningChild> children;
  for (int c = 0; c < kChildren; ++c) {
    children.push_back(fixtures::start_child([&, c](fixtures::ChildContext&) {
      Segment own = attach_child();
      Heap& h = own.heap();
      std::mt19937_64 random(static_cast<std::uint64_t>(c));
      std::vector<std::pair<std::uint64_t, std::size_t>> mine;
      for (int i = 0; i < 30'000; ++i) {
        if (mine.size() < 300 && (mine.empty() || random() % 2 == 0)) {
          std::size_t size = 16 + random() % (random() % 8 == 0 ? 20'000 : 4000);
          std::uint64_t offset = h.allocate(size);
          std::memset(h.pointer(offset), c + 1, size);
          mine.emplace_back(offset, size);
        } else {
          std::size_t pick = random() % mine.size();
          auto [offset, size] = mine[pick];
          const std::byte* p = h.pointer(offset);
          for (std::size_t k = 0; k < size; ++k) {
            // Someone else wrote into our block?
            ASSERT_EQ(p[k], std::byte(c + 1)) << "byte " << k << " of the block at " << offset;
          }
          h.free(offset);
          mine[pick] = mine.back();
          mine.pop_back();
        }
      }
      for (auto [offset, size] : mine) h.free(offset);
    }));
  }
  for (auto& child : children) EXPECT_TRUE(child.finish().ok());
  expect_healthy("after concurrent churn");
  EXPECT_EQ(heap().stats().live, 0U);
}

}  // namespace
}  // namespace shmutils::test
