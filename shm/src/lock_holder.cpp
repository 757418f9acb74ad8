#include "shmutils/shm/lock_holder.hpp"

#include <array>
#include <cstdio>

#include "shmutils/shm/detail/sys.hpp"

namespace shmutils {

LockHolder::Liveness LockHolder::liveness() const {
  if (pid <= 0) return Liveness::Unknown;
  const std::uint64_t here = sys::pid_namespace_id();
  if (pid_namespace == 0 || here == 0 || pid_namespace != here) return Liveness::Unknown;
  if (!sys::thread_alive(pid, tid > 0 ? tid : pid)) return Liveness::Dead;
  if (!sys::proc_shows_this_namespace()) return Liveness::Alive;
  switch (sys::process_state(pid)) {
    case sys::ProcessState::Stopped: return Liveness::Stopped;
    case sys::ProcessState::Gone: return Liveness::Dead;
    case sys::ProcessState::Running: return Liveness::Alive;
  }
  return Liveness::Alive;
}

const char* to_string(LockHolder::Liveness liveness) noexcept {
  switch (liveness) {
    case LockHolder::Liveness::Alive: return "alive";
    case LockHolder::Liveness::Stopped: return "stopped";
    case LockHolder::Liveness::Dead: return "dead";
    case LockHolder::Liveness::Unknown: return "in another PID namespace";
  }
  return "?";
}

std::string to_string(const LockHolder& holder) {
  if (holder.pid == 0 && holder.tid == 0) {
    return holder.owner_died ? "free, its last holder died" : "free";
  }
  std::string text = holder.pid != 0 ? "pid " + std::to_string(holder.pid) : "an unrecorded pid";
  text += " (tid " + std::to_string(holder.tid) + ", ";
  LockHolder::Liveness liveness = holder.liveness();
  text += liveness == LockHolder::Liveness::Unknown && holder.pid_namespace == 0
              ? "namespace not recorded"
              : to_string(liveness);
  text += ")";
  if (holder.since_ns != 0) {
    std::uint64_t now = sys::coarse_monotonic_ns();
    if (now > holder.since_ns) {
      std::array<char, 32> held{};
      (void)std::snprintf(held.data(), held.size(), ", held %.1f s",
                          static_cast<double>(now - holder.since_ns) / 1e9);
      text += held.data();
    }
  }
  if (holder.owner_died) text += ", owner died before";
  return text;
}

}  // namespace shmutils
