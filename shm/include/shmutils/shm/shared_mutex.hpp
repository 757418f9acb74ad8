// shmutils::SharedMutex — a readers/writer lock across processes that no dead
// reader or writer can wedge.
//
// Contract
//   Lives:       inside a segment; zero-filled = unlocked. About 1.1 KiB: a
//                writer Mutex, two futex words and a ProcessCounts table of
//                readers (one slot per reading process, as in LMDB).
//   Writers:     exclusive; a writer that dies is handled by the robust writer
//                Mutex: the next exclusive acquirer gets OwnerDied. Readers
//                are held off until that repair when the writer died holding
//                the lock; one that died inside try_acquire before it held
//                readers off, or inside release after it let them in, leaves
//                readers free to go on (it wrote nothing).
//   Readers:     shared; counted per process. A writer waiting for readers
//                checks every millisecond whether the processes still counted
//                as reading are alive, and takes back the counts of dead ones.
//   OwnerDied:   from any acquire form means: you now hold the lock
//                EXCLUSIVELY (a writer died mid-write, the data may be torn);
//                repair, mark_consistent(), then release(). release_shared()
//                on such a hold releases it too, so a reader cannot get it wrong.
//   Fairness:    a waiting writer stops new readers (they queue on the writer
//                Mutex), so writers are not starved.
//
//   Reader fast path: count++ in its process slot, then check no writer is
//   active (both sequentially consistent; the writer sets "active" and then
//   sums the counts, so one of them always sees the other).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "shmutils/shm/lock_result.hpp"
#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/process_counts.hpp"

namespace shmutils {

class SharedMutex {
 public:
  SharedMutex() noexcept = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  // Exclusive.
  LockResult acquire();
  LockResult try_acquire() noexcept;
  LockResult acquire_until(std::chrono::steady_clock::time_point deadline);
  void release();

  // Shared. OwnerDied: held exclusively, see above.
  LockResult acquire_shared();
  LockResult try_acquire_shared() noexcept;
  LockResult acquire_shared_until(std::chrono::steady_clock::time_point deadline);
  void release_shared();

  void mark_consistent() { writer_.mark_consistent(); }
  void abandon_repair() { writer_.abandon_repair(); }
  void reset() { writer_.reset(); }

  LockHolder writer() const noexcept { return writer_.holder(); }
  // Readers currently counted (dead ones included until a writer reclaims them).
  std::uint64_t reader_count() const noexcept { return readers_.total(); }
  // Takes back the counts of dead readers; returns how many processes.
  std::uint32_t reclaim_dead_readers() { return readers_.reclaim_dead(); }

 private:
  // Waits (holding writer_) until no live process is counted as reading.
  bool drain_readers(std::uint64_t deadline_ns);
  LockResult exclusive_from(LockResult result, std::uint64_t deadline_ns);
  LockResult shared_slow(std::uint64_t deadline_ns);

  Mutex writer_;
  std::atomic<std::uint32_t> writer_active_{0};
  std::atomic<std::uint32_t> readers_left_{0};  // futex: bumped when a reader leaves
  ProcessCounts readers_{};
};

static_assert(std::is_standard_layout_v<SharedMutex>);

}  // namespace shmutils
