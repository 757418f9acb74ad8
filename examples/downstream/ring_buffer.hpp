// A bounded ring buffer of integers that several processes share, and that
// survives any of them dying in the middle of a push or a pop: the kind of
// structure a shmutils user writes, and tests with shmutils' fixtures and
// properties (ring_tests.cpp).
//
// Crash safety: every access holds the robust mutex. A push writes the slot,
// then advances `tail`, then `count`; a pop reads the slot, then advances
// `head`, then `count`. head and tail are the truth; count is derived, so a
// holder killed between two of those stores leaves count stale, and whoever
// takes the lock next gets OwnerDied and recomputes it (repair()).
#pragma once

#include <shmutils/shm/mutex.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

namespace ring {

class RingBuffer {
 public:
  static constexpr std::uint64_t kCapacity = 4;

  bool try_push(std::int64_t value);
  std::optional<std::int64_t> try_pop();
  // What it holds, oldest first, and whether its derived count agrees with
  // head and tail (takes the lock, so repairs first if a holder died).
  struct Snapshot {
    std::vector<std::int64_t> values;
    bool count_agrees = true;
  };
  Snapshot snapshot();

 private:
  shmutils::MutexGuard lock();
  void repair();

  shmutils::Mutex mutex_;
  std::uint64_t head_ = 0;   // next to pop (counts every pop ever)
  std::uint64_t tail_ = 0;   // next to push (counts every push ever)
  std::uint64_t count_ = 0;  // tail_ - head_, kept for the full/empty tests
  std::array<std::int64_t, kCapacity> slots_{};
};

}  // namespace ring
