// shmutils::RepairingLock — the lock of a structure that lives in a heap: a
// robust Mutex that also records which process holds it, so that after the
// holder dies the next one first lets the heap settle what the dead process had
// in flight (Heap::await_reap), then runs the structure's repair.
//
// Contract
//   Lives:       inside a segment, next to the data it protects; zero-filled =
//                unlocked and consistent.
//   Order:       the heap's reaper finishes or undoes the dead holder's
//                allocate-into / publish / free_from before repair() looks at
//                the locations involved (see Heap, "No leak"); repair() then
//                needs to handle only states the structure itself can be in.
//   Repair:      must be idempotent (a repairer can die too).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/mutex.hpp"

namespace shmutils {

struct RepairingLock {
  Mutex mutex;
  // The registry claim (SlotClaim::packed) of the process inside, 0 when free:
  // a pid would not tell which process died when pids repeat across PID
  // namespaces.
  std::atomic<std::uint64_t> holder;
};

class [[nodiscard]] RepairingGuard {
 public:
  // Blocks until held, at most the heap's lock timeout (then Error(Timeout)
  // naming the holder); runs repair() first when the previous holder died.
  template <class Repair>
  RepairingGuard(RepairingLock& lock, const Heap& heap, Repair&& repair)
      : lock_(lock),
        guard_(lock.mutex,
               lock.mutex.acquire_within(heap.lock_timeout(), "lock of a shared structure")) {
    settle(heap, repair);
  }
  // Adopts an acquisition made with a deadline (result must hold the lock).
  template <class Repair>
  RepairingGuard(RepairingLock& lock, LockResult adopted, const Heap& heap, Repair&& repair)
      : lock_(lock), guard_(lock.mutex, adopted) {
    settle(heap, repair);
  }
  ~RepairingGuard() {
    if (guard_.owns_lock()) lock_.holder.store(0, std::memory_order_release);
  }
  RepairingGuard(const RepairingGuard&) = delete;
  RepairingGuard& operator=(const RepairingGuard&) = delete;

  // For condition variables; after a wait, call settle() again (the holder
  // may have changed and died while this process slept).
  MutexGuard& mutex_guard() noexcept { return guard_; }
  template <class Repair>
  void settle(const Heap& heap, Repair&& repair) {
    if (guard_.owner_died()) {
      heap.await_reap(SlotClaim::unpack(lock_.holder.load(std::memory_order_acquire)));
      repair();
      guard_.mark_consistent();
    }
    lock_.holder.store(heap.claim().packed(), std::memory_order_release);
  }

 private:
  RepairingLock& lock_;
  MutexGuard guard_;
};

}  // namespace shmutils
