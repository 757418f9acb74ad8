#include "shmutils/shm/semaphore.hpp"

#include <climits>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_semaphore_taken, "semaphore.taken_before_recorded");

namespace {
constexpr std::uint64_t kReclaimEveryNs = 10'000'000;
}

// The sum of live holders is the truth; available follows from it.
void Semaphore::recompute_locked() {
  holders_.reclaim_dead();
  std::uint64_t held = holders_.total();
  std::uint32_t capacity = capacity_.load(std::memory_order_relaxed);
  available_.store(held >= capacity ? 0 : static_cast<std::uint32_t>(capacity - held),
                   std::memory_order_release);
}

MutexGuard Semaphore::lock_and_repair() {
  MutexGuard guard(guard_);
  if (guard.owner_died()) {
    recompute_locked();
    guard.mark_consistent();
  }
  return guard;
}

bool Semaphore::take_locked(std::uint32_t units) {
  std::uint32_t available = available_.load(std::memory_order_relaxed);
  if (available < units) return false;
  ProcessCounts::Slot& mine = holders_.mine();
  available_.store(available - units, std::memory_order_release);
  fp_semaphore_taken.reached();
  mine.count.fetch_add(units, std::memory_order_release);
  return true;
}

bool Semaphore::acquire_impl(std::uint32_t units, std::uint64_t deadline_ns) {
  if (units == 0) throw Error(ErrorKind::InvalidArgument, "semaphore", "acquire", "0 units");
  std::uint64_t next_reclaim = sys::monotonic_ns() + kReclaimEveryNs;
  for (;;) {
    std::uint32_t seen = 0;
    {
      MutexGuard guard = lock_and_repair();
      if (units > capacity_.load(std::memory_order_relaxed)) {
        throw Error(ErrorKind::InvalidArgument, "semaphore", "acquire",
                    std::to_string(units) + " units, the pool has " +
                        std::to_string(capacity_.load()) + " in all");
      }
      std::uint64_t now = sys::monotonic_ns();
      if (now >= next_reclaim) {
        recompute_locked();
        next_reclaim = now + kReclaimEveryNs;
      }
      if (take_locked(units)) return true;
      seen = available_.load(std::memory_order_relaxed);
    }
    std::uint64_t now = sys::monotonic_ns();
    if (deadline_ns != 0 && now >= deadline_ns) return false;
    std::uint64_t wake_by = next_reclaim;
    if (deadline_ns != 0 && deadline_ns < wake_by) wake_by = deadline_ns;
    (void)sys::futex_wait(available_, seen, wake_by);
  }
}

void Semaphore::acquire(std::uint32_t units) { (void)acquire_impl(units, 0); }

bool Semaphore::acquire_until(std::chrono::steady_clock::time_point deadline, std::uint32_t units) {
  return acquire_impl(units, sys::deadline_ns(deadline));
}

bool Semaphore::try_acquire(std::uint32_t units) {
  auto guard = try_lock(guard_);
  if (!guard) return false;
  if (guard->owner_died()) {
    recompute_locked();
    guard->mark_consistent();
  }
  return take_locked(units);
}

void Semaphore::release(std::uint32_t units) {
  {
    MutexGuard guard = lock_and_repair();
    ProcessCounts::Slot& mine = holders_.mine();
    std::uint32_t held = mine.count.load(std::memory_order_relaxed);
    if (held < units) {
      throw Error(ErrorKind::InvalidArgument, "semaphore", "release",
                  "releasing " + std::to_string(units) + " units, this process holds " +
                      std::to_string(held));
    }
    mine.count.fetch_sub(units, std::memory_order_release);
    available_.fetch_add(units, std::memory_order_release);
  }
  sys::futex_wake(available_, INT_MAX);
}

void Semaphore::add_units(std::uint32_t units) {
  {
    MutexGuard guard = lock_and_repair();
    capacity_.fetch_add(units, std::memory_order_relaxed);
    available_.fetch_add(units, std::memory_order_release);
  }
  sys::futex_wake(available_, INT_MAX);
}

std::uint32_t Semaphore::held_by_this_process() {
  return holders_.mine().count.load(std::memory_order_acquire);
}

std::uint32_t Semaphore::reclaim_dead() {
  std::uint32_t before = 0;
  {
    MutexGuard guard = lock_and_repair();
    before = available_.load(std::memory_order_relaxed);
    recompute_locked();
  }
  std::uint32_t after = available_.load(std::memory_order_acquire);
  if (after > before) sys::futex_wake(available_, INT_MAX);
  return after > before ? after - before : 0;
}

}  // namespace shmutils
