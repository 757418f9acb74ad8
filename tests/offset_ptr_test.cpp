#include "shmutils/shm/offset_ptr.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <numeric>
#include <ranges>
#include <thread>
#include <vector>

#include "shmutils/shm/atomic_tagged_offset.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/mapping.hpp"
#include "shmutils/shm/segment_handle.hpp"
#include "shmutils/shm/shm_object.hpp"
#include "shmutils/shm/type_name.hpp"

namespace shmutils {
namespace {

static_assert(std::contiguous_iterator<offset_ptr<int>>);
static_assert(std::random_access_iterator<offset_ptr<const double>>);
static_assert(std::is_trivially_destructible_v<offset_ptr<int>>);

struct Node {
  int value;
  offset_ptr<Node> next;
};

TEST(OffsetPtrTest, ZeroFilledMemoryHoldsNullPointers) {
  alignas(offset_ptr<int>) std::array<std::byte, sizeof(offset_ptr<int>)> zeros{};
  auto* p = reinterpret_cast<offset_ptr<int>*>(zeros.data());
  EXPECT_FALSE(*p);
  EXPECT_EQ(p->get(), nullptr);
  offset_ptr<int> q;
  EXPECT_EQ(q, nullptr);
}

TEST(OffsetPtrTest, CopiesRecomputeTheDistanceButMemcpyDoesNot) {
  int target = 5;
  offset_ptr<int> a = &target;
  offset_ptr<int> b = a;
  EXPECT_EQ(b.get(), &target);
  EXPECT_NE(a.distance(), b.distance()) << "each stores its own distance";
  alignas(offset_ptr<int>) std::array<std::byte, sizeof(offset_ptr<int>)> raw{};
  std::memcpy(raw.data(), &a,
              sizeof a);  // NOLINT(bugprone-undefined-memory-manipulation): on purpose
  auto* copied = reinterpret_cast<offset_ptr<int>*>(raw.data());
  EXPECT_NE(copied->get(), &target) << "a byte copy keeps the distance, not the target";
  EXPECT_EQ(copied->distance(), a.distance());
}

TEST(OffsetPtrTest, WorksWithStandardAlgorithmsLikeARawPointer) {
  std::vector<int> values{5, 3, 9, 1, 7};
  offset_ptr<int> first = values.data();
  offset_ptr<int> last = values.data() + values.size();
  std::sort(first, last);
  EXPECT_EQ(values, (std::vector<int>{1, 3, 5, 7, 9}));
  EXPECT_EQ(std::accumulate(first, last, 0), 25);
  EXPECT_EQ(*std::ranges::find(std::ranges::subrange(first, last), 7), 7);
  EXPECT_EQ(last - first, 5);
  EXPECT_EQ(first[2], 5);
  EXPECT_TRUE(first < last);
  EXPECT_EQ(std::to_address(first + 1), values.data() + 1);
  offset_ptr<const int> as_const = first;
  EXPECT_EQ(*as_const, 1);
}

TEST(OffsetPtrTest, ALinkedListBuiltInOneMappingWalksInAnotherAtADifferentAddress) {
  ShmObject object = ShmObject::create_anonymous("offset-list");
  object.resize(sys::page_size());
  MapRequest request;
  request.size = sys::page_size();
  request.fd = object.fd();
  Mapping writer = Mapping::map(request);
  auto* nodes = reinterpret_cast<Node*>(writer.data());
  for (int i = 0; i < 10; ++i) {
    nodes[i].value = i * i;
    nodes[i].next = i + 1 < 10 ? &nodes[i + 1] : nullptr;
  }
  Mapping reader = Mapping::map(request);
  ASSERT_NE(reader.data(), writer.data());
  writer = Mapping();  // the list must not depend on the first address at all
  int count = 0;
  for (Node* n = reinterpret_cast<Node*>(reader.data()); n != nullptr; n = n->next.get()) {
    EXPECT_EQ(n->value, count * count);
    EXPECT_TRUE(reader.contains(n));
    ++count;
  }
  EXPECT_EQ(count, 10);
}

TEST(AtomicTaggedOffsetTest, CompareExchangeFailsAfterAnABASequence) {
  AtomicTaggedOffset head;
  TaggedOffset seen = head.load();
  EXPECT_EQ(seen.offset, 0U);
  head.store(64);
  TaggedOffset a = head.load();
  EXPECT_EQ(a.offset, 64U);
  head.store(128);  // A -> B
  head.store(64);   // B -> A
  TaggedOffset stale = a;
  EXPECT_FALSE(head.compare_exchange(stale, 256)) << "same offset, but it changed twice";
  EXPECT_EQ(stale.offset, 64U);
  EXPECT_NE(stale.tag, a.tag);
  EXPECT_TRUE(head.compare_exchange(stale, 256));
  EXPECT_EQ(head.load().offset, 256U);
  EXPECT_TRUE(AtomicTaggedOffset::representable(AtomicTaggedOffset::kMaxOffset));
  EXPECT_FALSE(AtomicTaggedOffset::representable(AtomicTaggedOffset::kMaxOffset + 8));
  EXPECT_FALSE(AtomicTaggedOffset::representable(12));
}

// A lock-free stack of segment offsets, pushed and popped by 4 threads: every
// node comes out exactly once.
TEST(AtomicTaggedOffsetTest, ALockFreeStackLosesAndDuplicatesNothingUnderThreads) {
  struct StackNode {
    std::uint64_t next;
    std::uint64_t id;
  };
  constexpr int kNodes = 4000;
  std::vector<StackNode> arena(kNodes + 1);
  auto offset_of = [&](int i) { return static_cast<std::uint64_t>(i) * sizeof(StackNode); };
  auto node_at = [&](std::uint64_t offset) -> StackNode& {
    return arena[offset / sizeof(StackNode)];
  };
  AtomicTaggedOffset head;
  auto push = [&](int i) {
    TaggedOffset expected = head.load();
    do {
      node_at(offset_of(i)).next = expected.offset;
    } while (!head.compare_exchange(expected, offset_of(i)));
  };
  for (int i = 1; i <= kNodes; ++i) {
    arena[static_cast<std::size_t>(i)].id = static_cast<std::uint64_t>(i);
    push(i);
  }
  std::vector<std::vector<std::uint64_t>> popped(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (;;) {
        TaggedOffset expected = head.load();
        std::uint64_t next = 0;
        do {
          if (expected.offset == 0) return;
          next = node_at(expected.offset).next;
        } while (!head.compare_exchange(expected, next));
        std::uint64_t id = node_at(expected.offset).id;
        popped[static_cast<std::size_t>(t)].push_back(id);
        if (id % 3 == 0) {  // push some back to make ABA likely without tags
          node_at(expected.offset).id += 1'000'000;
          push(static_cast<int>(expected.offset / sizeof(StackNode)));
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  // A thread may have found the stack empty while another was pushing back.
  for (TaggedOffset top = head.load(); top.offset != 0; top = head.load()) {
    popped[0].push_back(node_at(top.offset).id);
    ASSERT_TRUE(head.compare_exchange(top, node_at(top.offset).next));
  }
  std::vector<std::uint64_t> all;
  for (auto& p : popped) all.insert(all.end(), p.begin(), p.end());
  std::vector<std::uint64_t> final_ids;
  for (std::uint64_t id : all) {
    if (id % 3 != 0 || id > 1'000'000) final_ids.push_back(id % 1'000'000);
  }
  std::sort(final_ids.begin(), final_ids.end());
  ASSERT_EQ(final_ids.size(), static_cast<std::size_t>(kNodes));
  for (int i = 0; i < kNodes; ++i)
    EXPECT_EQ(final_ids[static_cast<std::size_t>(i)], static_cast<std::uint64_t>(i + 1));
}

TEST(TypeNameTest, NamesTypesAsTheCompilerSpellsThem) {
  EXPECT_EQ(type_name<int>(), "int");
  EXPECT_NE(type_name<Node>().find("Node"), std::string_view::npos) << type_name<Node>();
  EXPECT_NE(type_name<Node>(), type_name<offset_ptr<Node>>());
}

}  // namespace
}  // namespace shmutils
