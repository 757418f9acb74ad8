// shmutils::RecursiveMutex — a robust Mutex that its holding thread may take
// again; released when every acquire has been matched by a release.
//
// Contract: as Mutex (mutex.hpp): in a segment, zero-filled = unlocked,
// robust against holder death with the same repair protocol and state table.
// A holder that dies at any depth releases it whole; the next acquirer starts
// at depth 1. A nested acquire while repair is pending returns OwnerDied too.
#pragma once

#include <chrono>
#include <cstdint>

#include "shmutils/shm/mutex.hpp"

namespace shmutils {

class RecursiveMutex {
 public:
  RecursiveMutex() noexcept = default;
  RecursiveMutex(const RecursiveMutex&) = delete;
  RecursiveMutex& operator=(const RecursiveMutex&) = delete;

  LockResult acquire();
  LockResult try_acquire() noexcept;
  LockResult acquire_until(std::chrono::steady_clock::time_point deadline);
  void release();
  void mark_consistent() { mutex_.mark_consistent(); }
  void abandon_repair() { mutex_.abandon_repair(); }
  void reset() { mutex_.reset(); }

  // How many acquires of the holding thread are not yet released (0: free or
  // held by another thread).
  std::uint32_t depth() const noexcept;
  LockHolder holder() const noexcept { return mutex_.holder(); }
  Mutex::State state() const noexcept { return mutex_.state(); }

 private:
  LockResult nested() noexcept;
  LockResult first(LockResult result) noexcept;

  Mutex mutex_;  // futex().depth counts nested acquires beyond the first
};

static_assert(sizeof(RecursiveMutex) == sizeof(Mutex));

}  // namespace shmutils
