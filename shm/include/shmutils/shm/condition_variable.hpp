// shmutils::ConditionVariable — waits for a condition under a robust Mutex,
// across processes.
//
// Contract
//   Lives:       inside a segment; 8 bytes, zero-filled = ready to use.
//   Protocol:    a 32-bit sequence futex. wait() reads the sequence while it
//                still holds the mutex, then releases and sleeps only while the
//                sequence is unchanged: a notify issued after the waiter's
//                check can never be lost. Spurious wake-ups are possible, as
//                with std::condition_variable: wait in a loop or with a predicate.
//   Crash:       nothing a dead waiter or a dead notifier leaves behind can block
//                the others: no waiter list lives in the segment (the kernel
//                keeps it), a dead waiter only leaves the waiter count high (it
//                costs later notifies a wake-up call, nothing else). A waiter
//                woken by notify_one that dies before taking the mutex would
//                leave the notification to nobody: waits therefore return at
//                least every 50 ms (a spurious wake-up), so the others look.
//   Owner died:  the mutex is re-acquired before wait returns; if its holder
//                died meanwhile, guard.owner_died() is true on return and the
//                predicate forms return at once, so the caller repairs first.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "shmutils/shm/mutex.hpp"

namespace shmutils {

class ConditionVariable {
 public:
  ConditionVariable() noexcept = default;
  ConditionVariable(const ConditionVariable&) = delete;
  ConditionVariable& operator=(const ConditionVariable&) = delete;

  void wait(MutexGuard& guard);
  // False when the deadline passed first (the mutex is held again either way).
  bool wait_until(MutexGuard& guard, std::chrono::steady_clock::time_point deadline);

  template <class Predicate>
  void wait(MutexGuard& guard, Predicate ready) {
    while (!guard.owner_died() && !ready()) wait(guard);
  }
  // The predicate's last value (true also when returning for owner death).
  template <class Predicate>
  bool wait_until(MutexGuard& guard, std::chrono::steady_clock::time_point deadline,
                  Predicate ready) {
    while (!guard.owner_died() && !ready()) {
      if (!wait_until(guard, deadline)) return ready();
    }
    return true;
  }

  void notify_one() noexcept;
  void notify_all() noexcept;

 private:
  bool wait_impl(MutexGuard& guard, std::uint64_t deadline_ns);

  std::atomic<std::uint32_t> sequence_{0};
  std::atomic<std::uint32_t> waiters_{0};
};

static_assert(std::is_standard_layout_v<ConditionVariable>);

}  // namespace shmutils
