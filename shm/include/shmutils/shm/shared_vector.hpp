// shmutils::SharedVector<T> — a growable array in a segment's heap, used by
// many processes, that survives the death of any of them.
//
// Contract
//   Lives:       anywhere in a segment with a heap (typically a named object);
//                zero-filled = empty. T is trivially copyable (it is copied
//                byte-wise between processes and buffers).
//   Access:      every member takes the heap of the caller's attachment and
//                runs under the vector's RepairingLock; get() returns a copy.
//   Recovery:    a push_back or set killed at any instruction either happened
//                or did not (the element is written before the size that
//                commits it). A growth killed half way leaks nothing: the new
//                buffer is published into the vector's data word atomically
//                with the allocation, and the old one is parked in `retired`
//                until freed with free_from; the next holder frees a parked
//                buffer that is no longer the data.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include "shmutils/shm/detail/container_fault_points.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/repairing_lock.hpp"

namespace shmutils {

template <class T>
class SharedVector {
  static_assert(std::is_trivially_copyable_v<T>, "elements are copied byte-wise");

 public:
  SharedVector() = default;
  SharedVector(const SharedVector&) = delete;
  SharedVector& operator=(const SharedVector&) = delete;

  void push_back(Heap& heap, const T& value) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    std::uint64_t size = size_.load(std::memory_order_relaxed);
    if (size == capacity(heap)) grow(heap, size == 0 ? 4 : size * 2);
    std::memcpy(element(heap, size), &value, sizeof(T));
    detail::fp_vector_written.reached();
    size_.store(size + 1, std::memory_order_release);
  }

  std::optional<T> pop_back(Heap& heap) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    std::uint64_t size = size_.load(std::memory_order_relaxed);
    if (size == 0) return std::nullopt;
    T value;
    std::memcpy(&value, element(heap, size - 1), sizeof(T));
    size_.store(size - 1, std::memory_order_release);
    return value;
  }

  T get(Heap& heap, std::size_t index) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    check_index(index);
    T value;
    std::memcpy(&value, element(heap, index), sizeof(T));
    return value;
  }

  void set(Heap& heap, std::size_t index, const T& value) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    check_index(index);
    std::memcpy(element(heap, index), &value, sizeof(T));
  }

  std::vector<T> snapshot(Heap& heap) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    std::vector<T> copy(size_.load(std::memory_order_relaxed));
    if (!copy.empty()) std::memcpy(copy.data(), element(heap, 0), copy.size() * sizeof(T));
    return copy;
  }

  // Empties the vector and frees its buffer.
  void clear(Heap& heap) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    size_.store(0, std::memory_order_release);
    if (data_.load() != 0) heap.free_from(data_);
  }

  // The committed size, read without the lock.
  std::size_t size() const noexcept { return size_.load(std::memory_order_acquire); }

  // Offsets of the heap blocks this vector owns (for leak checks).
  std::vector<std::uint64_t> blocks() const {
    std::vector<std::uint64_t> owned;
    if (data_.load() != 0) owned.push_back(data_.load());
    if (retired_.load() != 0 && retired_.load() != data_.load()) owned.push_back(retired_.load());
    return owned;
  }

 private:
  // After a holder died: free a parked old buffer, bound the size.
  void repair(Heap& heap) {
    detail::fp_container_repair.reached();
    std::uint64_t retired = retired_.load();
    if (retired != 0) {
      if (retired != data_.load()) {
        heap.free_from(retired_);
      } else {
        retired_.store(0);  // the growth never published: the old buffer is still the data
      }
    }
    std::uint64_t limit = capacity(heap);
    if (size_.load() > limit) size_.store(limit);
  }

  std::uint64_t capacity(Heap& heap) const {
    std::uint64_t data = data_.load(std::memory_order_relaxed);
    return data == 0 ? 0 : heap.usable_size(data) / sizeof(T);
  }

  void grow(Heap& heap, std::uint64_t want) {
    Reservation buffer = heap.reserve(want * sizeof(T), alignof(T) < 16 ? 16 : alignof(T));
    std::uint64_t old = data_.load(std::memory_order_relaxed);
    std::uint64_t size = size_.load(std::memory_order_relaxed);
    if (size != 0) std::memcpy(buffer.data(), heap.pointer(old), size * sizeof(T));
    retired_.store(old, std::memory_order_release);  // parked until freed below
    buffer.publish(data_);
    detail::fp_vector_grown.reached();
    if (old != 0) heap.free_from(retired_);
  }

  std::byte* element(Heap& heap, std::uint64_t index) const {
    return heap.pointer(data_.load(std::memory_order_relaxed)) + index * sizeof(T);
  }

  void check_index(std::size_t index) const {
    std::uint64_t size = size_.load(std::memory_order_relaxed);
    if (index >= size) {
      throw Error(ErrorKind::OutOfRange, "shared vector", "get",
                  "index " + std::to_string(index) + " of " + std::to_string(size));
    }
  }

  RepairingLock lock_{};
  std::atomic<std::uint64_t> data_{0};     // the buffer (heap offset)
  std::atomic<std::uint64_t> retired_{0};  // the previous buffer while a growth frees it
  std::atomic<std::uint64_t> size_{0};
};

}  // namespace shmutils
