#include "shmutils/shm/fault_point.hpp"

namespace shmutils {

namespace detail {
std::atomic<FaultHook*> g_fault_hook{nullptr};
}

namespace {
// Points register during static initialization, which is single threaded,
// but a dlopen'ed library can add points later: the list head is atomic.
std::atomic<FaultPoint*>& list_head() {
  static std::atomic<FaultPoint*> head{nullptr};
  return head;
}
}  // namespace

FaultPoint::FaultPoint(std::string_view name) noexcept : name_(name) {
  auto& head = list_head();
  next_ = head.load(std::memory_order_relaxed);
  while (!head.compare_exchange_weak(next_, this, std::memory_order_release,
                                     std::memory_order_relaxed)) {
  }
}

FaultHook* set_fault_hook(FaultHook* hook) noexcept {
  return detail::g_fault_hook.exchange(hook, std::memory_order_acq_rel);
}

std::vector<FaultPoint*> all_fault_points() {
  std::vector<FaultPoint*> points;
  for (FaultPoint* p = list_head().load(std::memory_order_acquire); p != nullptr; p = p->next_) {
    points.push_back(p);
  }
  return {points.rbegin(), points.rend()};
}

FaultPoint* find_fault_point(std::string_view name) {
  for (FaultPoint* p : all_fault_points()) {
    if (p->name() == name) return p;
  }
  return nullptr;
}

}  // namespace shmutils
