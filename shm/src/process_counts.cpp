#include "shmutils/shm/process_counts.hpp"

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/process_liveness.hpp"

namespace shmutils {

namespace {

// This process's identity, cached: reading /proc on every lock would be slow.
struct Identity {
  pid_t pid = 0;
  std::uint64_t start_time = 0;
  std::uint64_t pid_namespace = 0;
};

Identity& identity() {
  thread_local Identity cached;  // per thread: no race on first use
  pid_t pid = sys::getpid();
  if (cached.pid != pid) {  // first use, or a forked child
    cached.start_time = sys::own_start_time().value_or(0);
    cached.pid_namespace = sys::pid_namespace_id();
    cached.pid = pid;
  }
  return cached;
}

}  // namespace

bool ProcessCounts::alive(const Slot& slot) {
  pid_t pid = slot.pid.load(std::memory_order_acquire);
  if (pid == 0) return false;
  // A claim in progress has no start time yet: the pid and namespace decide.
  std::uint64_t start = slot.start_time.load(std::memory_order_acquire);
  std::uint64_t pid_namespace = slot.pid_namespace.load(std::memory_order_relaxed);
  return record_owner_alive(&slot, {pid, pid_namespace, start});
}

ProcessCounts::Slot& ProcessCounts::mine() {
  const Identity& me = identity();
  const auto first = static_cast<std::uint32_t>(me.pid) % kSlots;
  for (std::uint32_t i = 0; i < kSlots; ++i) {
    Slot& s = slots_[(first + i) % kSlots];
    pid_t owner = s.pid.load(std::memory_order_acquire);
    if (owner != me.pid) continue;
    if (s.start_time.load(std::memory_order_acquire) == me.start_time &&
        s.pid_namespace.load(std::memory_order_relaxed) == me.pid_namespace) {
      return s;
    }
  }
  for (int round = 0; round < 2; ++round) {
    for (std::uint32_t i = 0; i < kSlots; ++i) {
      Slot& s = slots_[(first + i) % kSlots];
      std::int32_t expected = 0;
      if (s.pid.compare_exchange_strong(expected, me.pid, std::memory_order_acq_rel)) {
        s.count.store(0, std::memory_order_relaxed);
        s.pid_namespace.store(me.pid_namespace, std::memory_order_relaxed);
        s.start_time.store(me.start_time, std::memory_order_release);
        return s;
      }
    }
    if (reclaim_dead() == 0) break;
  }
  throw Error(ErrorKind::NoSpace, "process table", "claim slot",
              "all " + std::to_string(kSlots) + " slots are held by live processes");
}

std::uint64_t ProcessCounts::total() const noexcept {
  std::uint64_t sum = 0;
  for (const Slot& s : slots_) sum += s.count.load(std::memory_order_seq_cst);
  return sum;
}

std::uint32_t ProcessCounts::reclaim_dead(
    const std::function<void(pid_t, std::uint32_t)>& on_dead) {
  std::uint32_t reclaimed = 0;
  for (Slot& s : slots_) {
    pid_t pid = s.pid.load(std::memory_order_acquire);
    if (pid == 0 || alive(s)) continue;
    std::uint32_t held = s.count.exchange(0, std::memory_order_acq_rel);
    s.start_time.store(0, std::memory_order_relaxed);
    s.pid_namespace.store(0, std::memory_order_relaxed);
    std::int32_t expected = pid;
    if (s.pid.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) {
      ++reclaimed;
      if (on_dead) on_dead(pid, held);
    }
  }
  return reclaimed;
}

}  // namespace shmutils
