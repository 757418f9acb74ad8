// shmutils::ProcessCounts — a count per process, inside a segment, that can be
// taken back from processes that died: how SharedMutex knows its readers and
// Semaphore its unit holders.
//
// Contract
//   Lives:       inside a segment; zero-filled = empty. kSlots slots of
//                {pid, start time, count}; a process claims one slot on first use
//                and keeps it while it lives.
//   Threads:     counts are atomic; every thread of a process shares its slot.
//   Liveness:    each slot records its process's pid, PID namespace and start
//                time; record_owner_alive() decides (process_liveness.hpp), in
//                any namespace. reclaim_dead() zeroes dead slots and frees
//                them, reporting what each held.
//   Full table:  mine() reclaims dead slots once, then throws NoSpace.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <type_traits>

namespace shmutils {

class ProcessCounts {
 public:
  static constexpr std::uint32_t kSlots = 64;

  struct Slot {
    std::atomic<std::int32_t> pid;  // 0: free
    std::atomic<std::uint32_t> count;
    std::atomic<std::uint64_t> start_time;     // 0 while being claimed
    std::atomic<std::uint64_t> pid_namespace;  // written before start_time
  };

  // This process's slot, claimed on first use.
  Slot& mine();
  // The sum of all counts (dead processes' included until reclaimed).
  std::uint64_t total() const noexcept;
  // Zeroes and frees every dead slot; calls on_dead(pid, count) for each.
  std::uint32_t reclaim_dead(const std::function<void(pid_t, std::uint32_t)>& on_dead = {});
  // True when the slot's process is alive (or cannot be told dead).
  static bool alive(const Slot& slot);
  Slot& slot(std::uint32_t index) noexcept { return slots_[index]; }

 private:
  Slot slots_[kSlots];  // NOLINT: fixed in-segment array
};

static_assert(std::is_standard_layout_v<ProcessCounts>);

}  // namespace shmutils
