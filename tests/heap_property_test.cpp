// Properties of the heap over random operation scripts (rapidcheck shrinks a
// failing script to a minimal one): live blocks never overlap and keep their
// contents, the figures match a model exactly, every error leaves the heap
// intact, and a process killed at a random step of a random script leaks
// nothing once reaped.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "heap_test_support.hpp"
#include "shmutils/fixtures/children.hpp"
#include "shmutils/properties/schedules.hpp"

namespace shmutils::test {
namespace {

using properties::AllocationStep;
using Kind = AllocationStep::Kind;

// Every fourth free also frees the block a second time: a DoubleFree error.
bool frees_twice(const AllocationStep& step) { return step.pick % 4 == 0; }

Segment make_heap_segment() {
  SegmentOptions options;
  options.heap = true;
  options.user_size = std::size_t{64} * 1024;
  return Segment::create_anonymous(4 << 20, options);
}

RC_GTEST_PROP(HeapProperty, LiveBlocksAreDisjointIntactAndCountedExactly, ()) {
  const auto steps = *properties::allocation_script();
  Segment segment = make_heap_segment();
  Heap& heap = segment.heap();
  std::map<std::uint64_t, std::pair<std::size_t, std::uint8_t>> live;  // offset -> size, fill
  std::vector<Reservation> pending;
  std::uint8_t fill = 1;
  auto remember = [&](std::uint64_t offset, std::size_t size) {
    std::memset(heap.pointer(offset), fill, size);
    live[offset] = {size, fill++};
  };
  // A block overlapping another overwrites it: each block's bytes are checked
  // when it is freed and at the end.
  auto intact = [&](std::uint64_t offset) {
    const auto& block = live.at(offset);
    const std::byte* p = heap.pointer(offset);
    return std::all_of(p, p + block.first,
                       [&](std::byte b) { return b == std::byte{block.second}; });
  };
  for (const AllocationStep& step : steps) {
    switch (step.kind) {
      case Kind::Allocate:
        if (std::uint64_t offset = heap.try_allocate(step.size, step.alignment); offset != 0) {
          RC_ASSERT(reinterpret_cast<std::uintptr_t>(heap.pointer(offset)) % step.alignment == 0U);
          remember(offset, step.size);
        }
        break;
      case Kind::Reserve:
        try {
          pending.push_back(heap.reserve(step.size, step.alignment));
          std::memset(pending.back().data(), 0xEE, step.size);
        } catch (const Error& e) {
          RC_ASSERT(e.kind() == ErrorKind::OutOfMemory);
        }
        break;
      case Kind::Publish:
        if (!pending.empty()) {
          Reservation r = std::move(pending[step.pick % pending.size()]);
          pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(step.pick % pending.size()));
          std::uint64_t offset = r.publish();
          remember(offset, 1);
        }
        break;
      case Kind::Cancel:
        if (!pending.empty())
          pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(step.pick % pending.size()));
        break;
      case Kind::Free:
        if (!live.empty()) {
          auto it = std::next(live.begin(), static_cast<std::ptrdiff_t>(step.pick % live.size()));
          std::uint64_t offset = it->first;
          RC_ASSERT(intact(offset));
          heap.free(offset);
          live.erase(it);
          if (frees_twice(step)) {
            RC_ASSERT(kind_of([&] { heap.free(offset); }) == ErrorKind::DoubleFree);
          }
        }
        break;
    }
    std::uint64_t end = 0;
    std::uint64_t expected_live = 0;
    for (const auto& [offset, entry] : live) {
      RC_ASSERT(offset >= end);  // disjoint
      end = offset + heap.usable_size(offset);
      expected_live += heap.usable_size(offset);
    }
    for (const Reservation& r : pending) expected_live += heap.usable_size(r.offset());
    RC_ASSERT(heap.stats().live == expected_live);
  }
  for (const auto& [offset, entry] : live) RC_ASSERT(intact(offset));
  HeapAudit audit = segment.audit();
  RC_ASSERT(audit.ok());
  const HeapStats& s = audit.stats;
  RC_ASSERT(s.free + s.live + s.cached + s.metadata == s.capacity);
}

RC_GTEST_PROP(HeapProperty, AProcessKilledAtAnyStepOfAnyScriptLeaksNothing, ()) {
  const auto steps = *properties::allocation_script();
  // One kill, during a step or after the last (the end counts as a step).
  const auto schedule = *properties::kill_schedule(steps.size() + 1, 1, 1);
  RC_PRE(!schedule.kills.empty());
  const std::size_t kill_at = schedule.kills[0].at_step;
  Segment segment = make_heap_segment();
  auto* table = reinterpret_cast<std::atomic<std::uint64_t>*>(segment.user_area().data());
  fixtures::ChildOutcome child = fixtures::run_in_child(
      [&](fixtures::ChildContext&) {
        Segment own = Segment::attach(segment.descriptor());
        Heap& heap = own.heap();
        auto* slots = reinterpret_cast<std::atomic<std::uint64_t>*>(own.user_area().data());
        std::vector<Reservation> pending;
        for (std::size_t i = 0; i < steps.size(); ++i) {
          if (i == kill_at) ::kill(::getpid(), SIGKILL);
          const AllocationStep& step = steps[i];
          std::atomic<std::uint64_t>& slot = slots[step.pick % 256];
          switch (step.kind) {
            case Kind::Allocate:
              if (slot.load() == 0) {
                try {
                  heap.allocate_into(slot, step.size, step.alignment);
                } catch (const Error&) {
                }
              }
              break;
            case Kind::Reserve: try { pending.push_back(heap.reserve(step.size, step.alignment));
              } catch (const Error&) {
              }
              break;
            case Kind::Publish:
              if (!pending.empty() && slot.load() == 0) {
                pending.back().publish(slot);
                pending.pop_back();
              }
              break;
            case Kind::Cancel:
              if (!pending.empty()) pending.pop_back();
              break;
            case Kind::Free:
              if (slot.load() != 0) heap.free_from(slot);
              break;
          }
        }
        ::kill(::getpid(), SIGKILL);  // the end counts as a step too: die holding what is held
      },
      {.fail_test = false, .expected_signal = SIGKILL});
  RC_ASSERT(child.ok());
  segment.reap_dead();
  Heap& heap = segment.heap();
  std::uint64_t reachable = 0;
  for (std::size_t i = 0; i < 256; ++i) {
    if (std::uint64_t offset = table[i].load(); offset != 0) reachable += heap.usable_size(offset);
  }
  HeapStats s = heap.stats();
  RC_ASSERT(s.live == reachable);  // nothing leaked, nothing freed that is still stored
  RC_ASSERT(s.cached == 0U);
  RC_ASSERT(segment.audit().ok());
}

}  // namespace
}  // namespace shmutils::test
