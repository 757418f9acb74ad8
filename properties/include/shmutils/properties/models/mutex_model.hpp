// shmutils::properties::models::MutexSpec — Mutex as a shared state machine:
// workers try to take and release it and die holding it; whoever takes it
// next must be told OwnerDied exactly once.
#pragma once

#include <rapidcheck.h>

#include "shmutils/properties/generators.hpp"

#include <ostream>

#include "shmutils/properties/models/lock_arena.hpp"
#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::properties::models {

struct MutexSpec {
  using Shared = LockArena<Mutex>;
  struct Model {
    int holder = WorkerPids::kNone;
    bool owner_died = false;  // a holder died; the next taker repairs
    bool operator==(const Model&) const = default;
    friend std::ostream& operator<<(std::ostream& os, const Model& m) {
      if (m.holder == WorkerPids::kNone)
        os << "free";
      else
        os << "held by worker " << m.holder;
      return os << (m.owner_died ? " (owner died)" : "");
    }
  };
  enum class Op { TryLock, Unlock };
  using Result = LockOutcome;

  static Model initial_model() { return {}; }
  static rc::Gen<Op> op(const Model&) { return element_towards_first({Op::TryLock, Op::Unlock}); }

  static Result apply(Op op, unsigned worker, Model& m) {
    const int w = static_cast<int>(worker);
    if (op == Op::TryLock) {
      if (m.holder == w) return LockOutcome::AlreadyHeld;
      if (m.holder != WorkerPids::kNone) return LockOutcome::Busy;
      m.holder = w;
      return std::exchange(m.owner_died, false) ? LockOutcome::OwnerDied : LockOutcome::Acquired;
    }
    if (m.holder != w) return LockOutcome::NotHeld;
    m.holder = WorkerPids::kNone;
    return LockOutcome::Released;
  }
  static void on_kill(unsigned worker, Model& m) {
    if (m.holder == static_cast<int>(worker)) m = {WorkerPids::kNone, true};
  }

  static void setup(Segment& segment) { Shared::construct(segment); }
  static Result run(Op op, unsigned worker, Segment& segment) {
    Shared& s = Shared::in(segment);
    s.workers.record(worker);
    if (op == Op::TryLock) {
      if (s.lock.held_by_this_thread()) return LockOutcome::AlreadyHeld;
      return s.try_take();
    }
    if (!s.lock.held_by_this_thread()) return LockOutcome::NotHeld;
    s.lock.release();
    return LockOutcome::Released;
  }
  static Model observe(Segment& segment) {
    Shared& s = Shared::in(segment);
    LockHolder h = s.lock.holder();
    return {s.worker_of(h), h.tid == 0 && h.owner_died};
  }
};

inline std::ostream& operator<<(std::ostream& os, MutexSpec::Op op) {
  return os << (op == MutexSpec::Op::TryLock ? "try_lock" : "unlock");
}

}  // namespace shmutils::properties::models
