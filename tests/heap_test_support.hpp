// Scaffolding for the allocator tests: a fresh anonymous heap segment per test,
// children that attach on their own, a hook that kills a child at the Nth hit
// of a named fault point, and the leak oracle (live bytes == bytes reachable
// from the test's own tables).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "shmutils/framework/kill_at.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/segment.hpp"
#include "test_support.hpp"

namespace shmutils::test {

// Fault hook state for children (set before fork, read in the child).
// The first thing an audit complains about (or notes, when it was incomplete).
inline std::string first_problem(const HeapAudit& audit) {
  if (!audit.problems.empty()) return audit.problems.front();
  std::string notes;
  for (const std::string& note : audit.notes) notes += note + "; ";
  return notes.empty() ? "(none)" : notes;
}

class HeapTest : public ::testing::Test {
 public:
  static constexpr std::size_t kTableSlots = 512;  // per child: offsets of published blocks

  void SetUp() override {
    SegmentOptions options;
    options.heap = true;
    options.user_size = std::size_t{64} * 1024;
    segment_ = Segment::create_anonymous(8 << 20, options);
  }

  Heap& heap() { return segment_.heap(); }

  // Table `index` of atomic offsets in the user area, one per child; a child
  // passes its own attachment (locations must be inside the caller's mapping).
  static std::atomic<std::uint64_t>* table(Segment& attachment, std::size_t index) {
    return reinterpret_cast<std::atomic<std::uint64_t>*>(attachment.user_area().data()) +
           index * kTableSlots;
  }

 protected:
  std::atomic<std::uint64_t>* table(std::size_t index) { return table(segment_, index); }

  // What a child does first: its own attachment (and registry slot).
  Segment attach_child() { return Segment::attach(segment_.descriptor()); }

  // Live bytes that no table entry reaches: 0 unless something leaked. Every
  // table entry must name a live published block (else a test failure: the
  // heap freed something still in use).
  std::uint64_t leaked_bytes(std::size_t tables) {
    std::vector<HeapEntry> live = heap().dump();
    std::uint64_t reachable = 0;
    for (std::size_t t = 0; t < tables; ++t) {
      for (std::size_t i = 0; i < kTableSlots; ++i) {
        std::uint64_t offset = table(t)[i].load();
        if (offset == 0) continue;
        auto found = std::lower_bound(
            live.begin(), live.end(), offset,
            [](const HeapEntry& entry, std::uint64_t value) { return entry.offset < value; });
        if (found == live.end() || found->offset != offset ||
            found->kind != heap::Kind::Published) {
          ADD_FAILURE() << "table " << t << " entry " << i << " holds offset " << offset
                        << ", which is not a live published block";
          continue;
        }
        reachable += found->size;
      }
    }
    std::uint64_t total = 0;
    for (const HeapEntry& entry : live) total += entry.size;
    return total - reachable;
  }

  // Reaps the dead, audits, and reports problems as test failures.
  void expect_healthy(const std::string& context) {
    segment_.reap_dead();
    HeapAudit audit = segment_.audit(30'000);  // a deadline: waits only for live processes
    EXPECT_TRUE(audit.ok()) << context << ": " << audit.problems.size()
                            << " problems, first: " << first_problem(audit);
    const HeapStats& s = audit.stats;
    EXPECT_EQ(s.free + s.live + s.cached + s.metadata, s.capacity) << context;
  }

  Segment segment_;
};

}  // namespace shmutils::test
