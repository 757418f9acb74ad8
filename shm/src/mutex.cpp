#include "shmutils/shm/mutex.hpp"

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"

namespace shmutils {

LockResult Mutex::after_acquire(RobustFutex::Outcome outcome) {
  switch (outcome) {
    case RobustFutex::Outcome::Busy: return LockResult::Busy;
    case RobustFutex::Outcome::TimedOut: return LockResult::TimedOut;
    case RobustFutex::Outcome::OwnerDied: {
      std::uint32_t expected = static_cast<std::uint32_t>(State::Consistent);
      // An abandoned mutex stays abandoned; otherwise the data needs repair.
      futex_.state.compare_exchange_strong(expected, static_cast<std::uint32_t>(State::NeedsRepair),
                                           std::memory_order_acq_rel);
      break;
    }
    case RobustFutex::Outcome::Acquired: break;
  }
  auto current = static_cast<State>(futex_.state.load(std::memory_order_acquire));
  if (current == State::Consistent) [[likely]]
    return LockResult::Acquired;
  if (current == State::NeedsRepair) return LockResult::OwnerDied;
  futex_.unlock();
  return LockResult::NotRecoverable;
}

LockResult Mutex::acquire_slow(RobustFutex::Outcome outcome) {
  LockResult result = after_acquire(outcome);
  if (result == LockResult::NotRecoverable) {
    throw Error(ErrorKind::NotRecoverable, "mutex", "acquire",
                "its repair was abandoned; rebuild the protected data, then reset() it");
  }
  return result;
}

LockResult Mutex::try_acquire() noexcept {
  try {
    return after_acquire(futex_.try_lock());
  } catch (...) {  // after_acquire only throws from unlock on misuse: impossible here
    return LockResult::Busy;
  }
}

LockResult Mutex::acquire_until(std::chrono::steady_clock::time_point deadline) {
  return after_acquire(futex_.lock(sys::deadline_ns(deadline)));
}

LockResult Mutex::acquire_for(std::chrono::nanoseconds timeout) {
  return acquire_until(std::chrono::steady_clock::now() + timeout);
}

LockResult Mutex::acquire_within(std::chrono::milliseconds bound, std::string_view what) {
  LockResult result = acquire_for(bound);
  if (result == LockResult::TimedOut) {
    throw Error(
        ErrorKind::Timeout, std::string(what), "acquire",
        "not free within " + std::to_string(bound.count()) + " ms; holder: " + to_string(holder()));
  }
  if (result == LockResult::NotRecoverable) {
    throw Error(ErrorKind::NotRecoverable, std::string(what), "acquire",
                "its repair was abandoned; rebuild the protected data, then reset() it");
  }
  return result;
}

void Mutex::require_holder(const char* operation) const {
  if (!futex_.held_by_this_thread()) {
    throw Error(ErrorKind::InvalidArgument, "mutex", operation, "this thread does not hold it");
  }
}

void Mutex::mark_consistent() {
  require_holder("mark_consistent");
  futex_.state.store(static_cast<std::uint32_t>(State::Consistent), std::memory_order_release);
}

void Mutex::abandon_repair() {
  require_holder("abandon_repair");
  futex_.state.store(static_cast<std::uint32_t>(State::NotRecoverable), std::memory_order_release);
}

void Mutex::reset() {
  // A NotRecoverable mutex is released at once by every acquirer, so taking
  // the word here succeeds as soon as nobody is mid-acquire.
  RobustFutex::Outcome outcome = futex_.lock();
  (void)outcome;  // whatever happened before, reset makes it consistent
  futex_.state.store(static_cast<std::uint32_t>(State::Consistent), std::memory_order_release);
  futex_.unlock();
}

LockHolder Mutex::holder() const noexcept {
  LockHolder h;
  std::uint32_t word = futex_.word.load(std::memory_order_acquire);
  h.tid = static_cast<pid_t>(word & RobustFutex::kTidMask);
  h.owner_died =
      (word & RobustFutex::kOwnerDied) != 0 || futex_.state.load(std::memory_order_relaxed) ==
                                                   static_cast<std::uint32_t>(State::NeedsRepair);
  if (h.tid != 0) {
    h.pid = futex_.holder_pid.load(std::memory_order_acquire);
    h.pid_namespace = futex_.holder_pid_namespace.load(std::memory_order_relaxed);
    h.since_ns = futex_.held_since_ns.load(std::memory_order_relaxed);
  }
  return h;
}

std::optional<MutexGuard> try_lock(Mutex& mutex) noexcept {
  LockResult result = mutex.try_acquire();
  if (!holds_lock(result)) return std::nullopt;
  return std::optional<MutexGuard>(std::in_place, mutex, result);
}

std::optional<MutexGuard> lock_until(Mutex& mutex, std::chrono::steady_clock::time_point deadline) {
  LockResult result = mutex.acquire_until(deadline);
  if (!holds_lock(result)) return std::nullopt;
  return std::optional<MutexGuard>(std::in_place, mutex, result);
}

}  // namespace shmutils
