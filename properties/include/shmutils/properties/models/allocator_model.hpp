// shmutils::properties::models::AllocatorSpec — the crash-safe heap as a
// shared state machine: workers allocate into, reserve-and-publish into and
// free from a table of locations, and die anywhere (at any heap fault point).
// The oracle after every step: the table holds exactly the allocations the
// model says, and the heap's live bytes are exactly the bytes the table
// reaches — nothing leaked by a death, nothing freed that is still stored.
#pragma once

#include <rapidcheck.h>

#include "shmutils/properties/generators.hpp"

#include <array>
#include <atomic>
#include <bitset>
#include <cstring>
#include <ostream>

#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::properties::models {

struct AllocatorSpec {
  static constexpr std::size_t kSlots = 8;
  using Table = std::array<std::atomic<std::uint64_t>, kSlots>;

  struct Model {
    std::uint32_t occupied = 0;  // bit s: slot s holds an allocation
    bool operator==(const Model&) const = default;
    friend std::ostream& operator<<(std::ostream& os, const Model& m) {
      return os << "slots " << std::bitset<kSlots>(m.occupied);
    }
  };
  enum class Kind : std::uint8_t { AllocateInto, ReservePublish, FreeFrom };
  struct Op {
    Kind kind = Kind::AllocateInto;
    std::uint32_t slot = 0;
    std::uint32_t size = 16;
    friend std::ostream& operator<<(std::ostream& os, const Op& op) {
      constexpr const char* kNames[] = {"allocate_into", "reserve+publish", "free_from"};
      os << kNames[static_cast<int>(op.kind)] << " slot " << op.slot;
      return op.kind == Kind::FreeFrom ? os : os << " (" << op.size << " B)";
    }
  };
  enum class Result : std::uint8_t { Done, Refused };  // refused: slot full / empty

  static std::size_t segment_size() { return 4 << 20; }
  static SegmentOptions segment_options() {
    SegmentOptions options;
    options.heap = true;
    return options;
  }
  static Model initial_model() { return {}; }
  static rc::Gen<Op> op(const Model&) {
    return rc::gen::build<Op>(
        rc::gen::set(&Op::kind, element_towards_first(
                                    {Kind::AllocateInto, Kind::ReservePublish, Kind::FreeFrom})),
        rc::gen::set(&Op::slot, rc::gen::inRange<std::uint32_t>(0, kSlots)),
        rc::gen::set(&Op::size, rc::gen::oneOf(rc::gen::inRange<std::uint32_t>(1, 4097),
                                               rc::gen::inRange<std::uint32_t>(4097, 20'000))));
  }
  static Result apply(const Op& op, unsigned, Model& m) {
    const std::uint32_t bit = 1U << op.slot;
    if (op.kind == Kind::FreeFrom) {
      if ((m.occupied & bit) == 0) return Result::Refused;
      m.occupied &= ~bit;
      return Result::Done;
    }
    if ((m.occupied & bit) != 0) return Result::Refused;
    m.occupied |= bit;
    return Result::Done;
  }

  static Table& table(Segment& segment) {
    return *reinterpret_cast<Table*>(segment.user_area().data());
  }
  static void setup(Segment& segment) { new (segment.user_area().data()) Table{}; }
  static Result run(const Op& op, unsigned, Segment& segment) {
    std::atomic<std::uint64_t>& slot = table(segment).at(op.slot);
    Heap& heap = segment.heap();
    switch (op.kind) {
      case Kind::AllocateInto:
        if (slot.load() != 0) return Result::Refused;
        heap.allocate_into(slot, op.size);
        return Result::Done;
      case Kind::ReservePublish: {
        if (slot.load() != 0) return Result::Refused;
        Reservation reservation = heap.reserve(op.size);
        std::memset(reservation.data(), 0x5A, op.size);
        reservation.publish(slot);
        return Result::Done;
      }
      case Kind::FreeFrom:
        if (slot.load() == 0) return Result::Refused;
        heap.free_from(slot);
        return Result::Done;
    }
    return Result::Refused;
  }
  // Runs after dead workers were reaped: the table must reach every live byte.
  static Model observe(Segment& segment) {
    Heap& heap = segment.heap();
    Model seen;
    std::uint64_t reachable = 0;
    for (std::size_t s = 0; s < kSlots; ++s) {
      if (std::uint64_t offset = table(segment)[s].load(); offset != 0) {
        seen.occupied |= 1U << s;
        reachable += heap.usable_size(offset);
      }
    }
    HeapStats stats = heap.stats();
    RC_ASSERT(stats.live == reachable);  // a leak, or a block freed while stored
    RC_ASSERT(stats.free + stats.live + stats.cached + stats.metadata == stats.capacity);
    return seen;
  }
  static std::vector<std::string> check(Segment& segment) {
    HeapAudit audit = segment.audit();
    return audit.problems;
  }
};

inline std::ostream& operator<<(std::ostream& os, AllocatorSpec::Result r) {
  return os << (r == AllocatorSpec::Result::Done ? "done" : "refused");
}

}  // namespace shmutils::properties::models
