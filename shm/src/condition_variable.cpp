#include "shmutils/shm/condition_variable.hpp"

#include <climits>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_condvar_waiting, "condvar.after_release");

namespace {
constexpr std::uint64_t kWaitSliceNs = 50'000'000;  // bounds the delay after a woken waiter dies

}  // namespace

bool ConditionVariable::wait_impl(MutexGuard& guard, std::uint64_t deadline_ns) {
  if (!guard.owns_lock()) {
    throw Error(ErrorKind::InvalidArgument, "condition variable", "wait",
                "the guard holds no lock");
  }
  Mutex& mutex = *guard.mutex_;
  // Read under the mutex: any notify after this point changes the sequence.
  std::uint32_t seen = sequence_.load(std::memory_order_acquire);
  waiters_.fetch_add(1, std::memory_order_relaxed);
  mutex.release();
  fp_condvar_waiting.reached();
  // Sleep in slices: notify_one wakes one waiter, and if that one dies before
  // it re-takes the mutex, the others must still come round to look.
  std::uint64_t slice_end = sys::monotonic_ns() + kWaitSliceNs;
  bool sliced = deadline_ns == 0 || slice_end < deadline_ns;
  sys::FutexWaitResult waited = sys::futex_wait(sequence_, seen, sliced ? slice_end : deadline_ns);
  if (sliced && waited == sys::FutexWaitResult::TimedOut) waited = sys::FutexWaitResult::Woken;
  waiters_.fetch_sub(1, std::memory_order_relaxed);
  guard.result_ = mutex.acquire();
  return waited != sys::FutexWaitResult::TimedOut;
}

void ConditionVariable::wait(MutexGuard& guard) { (void)wait_impl(guard, 0); }

bool ConditionVariable::wait_until(MutexGuard& guard,
                                   std::chrono::steady_clock::time_point deadline) {
  std::uint64_t until = sys::deadline_ns(deadline);
  if (sys::monotonic_ns() >= until) return false;
  return wait_impl(guard, until);
}

void ConditionVariable::notify_one() noexcept {
  sequence_.fetch_add(1, std::memory_order_acq_rel);
  if (waiters_.load(std::memory_order_acquire) != 0) sys::futex_wake(sequence_, 1);
}

void ConditionVariable::notify_all() noexcept {
  sequence_.fetch_add(1, std::memory_order_acq_rel);
  if (waiters_.load(std::memory_order_acquire) != 0) sys::futex_wake(sequence_, INT_MAX);
}

}  // namespace shmutils
