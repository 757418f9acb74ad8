// shmutils::Event — a flag processes wait on: set() releases the waiters.
//
// Contract
//   Lives:       inside a segment; 8 bytes. Zero-filled = a manual-reset event,
//                not set. Construct with ResetMode::Automatic for an event
//                that releases one waiter per set() and clears itself.
//   Manual:      set() releases every waiter and stays set until reset().
//   Automatic:   set() releases exactly one waiter (or the next one to come).
//   Crash:       a waiter or a setter that dies leaves nothing to clean up; a
//                set() that completed before the death stays set.
//   No lost wake-ups: waiters sleep only while the flag reads "not set".
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace shmutils {

enum class ResetMode : std::uint32_t { Manual = 0, Automatic = 1 };

class Event {
 public:
  explicit Event(ResetMode mode = ResetMode::Manual) noexcept
      : mode_(static_cast<std::uint32_t>(mode)) {}
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void set() noexcept;
  void reset() noexcept;
  bool is_set() const noexcept { return state_.load(std::memory_order_acquire) != 0; }

  void wait();
  // False when the deadline passed first.
  bool wait_until(std::chrono::steady_clock::time_point deadline);
  bool wait_for(std::chrono::nanoseconds timeout) {
    return wait_until(std::chrono::steady_clock::now() + timeout);
  }
  // Takes the event without waiting: for Automatic, clears it.
  bool try_wait() noexcept;

 private:
  bool wait_impl(std::uint64_t deadline_ns);

  std::atomic<std::uint32_t> state_{0};  // futex word: 1 set, 0 not set
  std::uint32_t mode_;
};

static_assert(std::is_standard_layout_v<Event>);

}  // namespace shmutils
