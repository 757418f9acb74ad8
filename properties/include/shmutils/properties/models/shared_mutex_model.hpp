// shmutils::properties::models::SharedMutexSpec — SharedMutex as a shared
// state machine: exclusive and shared holds by several workers, and deaths
// of writers (the next exclusive taker repairs; readers wait for that when
// the writer died writing) and of readers (their counts are taken back by
// the next writer).
#pragma once

#include <rapidcheck.h>

#include "shmutils/properties/generators.hpp"

#include <bitset>
#include <ostream>

#include "shmutils/properties/models/lock_arena.hpp"
#include "shmutils/shm/segment.hpp"
#include "shmutils/shm/shared_mutex.hpp"

namespace shmutils::properties::models {

struct SharedMutexSpec {
  using Shared = LockArena<SharedMutex>;
  struct Model {
    int writer = WorkerPids::kNone;
    std::uint32_t readers = 0;     // bit w: worker w holds it shared
    bool readers_blocked = false;  // a writer died while writing: no reader until repaired
    bool repair_due = false;       // the next exclusive taker is told OwnerDied
    bool operator==(const Model&) const = default;
    friend std::ostream& operator<<(std::ostream& os, const Model& m) {
      if (m.writer != WorkerPids::kNone)
        os << "written by worker " << m.writer;
      else if (m.readers != 0)
        os << "read by workers " << std::bitset<8>(m.readers);
      else
        os << "free";
      if (m.readers_blocked) os << " (writer died writing)";
      return os << (m.repair_due ? " (repair due)" : "");
    }
  };
  enum class Op { TryLock, Unlock, TryLockShared, UnlockShared };
  using Result = LockOutcome;

  static Model initial_model() { return {}; }
  static rc::Gen<Op> op(const Model&) {
    return element_towards_first({Op::TryLock, Op::Unlock, Op::TryLockShared, Op::UnlockShared});
  }

  static Result apply(Op op, unsigned worker, Model& m) {
    const int w = static_cast<int>(worker);
    const std::uint32_t bit = 1U << worker;
    const bool holds = m.writer == w || (m.readers & bit) != 0;
    switch (op) {
      case Op::TryLock:
        if (holds) return LockOutcome::AlreadyHeld;
        if (m.writer != WorkerPids::kNone || m.readers != 0) return LockOutcome::Busy;
        m.writer = w;
        m.readers_blocked = false;
        return std::exchange(m.repair_due, false) ? LockOutcome::OwnerDied : LockOutcome::Acquired;
      case Op::TryLockShared:
        if (holds) return LockOutcome::AlreadyHeld;
        if (m.writer != WorkerPids::kNone || m.readers_blocked) return LockOutcome::Busy;
        m.readers |= bit;
        return LockOutcome::Acquired;
      case Op::Unlock:
        if (m.writer != w) return LockOutcome::NotHeld;
        m.writer = WorkerPids::kNone;
        return LockOutcome::Released;
      case Op::UnlockShared:
        if ((m.readers & bit) == 0) return LockOutcome::NotHeld;
        m.readers &= ~bit;
        return LockOutcome::Released;
    }
    return LockOutcome::NotHeld;
  }
  static void on_kill(unsigned worker, Model& m) {
    m.readers &= ~(1U << worker);  // a dead reader's count is reclaimed
    if (m.writer == static_cast<int>(worker)) {
      m.writer = WorkerPids::kNone;
      m.readers_blocked = true;
      m.repair_due = true;
    }
  }
  // A writer killed inside try_lock holds the writer mutex before it blocks
  // readers; one killed inside unlock has already let readers in. Either
  // way the next exclusive taker is told OwnerDied while readers go on.
  static std::vector<Model> partial(Op op, unsigned worker, const Model& m) {
    const int w = static_cast<int>(worker);
    const bool holds = m.writer == w || (m.readers & (1U << worker)) != 0;
    if ((op == Op::TryLock && !holds) || (op == Op::Unlock && m.writer == w)) {
      Model middle = m;
      if (op == Op::Unlock) middle.writer = WorkerPids::kNone;
      if (op == Op::Unlock) middle.readers_blocked = false;
      middle.repair_due = true;
      return {middle};
    }
    return {};
  }

  // How this worker process holds the lock (process-local: one per worker).
  enum class Hold { None, Exclusive, Shared };
  static Hold& my_hold() {
    static Hold hold = Hold::None;
    return hold;
  }

  static void setup(Segment& segment) { Shared::construct(segment); }
  static Result run(Op op, unsigned worker, Segment& segment) {
    Shared& s = Shared::in(segment);
    s.workers.record(worker);
    Hold& hold = my_hold();
    switch (op) {
      case Op::TryLock:
        if (hold != Hold::None) return LockOutcome::AlreadyHeld;
        if (LockOutcome taken = s.try_take(); taken != LockOutcome::Busy) {
          hold = Hold::Exclusive;
          return taken;
        }
        return LockOutcome::Busy;
      case Op::TryLockShared:
        if (hold != Hold::None) return LockOutcome::AlreadyHeld;
        if (s.lock.try_acquire_shared() != LockResult::Acquired) return LockOutcome::Busy;
        hold = Hold::Shared;
        return LockOutcome::Acquired;
      case Op::Unlock:
        if (hold != Hold::Exclusive) return LockOutcome::NotHeld;
        s.lock.release();
        hold = Hold::None;
        return LockOutcome::Released;
      case Op::UnlockShared:
        if (hold != Hold::Shared) return LockOutcome::NotHeld;
        s.lock.release_shared();
        hold = Hold::None;
        return LockOutcome::Released;
    }
    return LockOutcome::NotHeld;
  }
  // The writer, from outside; readers are judged by the results.
  struct Visible {
    int writer = WorkerPids::kNone;
    bool operator==(const Visible&) const = default;
    friend std::ostream& operator<<(std::ostream& os, const Visible& v) {
      return v.writer == WorkerPids::kNone ? os << "no writer" : os << "writer " << v.writer;
    }
  };
  static Visible observed(const Model& m) { return {m.writer}; }
  static Visible observe(Segment& segment) {
    Shared& s = Shared::in(segment);
    return {s.worker_of(s.lock.writer())};
  }
};

inline std::ostream& operator<<(std::ostream& os, SharedMutexSpec::Op op) {
  constexpr const char* kNames[] = {"try_lock", "unlock", "try_lock_shared", "unlock_shared"};
  return os << kNames[static_cast<int>(op)];
}

}  // namespace shmutils::properties::models
