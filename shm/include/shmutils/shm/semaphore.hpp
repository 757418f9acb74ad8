// shmutils::Semaphore — a pool of units across processes; the units a process
// holds when it dies go back to the pool.
//
// Contract
//   Lives:       inside a segment; construct with the number of units. About
//                1.1 KiB: a robust Mutex, the pool counters and a ProcessCounts
//                table of what each process holds.
//   Units:       acquire(n) takes n units for the calling process; release(n)
//                gives back units this process holds (releasing more than it
//                holds is an InvalidArgument error). add_units(n) grows the pool.
//   Crash:       the pool and the per-process counts change together under the
//                internal robust Mutex; after a death inside that section the
//                next caller recomputes the pool from the live holders. Units of
//                dead processes are taken back by reclaim_dead(), which waiters
//                run every 10 ms while they wait: a dead holder never starves
//                the others for long.
//   Invariant:   available() + units held by live processes == capacity().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/process_counts.hpp"

namespace shmutils {

class Semaphore {
 public:
  explicit Semaphore(std::uint32_t units) noexcept : available_(units), capacity_(units) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  void acquire(std::uint32_t units = 1);
  bool try_acquire(std::uint32_t units = 1);
  bool acquire_until(std::chrono::steady_clock::time_point deadline, std::uint32_t units = 1);
  void release(std::uint32_t units = 1);
  void add_units(std::uint32_t units);

  std::uint32_t available() const noexcept { return available_.load(std::memory_order_acquire); }
  std::uint32_t capacity() const noexcept { return capacity_.load(std::memory_order_acquire); }
  // Units the calling process holds.
  std::uint32_t held_by_this_process();
  // Units recorded as held, by any process (dead ones until reclaimed).
  std::uint64_t held_total() const noexcept { return holders_.total(); }
  // Returns dead processes' units to the pool; how many units came back.
  std::uint32_t reclaim_dead();

 private:
  MutexGuard lock_and_repair();
  void recompute_locked();
  bool take_locked(std::uint32_t units);
  bool acquire_impl(std::uint32_t units, std::uint64_t deadline_ns);

  Mutex guard_;
  std::atomic<std::uint32_t> available_;  // futex word for waiters
  std::atomic<std::uint32_t> capacity_;
  ProcessCounts holders_{};
};

static_assert(std::is_standard_layout_v<Semaphore>);

}  // namespace shmutils
