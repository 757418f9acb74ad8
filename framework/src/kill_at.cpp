#include "shmutils/framework/kill_at.hpp"

#include <csignal>

#include "shmutils/shm/detail/sys.hpp"

namespace shmutils::framework {

bool KillAt::due(const FaultPoint& point) noexcept {
  if (!point_.empty() && point.name() != point_) return false;
  return ++hits_ == nth_;
}

void KillAt::die(const FaultPoint& point) noexcept {
  if (before_ != nullptr) before_(point, context_);
  sys::raise_signal(how_ == Death::Kill ? SIGKILL : SIGSTOP);
}

FaultAction KillAt::on_reached(const FaultPoint& point, std::uint64_t /*hit_number*/) noexcept {
  if (due(point)) die(point);
  return FaultAction::Continue;
}

}  // namespace shmutils::framework
