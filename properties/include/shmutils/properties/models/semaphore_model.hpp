// shmutils::properties::models::SemaphoreSpec — Semaphore as a shared state
// machine: units taken and given back by several workers; a dead worker's
// units come back when they are reclaimed (recover), never twice, never lost.
#pragma once

#include <rapidcheck.h>

#include <array>
#include <ostream>

#include "shmutils/shm/segment.hpp"
#include "shmutils/shm/semaphore.hpp"

namespace shmutils::properties::models {

struct SemaphoreSpec {
  static constexpr std::uint32_t kCapacity = 3;
  struct Model {
    std::uint32_t available = kCapacity;
    std::array<std::uint32_t, 8> held{};  // per worker
    bool operator==(const Model&) const = default;
    friend std::ostream& operator<<(std::ostream& os, const Model& m) {
      os << m.available << " available";
      for (std::size_t w = 0; w < m.held.size(); ++w)
        if (m.held[w] != 0) os << ", worker " << w << " holds " << m.held[w];
      return os;
    }
  };
  struct Op {
    bool take = true;
    std::uint32_t units = 1;
    friend std::ostream& operator<<(std::ostream& os, const Op& op) {
      return os << (op.take ? "try_acquire " : "release ") << op.units;
    }
  };
  enum class Result : std::uint8_t { Done, Refused };

  static Model initial_model() { return {}; }
  static rc::Gen<Op> op(const Model&) {
    return rc::gen::build<Op>(rc::gen::set(&Op::take),
                              rc::gen::set(&Op::units, rc::gen::inRange<std::uint32_t>(1, 3)));
  }
  static Result apply(const Op& op, unsigned worker, Model& m) {
    std::uint32_t& mine = m.held.at(worker);
    if (op.take) {
      if (m.available < op.units) return Result::Refused;
      m.available -= op.units;
      mine += op.units;
      return Result::Done;
    }
    if (mine < op.units) return Result::Refused;  // not attempted: it would throw
    mine -= op.units;
    m.available += op.units;
    return Result::Done;
  }
  static void on_kill(unsigned worker, Model& m) {
    m.available += std::exchange(m.held.at(worker), 0);
  }

  static Semaphore& semaphore(Segment& segment) {
    return *reinterpret_cast<Semaphore*>(segment.user_area().data());
  }
  static void setup(Segment& segment) { new (segment.user_area().data()) Semaphore(kCapacity); }
  static Result run(const Op& op, unsigned, Segment& segment) {
    Semaphore& s = semaphore(segment);
    if (op.take) return s.try_acquire(op.units) ? Result::Done : Result::Refused;
    if (s.held_by_this_process() < op.units) return Result::Refused;
    s.release(op.units);
    return Result::Done;
  }
  static void recover(Segment& segment) { semaphore(segment).reclaim_dead(); }

  // From outside: the units available and the units held in all.
  struct Visible {
    std::uint32_t available = 0;
    std::uint64_t held = 0;
    bool operator==(const Visible&) const = default;
    friend std::ostream& operator<<(std::ostream& os, const Visible& v) {
      return os << v.available << " available, " << v.held << " held";
    }
  };
  static Visible observed(const Model& m) {
    std::uint64_t held = 0;
    for (std::uint32_t h : m.held) held += h;
    return {m.available, held};
  }
  static Visible observe(Segment& segment) {
    Semaphore& s = semaphore(segment);
    return {s.available(), s.held_total()};
  }
};

inline std::ostream& operator<<(std::ostream& os, SemaphoreSpec::Result r) {
  return os << (r == SemaphoreSpec::Result::Done ? "done" : "refused");
}

}  // namespace shmutils::properties::models
