// A list linked by offset pointers inside a segment's user area: the data the
// pass-to-process tests hand to forked, exec'd and socket-receiving children.
#pragma once

#include <cstdint>
#include <new>

#include "shmutils/shm/offset_ptr.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::test {

struct ListNode {
  std::uint64_t value;
  offset_ptr<ListNode> next;
};

struct ListRoot {
  offset_ptr<ListNode> head;
  std::uint64_t length;
  std::uint64_t walker_base;  // where the walking process mapped the segment
  std::uint64_t walked;       // nodes the walker visited
};

// Builds root + `length` nodes (values 0..length-1) at the start of the user area.
inline ListRoot* build_list(Segment& segment, std::uint64_t length) {
  std::byte* area = segment.user_area().data();
  auto* root = new (area) ListRoot{};
  auto* nodes = reinterpret_cast<ListNode*>(area + sizeof(ListRoot));
  for (std::uint64_t i = 0; i < length; ++i) {
    new (&nodes[i]) ListNode{i, nullptr};
    if (i > 0) nodes[i - 1].next = &nodes[i];
  }
  root->head = length > 0 ? &nodes[0] : nullptr;
  root->length = length;
  return root;
}

// Walks the list in this process's attachment, checks value == index + `base`,
// adds 1000 to each value and records where this process mapped the segment.
// Returns 0 on success, a distinct code per kind of mismatch.
inline int walk_and_change(const Segment& segment, ListRoot* root, std::uint64_t base) {
  std::uint64_t index = 0;
  for (ListNode* node = root->head.get(); node != nullptr; node = node->next.get()) {
    if (!segment.mapping().contains(node)) return 3;  // a link escaped the segment
    if (node->value != index + base) return 4;
    node->value += 1000;
    ++index;
  }
  if (index != root->length) return 5;
  root->walked = index;
  root->walker_base = reinterpret_cast<std::uintptr_t>(segment.base());
  return 0;
}

}  // namespace shmutils::test
