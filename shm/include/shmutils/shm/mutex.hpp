// shmutils::Mutex — a process-shared mutex that survives the death of its
// holder, and MutexGuard, the scoped lock that keeps owner death visible.
//
// Contract
//   Lives:       inside a segment (or any shared mapping); 48 bytes, standard
//                layout, position independent. Zero-filled memory is an
//                unlocked, consistent Mutex: no initialization step to forget.
//   Threads:     any thread of any process; not reentrant (RecursiveMutex is).
//   Crash:       a holder killed at any instruction (SIGKILL included) never
//                wedges anyone: the kernel releases the lock and the next
//                acquirer gets LockResult::OwnerDied.
//   Repair:      OwnerDied means the protected data may be half-updated. The
//                acquirer repairs it, then calls mark_consistent(). Until then
//                every later acquirer gets OwnerDied again — a repairer that dies
//                or releases without marking leaves the repair to the next one,
//                so repair routines must be idempotent.
//   Abandon:     abandon_repair() declares the data beyond repair: every later
//                acquire throws Error(NotRecoverable) (try/timed forms return
//                LockResult::NotRecoverable) until reset() — to be called only
//                once the data is rebuilt or discarded.
//   Holder:      holder() tells pid, tid and since when (tools, the harness).
//   Why no lock()/unlock(): std::lock_guard would call them and drop the
//                OwnerDied result; acquire() returns a [[nodiscard]] LockResult.
//
//   State table (the `state` field; the lock word is separate):
//     Consistent   --holder dies------------------> (next acquire) NeedsRepair, OwnerDied
//     NeedsRepair  --mark_consistent--------------> Consistent
//     NeedsRepair  --release without marking------> NeedsRepair (next acquire: OwnerDied)
//     NeedsRepair  --repairer dies----------------> NeedsRepair (next acquire: OwnerDied)
//     NeedsRepair  --abandon_repair---------------> NotRecoverable
//     NotRecoverable --reset----------------------> Consistent
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

#include "shmutils/shm/lock_holder.hpp"
#include "shmutils/shm/lock_result.hpp"
#include "shmutils/shm/robust_futex.hpp"

namespace shmutils {

class Mutex {
 public:
  enum class State : std::uint32_t { Consistent = 0, NeedsRepair = 1, NotRecoverable = 2 };

  Mutex() noexcept = default;  // all zero: unlocked and consistent
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  // Blocks until held. Throws Error(NotRecoverable) for an abandoned mutex.
  LockResult acquire();
  // Never blocks, never throws: Acquired, OwnerDied, Busy or NotRecoverable.
  LockResult try_acquire() noexcept;
  // Blocks until held or the deadline (CLOCK_MONOTONIC / steady_clock) passes.
  LockResult acquire_until(std::chrono::steady_clock::time_point deadline);
  LockResult acquire_for(std::chrono::nanoseconds timeout);
  // For locks whose holder must never keep the caller waiting forever (a
  // stopped, forged or unreachable holder): Acquired or OwnerDied, or
  // Error(Timeout) after `bound`, naming `what` and the holder.
  LockResult acquire_within(std::chrono::milliseconds bound, std::string_view what);

  // After repairing the data of an OwnerDied acquisition.
  void mark_consistent();
  // Gives up on repair: later acquirers fail with NotRecoverable.
  void abandon_repair();
  // Makes a NotRecoverable mutex usable again (takes and releases it).
  void reset();
  void release();

  State state() const noexcept {
    return static_cast<State>(futex_.state.load(std::memory_order_acquire));
  }
  LockHolder holder() const noexcept;
  bool held_by_this_thread() const noexcept { return futex_.held_by_this_thread(); }
  // The lock word, for the primitives built on this one (ConditionVariable).
  RobustFutex& futex() noexcept { return futex_; }

 private:
  friend class RecursiveMutex;
  LockResult after_acquire(RobustFutex::Outcome outcome);
  LockResult acquire_slow(RobustFutex::Outcome outcome);
  void require_holder(const char* operation) const;

  RobustFutex futex_{};
};

static_assert(std::is_standard_layout_v<Mutex>);
static_assert(sizeof(Mutex) == sizeof(RobustFutex));

// The uncontended path, inline: one CAS to take, one exchange to release.
inline LockResult Mutex::acquire() {
  RobustFutex::Outcome outcome = futex_.lock();
  if (outcome == RobustFutex::Outcome::Acquired &&
      futex_.state.load(std::memory_order_relaxed) == 0) [[likely]] {
    return LockResult::Acquired;
  }
  return acquire_slow(outcome);
}

inline void Mutex::release() { futex_.unlock(); }

// Scoped ownership of a Mutex. Move-only. owner_died() must be looked at: a
// guard destroyed without mark_consistent() after OwnerDied leaves the repair
// to the next acquirer (nothing is lost, but nothing is repaired either).
class [[nodiscard]] MutexGuard {
 public:
  explicit MutexGuard(Mutex& mutex) : mutex_(&mutex), result_(mutex.acquire()) {}
  // Adopts an acquisition already made (result must hold the lock).
  MutexGuard(Mutex& mutex, LockResult adopted) noexcept : mutex_(&mutex), result_(adopted) {}
  MutexGuard(MutexGuard&& other) noexcept
      : mutex_(std::exchange(other.mutex_, nullptr)), result_(other.result_) {}
  MutexGuard& operator=(MutexGuard&&) = delete;
  MutexGuard(const MutexGuard&) = delete;
  MutexGuard& operator=(const MutexGuard&) = delete;
  ~MutexGuard() {
    if (mutex_ != nullptr) mutex_->release();
  }

  bool owner_died() const noexcept { return result_ == LockResult::OwnerDied; }
  LockResult result() const noexcept { return result_; }
  void mark_consistent() {
    mutex_->mark_consistent();
    result_ = LockResult::Acquired;
  }
  bool owns_lock() const noexcept { return mutex_ != nullptr; }
  Mutex* mutex() const noexcept { return mutex_; }
  void unlock() { std::exchange(mutex_, nullptr)->release(); }

 private:
  friend class ConditionVariable;
  Mutex* mutex_;
  LockResult result_;
};

// A guard when the mutex was free (or its owner died), nullopt when busy or
// not recoverable. Never blocks, never throws.
std::optional<MutexGuard> try_lock(Mutex& mutex) noexcept;
std::optional<MutexGuard> lock_until(Mutex& mutex, std::chrono::steady_clock::time_point deadline);

}  // namespace shmutils
