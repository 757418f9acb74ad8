#include "ring_buffer.hpp"

#include <shmutils/shm/fault_point.hpp>

namespace ring {
namespace {

// Where a test may kill a process in the middle of an operation.
SHMUTILS_FAULT_POINT(fp_slot_written, "ring.push.slot_written");
SHMUTILS_FAULT_POINT(fp_tail_advanced, "ring.push.tail_advanced");
SHMUTILS_FAULT_POINT(fp_head_advanced, "ring.pop.head_advanced");

}  // namespace

shmutils::MutexGuard RingBuffer::lock() {
  shmutils::MutexGuard guard(mutex_);
  if (guard.owner_died()) {
    repair();
    guard.mark_consistent();
  }
  return guard;
}

void RingBuffer::repair() {
#ifndef RING_BUFFER_SKIP_REPAIR  // the bug the planted-bug build plants
  count_ = tail_ - head_;
#endif
}

bool RingBuffer::try_push(std::int64_t value) {
  shmutils::MutexGuard guard = lock();
  if (count_ == kCapacity) return false;
  slots_[tail_ % kCapacity] = value;
  fp_slot_written.reached();
  ++tail_;
  fp_tail_advanced.reached();
  ++count_;
  return true;
}

std::optional<std::int64_t> RingBuffer::try_pop() {
  shmutils::MutexGuard guard = lock();
  if (count_ == 0) return std::nullopt;
  std::int64_t value = slots_[head_ % kCapacity];
  ++head_;
  fp_head_advanced.reached();
  --count_;
  return value;
}

RingBuffer::Snapshot RingBuffer::snapshot() {
  shmutils::MutexGuard guard = lock();
  Snapshot snapshot;
  for (std::uint64_t i = head_; i != tail_ && snapshot.values.size() < kCapacity; ++i)
    snapshot.values.push_back(slots_[i % kCapacity]);
  snapshot.count_agrees = count_ == tail_ - head_;
  return snapshot;
}

}  // namespace ring
