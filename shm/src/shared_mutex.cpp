#include "shmutils/shm/shared_mutex.hpp"

#include <climits>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_shared_reader_counted, "shared_mutex.reader_counted");
SHMUTILS_FAULT_POINT(fp_shared_writer_draining, "shared_mutex.writer_draining");

namespace {
constexpr std::uint64_t kReaderCheckNs = 1'000'000;  // a waiting writer's look at dead readers
}  // namespace

bool SharedMutex::drain_readers(std::uint64_t deadline_ns) {
  for (;;) {
    std::uint32_t seen = readers_left_.load(std::memory_order_acquire);
    if (readers_.total() == 0) return true;
    fp_shared_writer_draining.reached();
    readers_.reclaim_dead();
    if (readers_.total() == 0) return true;
    std::uint64_t now = sys::monotonic_ns();
    if (deadline_ns != 0 && now >= deadline_ns) return false;
    std::uint64_t slice_end = now + kReaderCheckNs;
    if (deadline_ns != 0 && deadline_ns < slice_end) slice_end = deadline_ns;
    (void)sys::futex_wait(readers_left_, seen, slice_end);
  }
}

LockResult SharedMutex::exclusive_from(LockResult result, std::uint64_t deadline_ns) {
  if (!holds_lock(result)) return result;
  writer_active_.store(1, std::memory_order_seq_cst);
  if (!drain_readers(deadline_ns)) {
    writer_active_.store(0, std::memory_order_seq_cst);
    writer_.release();
    return LockResult::TimedOut;
  }
  return result;
}

LockResult SharedMutex::acquire() { return exclusive_from(writer_.acquire(), 0); }

LockResult SharedMutex::try_acquire() noexcept {
  LockResult result = writer_.try_acquire();
  if (!holds_lock(result)) return result;
  writer_active_.store(1, std::memory_order_seq_cst);
  if (readers_.total() != 0) {
    try {
      readers_.reclaim_dead();
    } catch (...) {
    }
    if (readers_.total() != 0) {
      writer_active_.store(0, std::memory_order_seq_cst);
      writer_.release();
      return LockResult::Busy;
    }
  }
  return result;
}

LockResult SharedMutex::acquire_until(std::chrono::steady_clock::time_point deadline) {
  std::uint64_t until = sys::deadline_ns(deadline);
  return exclusive_from(writer_.acquire_until(deadline), until);
}

void SharedMutex::release() {
  writer_active_.store(0, std::memory_order_seq_cst);
  writer_.release();
}

LockResult SharedMutex::acquire_shared() {
  ProcessCounts::Slot& slot = readers_.mine();
  slot.count.fetch_add(1, std::memory_order_seq_cst);
  if (writer_active_.load(std::memory_order_seq_cst) == 0) [[likely]] {
    fp_shared_reader_counted.reached();
    return LockResult::Acquired;
  }
  release_shared();
  return shared_slow(0);
}

LockResult SharedMutex::try_acquire_shared() noexcept {
  try {
    ProcessCounts::Slot& slot = readers_.mine();
    slot.count.fetch_add(1, std::memory_order_seq_cst);
    if (writer_active_.load(std::memory_order_seq_cst) == 0) return LockResult::Acquired;
    release_shared();
  } catch (...) {
  }
  return LockResult::Busy;
}

LockResult SharedMutex::acquire_shared_until(std::chrono::steady_clock::time_point deadline) {
  ProcessCounts::Slot& slot = readers_.mine();
  slot.count.fetch_add(1, std::memory_order_seq_cst);
  if (writer_active_.load(std::memory_order_seq_cst) == 0) return LockResult::Acquired;
  release_shared();
  return shared_slow(sys::deadline_ns(deadline));
}

// A writer is active: queue behind it on the writer mutex. Once holding it, no
// writer can be active, so count ourselves in and let the next one through.
LockResult SharedMutex::shared_slow(std::uint64_t deadline_ns) {
  LockResult result = deadline_ns == 0
                          ? writer_.acquire()
                          : writer_.acquire_until(std::chrono::steady_clock::time_point(
                                std::chrono::nanoseconds(deadline_ns)));
  if (!holds_lock(result)) return result;
  if (result == LockResult::OwnerDied) return exclusive_from(result, deadline_ns);
  readers_.mine().count.fetch_add(1, std::memory_order_seq_cst);
  writer_.release();
  return LockResult::Acquired;
}

void SharedMutex::release_shared() {
  if (writer_.held_by_this_thread()) {  // an OwnerDied acquisition holds it exclusively
    release();
    return;
  }
  ProcessCounts::Slot& slot = readers_.mine();
  if (slot.count.load(std::memory_order_relaxed) == 0) {
    throw Error(ErrorKind::InvalidArgument, "shared mutex", "release_shared",
                "this process holds no shared lock");
  }
  slot.count.fetch_sub(1, std::memory_order_seq_cst);
  if (writer_active_.load(std::memory_order_seq_cst) != 0) {
    readers_left_.fetch_add(1, std::memory_order_release);
    sys::futex_wake(readers_left_, INT_MAX);
  }
}

}  // namespace shmutils
