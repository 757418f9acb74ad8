// The allocator's locks: the heap lock and the class locks (a dead holder's
// state is repaired before the lock is handed on), and a slot's turn.
#include "heap_view.hpp"
#include "shmutils/shm/detail/sys.hpp"

namespace shmutils::detail {

HeapLock::HeapLock(HeapView& v) : v_(v) {
  settle(v.control->heap_lock.acquire_within(v.lock_timeout,
                                             "heap lock of segment \"" + v.segment + "\""));
}

HeapLock::HeapLock(HeapView& v, std::uint64_t deadline_ns) : v_(v) {
  settle(v.control->heap_lock.acquire_until(std::chrono::steady_clock::time_point(
      std::chrono::nanoseconds(static_cast<std::int64_t>(deadline_ns)))));
}

void HeapLock::settle(LockResult result) {
  held_ = holds_lock(result);
  if (result == LockResult::OwnerDied) {
    try {
      repair_blocks(v_);
    } catch (const Error&) {
      held_ = false;
      v_.control->heap_lock.abandon_repair();
      v_.control->heap_lock.release();
      throw;
    }
    v_.control->heap_lock.mark_consistent();
  }
}

bool repair_class(HeapView& v, std::uint32_t class_index, std::uint64_t deadline_ns) {
  std::optional<HeapLock> heap_lock;
  if (deadline_ns == 0) {
    heap_lock.emplace(v);
  } else {
    heap_lock.emplace(v, deadline_ns);
    if (!heap_lock->held()) return false;
  }
  rebuild_classes(v, std::uint64_t{1} << class_index);
  return true;
}

ClassLock::ClassLock(HeapView& v, std::uint32_t class_index) : v_(v), class_index_(class_index) {
  Mutex& lock = v.control->classes[class_index].lock;
  LockResult result =
      lock.acquire_within(v.lock_timeout, "size-class lock " + std::to_string(class_index) +
                                              " of segment \"" + v.segment + "\"");
  if (result == LockResult::OwnerDied) {
    try {
      repair_class(v, class_index);
    } catch (...) {
      lock.release();
      throw;
    }
    lock.mark_consistent();
  }
}

bool take_turn(std::atomic<std::uint32_t>& turn, std::uint32_t self, int probe_fd,
               std::uint64_t deadline_ns) {
  for (unsigned spins = 0;; ++spins) {
    std::uint32_t holder = 0;
    if (turn.compare_exchange_weak(holder, self, std::memory_order_acquire)) return true;
    if (spins < 64) continue;
    sys::yield();
    if (spins % 256 == 0 && (holder & kAuditorTurn) != 0 && holder != self && probe_fd >= 0 &&
        !sys::ofd_byte_locked_elsewhere(probe_fd, kAuditorLockOffset + (holder & ~kAuditorTurn),
                                        "heap auditor")) {
      // Held by an auditor that no longer exists (killed mid-freeze).
      if (turn.compare_exchange_strong(holder, self, std::memory_order_acquire)) return true;
    }
    if (deadline_ns != 0 && spins % 64 == 0 && sys::monotonic_ns() >= deadline_ns) return false;
  }
}

}  // namespace shmutils::detail
