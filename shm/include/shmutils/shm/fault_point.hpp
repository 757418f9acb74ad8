// shmutils fault points — the one seam between shm/ and the fault-injection
// framework.
//
// Contract
//   A FaultPoint is a named place inside shmutils code ("segment.init.after_truncate")
//   where an installed hook may count, delay, kill the process, or ask the
//   code to fail. Points are defined at namespace scope with
//   SHMUTILS_FAULT_POINT, so every compiled-in point is listed by
//   all_fault_points() before it is ever reached (a run can tell which points
//   it never exercised).
//   Cost:        with no hook installed, reaching a point is one relaxed
//                atomic load. The shipped library is the tested library.
//   Hook:        process-wide, one object implementing FaultHook (its state
//                is its own: no globals), set with set_fault_hook or
//                ScopedFaultHook. It is called on the thread that reached the
//                point, with the point and its hit number (1-based, counted
//                while a hook is installed). It must be async-signal-safe
//                enough for the code it interrupts: no locks that shmutils
//                holds. framework/kill_at.hpp has the common one: die at the
//                Nth hit of a point.
//   Result:      the hook returns FaultAction::Fail to inject a failure; only
//                points documented as failable honour it, the others ignore it.
//   Fork:        the hook and the counts are inherited by a forked child.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace shmutils {

enum class FaultAction { Continue, Fail };

class FaultPoint;

// What runs at every reached point while installed. The object is the hook's
// context: it must outlive its installation.
class FaultHook {
 public:
  virtual FaultAction on_reached(const FaultPoint& point, std::uint64_t hit_number) noexcept = 0;

 protected:
  FaultHook() = default;
  FaultHook(const FaultHook&) = default;
  FaultHook& operator=(const FaultHook&) = default;
  ~FaultHook() = default;
};

// A hook made from a callable (a lambda with its captures as context).
template <typename Function>
class FaultHookFunction final : public FaultHook {
 public:
  explicit FaultHookFunction(Function function) : function_(std::move(function)) {}
  FaultAction on_reached(const FaultPoint& point, std::uint64_t hit_number) noexcept override {
    return function_(point, hit_number);
  }

 private:
  Function function_;
};

class FaultPoint {
 public:
  // Registers the point in the process-wide list; define only at namespace
  // scope (static storage), through SHMUTILS_FAULT_POINT.
  explicit FaultPoint(std::string_view name) noexcept;
  FaultPoint(const FaultPoint&) = delete;
  FaultPoint& operator=(const FaultPoint&) = delete;

  std::string_view name() const noexcept { return name_; }
  std::uint64_t hits() const noexcept { return hits_.load(std::memory_order_relaxed); }
  void reset_hits() noexcept { hits_.store(0, std::memory_order_relaxed); }

  // Reached: returns true when the hook asks for an injected failure.
  bool reached() noexcept;

 private:
  std::string_view name_;
  std::atomic<std::uint64_t> hits_{0};
  FaultPoint* next_ = nullptr;
  friend std::vector<FaultPoint*> all_fault_points();
};

namespace detail {
extern std::atomic<FaultHook*> g_fault_hook;
}

inline bool FaultPoint::reached() noexcept {
  FaultHook* hook = detail::g_fault_hook.load(std::memory_order_acquire);
  if (hook == nullptr) [[likely]]
    return false;
  std::uint64_t hit = hits_.fetch_add(1, std::memory_order_relaxed) + 1;
  return hook->on_reached(*this, hit) == FaultAction::Fail;
}

// Installs hook (nullptr removes it); returns the previous one.
FaultHook* set_fault_hook(FaultHook* hook) noexcept;
// Every point compiled into the program, in registration order.
std::vector<FaultPoint*> all_fault_points();
// The point with that name, or nullptr.
FaultPoint* find_fault_point(std::string_view name);

class ScopedFaultHook {
 public:
  explicit ScopedFaultHook(FaultHook& hook) noexcept : previous_(set_fault_hook(&hook)) {}
  ~ScopedFaultHook() { set_fault_hook(previous_); }
  ScopedFaultHook(const ScopedFaultHook&) = delete;
  ScopedFaultHook& operator=(const ScopedFaultHook&) = delete;

 private:
  FaultHook* previous_;
};

}  // namespace shmutils

// Defines a fault point object `variable` named `name` at namespace scope.
#define SHMUTILS_FAULT_POINT(variable, name) \
  ::shmutils::FaultPoint variable { name }
