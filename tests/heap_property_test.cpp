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

namespace shmutils::test {
namespace {

struct Step {
  enum Kind { Allocate, Reserve, PublishPending, CancelPending, Free, DoubleFree } kind;
  std::size_t size;
  std::size_t alignment;
  std::size_t pick;
};

rc::Gen<Step> step_gen() {
  return rc::gen::build<Step>(
      rc::gen::set(&Step::kind, rc::gen::element(Step::Allocate, Step::Allocate, Step::Reserve,
                                                 Step::PublishPending, Step::CancelPending,
                                                 Step::Free, Step::Free, Step::DoubleFree)),
      rc::gen::set(&Step::size, rc::gen::oneOf(rc::gen::inRange<std::size_t>(1, 4097),
                                               rc::gen::inRange<std::size_t>(4097, 200'000))),
      rc::gen::set(&Step::alignment, rc::gen::element<std::size_t>(16, 16, 16, 64, 4096)),
      rc::gen::set(&Step::pick, rc::gen::arbitrary<std::size_t>()));
}

Segment make_heap_segment() {
  SegmentOptions options;
  options.heap = true;
  options.user_size = 64 * 1024;
  return Segment::create_anonymous(4 << 20, options);
}

RC_GTEST_PROP(HeapProperty, LiveBlocksAreDisjointIntactAndCountedExactly, ()) {
  const auto steps = *rc::gen::container<std::vector<Step>>(step_gen());
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
    const auto& [size, value] = live.at(offset);
    const std::byte* p = heap.pointer(offset);
    return std::all_of(p, p + size, [&](std::byte b) { return b == std::byte{value}; });
  };
  for (const Step& step : steps) {
    switch (step.kind) {
      case Step::Allocate:
        if (std::uint64_t offset = heap.try_allocate(step.size, step.alignment); offset != 0) {
          RC_ASSERT(reinterpret_cast<std::uintptr_t>(heap.pointer(offset)) % step.alignment == 0U);
          remember(offset, step.size);
        }
        break;
      case Step::Reserve:
        try {
          pending.push_back(heap.reserve(step.size, step.alignment));
          std::memset(pending.back().data(), 0xEE, step.size);
        } catch (const Error& e) {
          RC_ASSERT(e.kind() == ErrorKind::OutOfMemory);
        }
        break;
      case Step::PublishPending:
        if (!pending.empty()) {
          Reservation r = std::move(pending[step.pick % pending.size()]);
          pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(step.pick % pending.size()));
          std::uint64_t offset = r.publish();
          remember(offset, 1);
        }
        break;
      case Step::CancelPending:
        if (!pending.empty())
          pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(step.pick % pending.size()));
        break;
      case Step::Free:
      case Step::DoubleFree:
        if (!live.empty()) {
          auto it = std::next(live.begin(), static_cast<std::ptrdiff_t>(step.pick % live.size()));
          std::uint64_t offset = it->first;
          RC_ASSERT(intact(offset));
          heap.free(offset);
          live.erase(it);
          if (step.kind == Step::DoubleFree) {
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
  const auto steps = *rc::gen::container<std::vector<Step>>(step_gen());
  const auto kill_at = *rc::gen::inRange<std::size_t>(0, steps.size() + 1);
  Segment segment = make_heap_segment();
  auto* table = reinterpret_cast<std::atomic<std::uint64_t>*>(segment.user_area().data());
  auto status = run_child([&] {
    Segment own = Segment::attach(segment.descriptor());
    Heap& heap = own.heap();
    auto* slots = reinterpret_cast<std::atomic<std::uint64_t>*>(own.user_area().data());
    std::vector<Reservation> pending;
    for (std::size_t i = 0; i < steps.size(); ++i) {
      if (i == kill_at) ::kill(::getpid(), SIGKILL);
      const Step& step = steps[i];
      std::atomic<std::uint64_t>& slot = slots[step.pick % 256];
      switch (step.kind) {
        case Step::Allocate:
          if (slot.load() == 0) {
            try {
              heap.allocate_into(slot, step.size, step.alignment);
            } catch (const Error&) {
            }
          }
          break;
        case Step::Reserve: try { pending.push_back(heap.reserve(step.size, step.alignment));
          } catch (const Error&) {
          }
          break;
        case Step::PublishPending:
          if (!pending.empty() && slot.load() == 0) {
            pending.back().publish(slot);
            pending.pop_back();
          }
          break;
        case Step::CancelPending:
          if (!pending.empty()) pending.pop_back();
          break;
        case Step::Free:
        case Step::DoubleFree:
          if (slot.load() != 0) heap.free_from(slot);
          break;
      }
    }
    ::kill(::getpid(), SIGKILL);  // the end counts as a step too: die holding what is held
    return 0;
  });
  RC_ASSERT(status.signal == SIGKILL);
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
