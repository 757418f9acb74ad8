// Offset pointers under remapping, as a property: a list of random values
// built in one process is walked and relinked (reversed) by a series of
// processes, each mapping the segment at its own random address with the
// inherited range guarded; every process must see the list the previous one
// left. Each case runs in a crash-proof child: a stale absolute pointer
// faults, and the fault is a shrunk counterexample.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <set>

#include "shmutils/fixtures/children.hpp"
#include "shmutils/properties/crash_proof.hpp"
#include "shmutils/shm/offset_ptr.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::properties {
namespace {

struct Node {
  std::uint64_t value;
  offset_ptr<Node> next;
};
struct Root {
  offset_ptr<Node> head;
  std::array<std::uintptr_t, 8> bases;  // where each process mapped the segment
};

Root& root_of(Segment& segment) { return *reinterpret_cast<Root*>(segment.user_area().data()); }

std::vector<std::uint64_t> walk(Root& root) {
  std::vector<std::uint64_t> seen;
  for (Node* node = root.head.get(); node != nullptr && seen.size() <= 4096;
       node = node->next.get())
    seen.push_back(node->value);
  return seen;
}

void reverse(Root& root) {
  Node* reversed = nullptr;
  for (Node* node = root.head.get(); node != nullptr;) {
    Node* next = node->next.get();
    node->next = reversed;
    reversed = node;
    node = next;
  }
  root.head = reversed;
}

RC_GTEST_PROP(OffsetPtrProperty, ListsRelinkedAtEveryAddressReadTheSameEverywhere, ()) {
  const auto values =
      *rc::gen::container<std::vector<std::uint64_t>>(rc::gen::arbitrary<std::uint64_t>());
  const auto processes = *rc::gen::inRange<unsigned>(1, 6);
  run_case_in_child([&] {
    Segment segment = Segment::create_anonymous(1 << 20);
    Root& root = *new (segment.user_area().data()) Root{};
    auto* nodes = reinterpret_cast<Node*>(segment.user_area().data() + sizeof(Root));
    for (std::size_t i = values.size(); i-- > 0;) {
      new (&nodes[i]) Node{values[i], root.head};
      root.head = &nodes[i];
    }
    std::vector<std::uint64_t> expected = values;
    for (unsigned p = 0; p < processes; ++p) {
      fixtures::ChildrenOptions options;
      options.segment = &segment;  // each child maps it at a random address
      fixtures::run_children(
          1,
          [&](fixtures::ChildContext& child) {
            Root& mine = root_of(child.segment());
            EXPECT_EQ(walk(mine), expected) << "process " << p << " read another list";
            reverse(mine);
            mine.bases.at(p) = reinterpret_cast<std::uintptr_t>(child.segment().base());
          },
          options);
      std::reverse(expected.begin(), expected.end());
      RC_ASSERT(walk(root) == expected);
    }
    std::set<std::uintptr_t> bases(root.bases.begin(), root.bases.begin() + processes);
    bases.insert(reinterpret_cast<std::uintptr_t>(segment.base()));
    RC_ASSERT(bases.size() == processes + 1U);  // every process at its own address
  });
}

}  // namespace
}  // namespace shmutils::properties
