// shmutils::properties::models::RecursiveMutexSpec — RecursiveMutex as a
// shared state machine: nested holds by one worker, releases that keep it
// held until the last one, deaths at any depth.
#pragma once

#include <rapidcheck.h>

#include "shmutils/properties/generators.hpp"

#include <ostream>

#include "shmutils/properties/models/lock_arena.hpp"
#include "shmutils/shm/recursive_mutex.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::properties::models {

struct RecursiveMutexSpec {
  using Shared = LockArena<RecursiveMutex>;
  // What can be read from outside the holder: who holds it, and whether the
  // last holder died. The depth only the holder can see (its results show it).
  struct Visible {
    int holder = WorkerPids::kNone;
    bool owner_died = false;
    bool operator==(const Visible&) const = default;
    friend std::ostream& operator<<(std::ostream& os, const Visible& v) {
      if (v.holder == WorkerPids::kNone)
        os << "free";
      else
        os << "held by worker " << v.holder;
      return os << (v.owner_died ? " (owner died)" : "");
    }
  };
  struct Model {
    Visible visible;
    unsigned depth = 0;
    bool operator==(const Model&) const = default;
    friend std::ostream& operator<<(std::ostream& os, const Model& m) {
      return os << m.visible << " depth " << m.depth;
    }
  };
  enum class Op { TryLock, Unlock };
  using Result = LockOutcome;

  static Model initial_model() { return {}; }
  static rc::Gen<Op> op(const Model&) { return element_towards_first({Op::TryLock, Op::Unlock}); }

  static Result apply(Op op, unsigned worker, Model& m) {
    const int w = static_cast<int>(worker);
    if (op == Op::TryLock) {
      if (m.visible.holder == w) {
        ++m.depth;
        return LockOutcome::Acquired;
      }
      if (m.visible.holder != WorkerPids::kNone) return LockOutcome::Busy;
      m.visible.holder = w;
      m.depth = 1;
      return std::exchange(m.visible.owner_died, false) ? LockOutcome::OwnerDied
                                                        : LockOutcome::Acquired;
    }
    if (m.visible.holder != w) return LockOutcome::NotHeld;
    if (--m.depth > 0) return LockOutcome::StillHeld;
    m.visible.holder = WorkerPids::kNone;
    return LockOutcome::Released;
  }
  static void on_kill(unsigned worker, Model& m) {
    if (m.visible.holder == static_cast<int>(worker)) m = {{WorkerPids::kNone, true}, 0};
  }
  static Visible observed(const Model& m) { return m.visible; }

  static void setup(Segment& segment) { Shared::construct(segment); }
  static Result run(Op op, unsigned worker, Segment& segment) {
    Shared& s = Shared::in(segment);
    s.workers.record(worker);
    if (op == Op::TryLock) {
      return s.try_take();
    }
    std::uint32_t depth = s.lock.depth();
    if (depth == 0) return LockOutcome::NotHeld;
    s.lock.release();
    return depth > 1 ? LockOutcome::StillHeld : LockOutcome::Released;
  }
  static Visible observe(Segment& segment) {
    Shared& s = Shared::in(segment);
    LockHolder h = s.lock.holder();
    return {s.worker_of(h), h.tid == 0 && h.owner_died};
  }
};

inline std::ostream& operator<<(std::ostream& os, RecursiveMutexSpec::Op op) {
  return os << (op == RecursiveMutexSpec::Op::TryLock ? "try_lock" : "unlock");
}

}  // namespace shmutils::properties::models
