#include "shmutils/shm/recursive_mutex.hpp"

namespace shmutils {

LockResult RecursiveMutex::nested() noexcept {
  mutex_.futex().depth.fetch_add(1, std::memory_order_relaxed);
  return mutex_.state() == Mutex::State::NeedsRepair ? LockResult::OwnerDied : LockResult::Acquired;
}

LockResult RecursiveMutex::first(LockResult result) noexcept {
  // A holder that died at any depth left its count behind: start afresh.
  if (holds_lock(result)) mutex_.futex().depth.store(0, std::memory_order_relaxed);
  return result;
}

LockResult RecursiveMutex::acquire() {
  if (mutex_.held_by_this_thread()) return nested();
  return first(mutex_.acquire());
}

LockResult RecursiveMutex::try_acquire() noexcept {
  if (mutex_.held_by_this_thread()) return nested();
  return first(mutex_.try_acquire());
}

LockResult RecursiveMutex::acquire_until(std::chrono::steady_clock::time_point deadline) {
  if (mutex_.held_by_this_thread()) return nested();
  return first(mutex_.acquire_until(deadline));
}

void RecursiveMutex::release() {
  auto& depth = mutex_.futex().depth;
  if (mutex_.held_by_this_thread() && depth.load(std::memory_order_relaxed) > 0) {
    depth.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  mutex_.release();  // throws InvalidArgument when not held by this thread
}

std::uint32_t RecursiveMutex::depth() const noexcept {
  if (!mutex_.held_by_this_thread()) return 0;
  return const_cast<Mutex&>(mutex_).futex().depth.load(std::memory_order_relaxed) + 1;
}

}  // namespace shmutils
