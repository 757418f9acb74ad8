// shmutils::properties::models::LockArena — what the lock models keep in
// their segment: the lock under test and which worker process is which, with
// the two steps every lock model repeats (taking with repair, naming the
// holder).
#pragma once

#include <new>

#include "shmutils/properties/models/lock_results.hpp"
#include "shmutils/properties/models/worker_pids.hpp"
#include "shmutils/shm/lock_result.hpp"
#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::properties::models {

template <class Lock>
struct LockArena {
  Lock lock;
  WorkerPids workers;

  static LockArena& in(Segment& segment) {
    return *reinterpret_cast<LockArena*>(segment.user_area().data());
  }
  static void construct(Segment& segment) { new (segment.user_area().data()) LockArena{}; }

  // try_acquire as an outcome; an OwnerDied take is repaired (nothing to
  // repair but the mark) so the worker holds a consistent lock.
  LockOutcome try_take() {
    switch (lock.try_acquire()) {
      case LockResult::Acquired: return LockOutcome::Acquired;
      case LockResult::OwnerDied: lock.mark_consistent(); return LockOutcome::OwnerDied;
      default: return LockOutcome::Busy;
    }
  }
  // The worker holding it (from outside), or kNone.
  int worker_of(const LockHolder& holder) const {
    return holder.tid == 0 ? WorkerPids::kNone : workers.worker_of(holder.pid);
  }
};

}  // namespace shmutils::properties::models
