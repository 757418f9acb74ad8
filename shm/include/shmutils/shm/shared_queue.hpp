// shmutils::SharedQueue<T> — a bounded multi-producer multi-consumer FIFO in
// a segment's heap that survives the death of any producer or consumer.
//
// Contract
//   Lives:       anywhere in a segment with a heap (typically a named object).
//                T is trivially copyable. The ring (capacity elements) is
//                allocated from the heap at first use.
//   Blocking:    push waits while full, pop while empty, on robust condition
//                variables; the _until forms give up at a deadline, the try_
//                forms never wait.
//   Recovery:    a slot is written before the tail that commits it, and read
//                before the head that releases it, so a producer killed at any
//                instruction either enqueued its element or did not, and a
//                consumer killed before returning either left the element in
//                the queue or took it (an element a consumer took and died with
//                is gone: record intent in the element's destination if that
//                matters). Nobody waits for a dead process: waits slice at
//                50 ms and the lock is robust.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>

#include "shmutils/shm/condition_variable.hpp"
#include "shmutils/shm/detail/container_fault_points.hpp"
#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/repairing_lock.hpp"

namespace shmutils {

template <class T>
class SharedQueue {
  static_assert(std::is_trivially_copyable_v<T>, "elements are copied byte-wise");

 public:
  using Clock = std::chrono::steady_clock;

  explicit SharedQueue(std::uint64_t capacity = 1024) : capacity_(capacity == 0 ? 1 : capacity) {}
  SharedQueue(const SharedQueue&) = delete;
  SharedQueue& operator=(const SharedQueue&) = delete;

  void push(Heap& heap, const T& value) { (void)push_until(heap, value, Clock::time_point::max()); }
  bool try_push(Heap& heap, const T& value) {
    return push_until(heap, value, Clock::time_point::min());
  }
  bool push_until(Heap& heap, const T& value, Clock::time_point deadline) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    while (tail_.load() - head_.load() >= capacity_) {
      if (!wait(not_full_, guard, heap, deadline)) return false;
    }
    std::uint64_t tail = tail_.load();
    std::memcpy(slot(heap, tail), &value, sizeof(T));
    detail::fp_queue_written.reached();
    tail_.store(tail + 1, std::memory_order_release);
    not_empty_.notify_one();
    return true;
  }

  T pop(Heap& heap) { return *pop_until(heap, Clock::time_point::max()); }
  std::optional<T> try_pop(Heap& heap) { return pop_until(heap, Clock::time_point::min()); }
  std::optional<T> pop_until(Heap& heap, Clock::time_point deadline) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    while (tail_.load() == head_.load()) {
      if (!wait(not_empty_, guard, heap, deadline)) return std::nullopt;
    }
    std::uint64_t head = head_.load();
    T value;
    std::memcpy(&value, slot(heap, head), sizeof(T));
    detail::fp_queue_read.reached();
    head_.store(head + 1, std::memory_order_release);
    not_full_.notify_one();
    return value;
  }

  std::size_t size() const noexcept { return tail_.load() - head_.load(); }
  std::size_t capacity() const noexcept { return capacity_; }
  std::uint64_t pushed() const noexcept { return tail_.load(); }  // ever committed
  std::uint64_t popped() const noexcept { return head_.load(); }
  std::uint64_t ring_block() const noexcept { return ring_.load(); }

 private:
  // False at the deadline; the guard is re-settled after every wake-up.
  bool wait(ConditionVariable& condition, RepairingGuard& guard, Heap& heap,
            Clock::time_point deadline) {
    if (deadline == Clock::time_point::min()) return false;
    bool woken = deadline == Clock::time_point::max()
                     ? (condition.wait(guard.mutex_guard()), true)
                     : condition.wait_until(guard.mutex_guard(), deadline);
    guard.settle(heap, [&] { repair(heap); });
    return woken || Clock::now() < deadline;
  }

  std::byte* slot(Heap& heap, std::uint64_t index) {
    if (ring_.load(std::memory_order_acquire) == 0) {
      heap.reserve(capacity_ * sizeof(T), alignof(T) < 16 ? 16 : alignof(T)).publish(ring_);
    }
    return heap.pointer(ring_.load()) + (index % capacity_) * sizeof(T);
  }

  // Nothing a dead holder leaves needs undoing (commits are single stores);
  // wake everyone so no waiter sleeps on a notification the dead never sent.
  void repair(Heap&) {
    detail::fp_container_repair.reached();
    if (tail_.load() - head_.load() > capacity_) head_.store(tail_.load() - capacity_);
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  RepairingLock lock_{};
  ConditionVariable not_empty_;
  ConditionVariable not_full_;
  std::atomic<std::uint64_t> ring_{0};
  std::uint64_t capacity_;
  std::atomic<std::uint64_t> head_{0};  // next to pop
  std::atomic<std::uint64_t> tail_{0};  // next to push
};

}  // namespace shmutils
