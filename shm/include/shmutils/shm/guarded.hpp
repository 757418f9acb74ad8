// shmutils::Guarded<T> — data bundled with the robust Mutex that protects it:
// the data is reachable only through an Access, which holds the lock, and the
// repair routine is part of the data's type.
//
// Contract
//   Lives:       inside a segment, like its Mutex; T must be usable there
//                (standard layout, no pointers but offset ones, no vtable).
//   Repair:      T::repair() runs under the lock whenever the previous holder
//                died (or left without repairing); the mutex is marked
//                consistent only after it returns. A repair that throws, or
//                whose process dies, is run again by the next acquirer:
//                repair() must be idempotent.
//   Abandon:     an Access may abandon_repair() (see Mutex); later locks throw.
//
//   struct Account { std::int64_t balance, pending; void repair() { pending = 0; } };
//   Guarded<Account>* account = ...;            // inside a segment
//   { auto a = account->lock(); a->balance += 10; }
#pragma once

#include <chrono>
#include <optional>
#include <type_traits>
#include <utility>

#include "shmutils/shm/mutex.hpp"

namespace shmutils {

template <class T>
concept Repairable = requires(T& value) {
  value.repair();
};

template <Repairable T>
class Guarded {
  static_assert(!std::is_polymorphic_v<T>, "a vtable pointer is meaningless in another process");

 public:
  class [[nodiscard]] Access {
   public:
    T* operator->() const noexcept { return value_; }
    T& operator*() const noexcept { return *value_; }
    // True when this acquisition ran the repair routine.
    bool repaired() const noexcept { return repaired_; }
    void abandon_repair() { guard_.mutex()->abandon_repair(); }

   private:
    friend class Guarded;
    Access(MutexGuard guard, T* value, bool repaired) noexcept
        : guard_(std::move(guard)), value_(value), repaired_(repaired) {}
    MutexGuard guard_;
    T* value_;
    bool repaired_;
  };

  template <class... Args>
  explicit Guarded(Args&&... args) : value_(std::forward<Args>(args)...) {}
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;

  Access lock() { return settle(MutexGuard(mutex_)); }
  std::optional<Access> try_lock() {
    auto guard = shmutils::try_lock(mutex_);
    if (!guard) return std::nullopt;
    return settle(std::move(*guard));
  }
  std::optional<Access> lock_until(std::chrono::steady_clock::time_point deadline) {
    auto guard = shmutils::lock_until(mutex_, deadline);
    if (!guard) return std::nullopt;
    return settle(std::move(*guard));
  }

  Mutex& mutex() noexcept { return mutex_; }

 private:
  Access settle(MutexGuard guard) {
    bool repaired = false;
    if (guard.owner_died()) {
      value_.repair();  // may throw: the guard releases and the next acquirer repairs
      guard.mark_consistent();
      repaired = true;
    }
    return Access(std::move(guard), &value_, repaired);
  }

  Mutex mutex_;
  T value_;
};

}  // namespace shmutils
