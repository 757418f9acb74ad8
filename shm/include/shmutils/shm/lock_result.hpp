// shmutils::LockResult — what an attempt to take a robust lock found.
//
//   Acquired        the lock is held, the protected data is consistent
//   OwnerDied       the lock is held, but a previous holder died holding it (or
//                   released it without repairing): repair the data, then
//                   mark_consistent(). Skipping the repair is safe for others:
//                   the next acquirer gets OwnerDied again.
//   Busy            try_acquire only: someone else holds it (not held by you)
//   TimedOut        timed acquire only: the deadline passed (not held by you)
//   NotRecoverable  a repairer gave up (abandon_repair); not held by you.
//                   Blocking acquire() throws Error(NotRecoverable) instead.
//
// The enum is [[nodiscard]]: dropping a LockResult is a compiler warning, so
// owner death cannot be ignored by accident.
#pragma once

#include <string_view>

namespace shmutils {

enum class [[nodiscard]] LockResult{Acquired, OwnerDied, Busy, TimedOut, NotRecoverable};

constexpr bool holds_lock(LockResult result) noexcept {
  return result == LockResult::Acquired || result == LockResult::OwnerDied;
}

constexpr std::string_view to_string(LockResult result) noexcept {
  switch (result) {
    case LockResult::Acquired: return "acquired";
    case LockResult::OwnerDied: return "owner died";
    case LockResult::Busy: return "busy";
    case LockResult::TimedOut: return "timed out";
    case LockResult::NotRecoverable: return "not recoverable";
  }
  return "unknown";
}

}  // namespace shmutils
