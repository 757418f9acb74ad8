#include "shmutils/shm/event.hpp"

#include <climits>

#include "shmutils/shm/detail/sys.hpp"

namespace shmutils {

void Event::set() noexcept {
  state_.store(1, std::memory_order_release);
  // All waiters, even for Automatic: one wins the flag, the rest sleep again.
  // Waking only one could strand the flag if that one died before taking it.
  sys::futex_wake(state_, INT_MAX);
}

void Event::reset() noexcept { state_.store(0, std::memory_order_release); }

bool Event::try_wait() noexcept {
  if (mode_ == static_cast<std::uint32_t>(ResetMode::Automatic)) {
    std::uint32_t expected = 1;
    return state_.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
  }
  return is_set();
}

bool Event::wait_impl(std::uint64_t deadline_ns) {
  for (;;) {
    if (try_wait()) return true;
    if (deadline_ns != 0 && sys::monotonic_ns() >= deadline_ns) return false;
    (void)sys::futex_wait(state_, 0, deadline_ns);
  }
}

void Event::wait() { (void)wait_impl(0); }

bool Event::wait_until(std::chrono::steady_clock::time_point deadline) {
  return wait_impl(sys::deadline_ns(deadline));
}

}  // namespace shmutils
