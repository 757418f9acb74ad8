#include "shmutils/shm/process_liveness.hpp"

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/process_registry.hpp"

namespace shmutils {

bool record_owner_alive(const void* where, const RecordedProcess& owner) {
  if (owner.pid <= 0) return false;
  const std::uint64_t here = sys::pid_namespace_id();
  if (here != 0 && owner.pid_namespace == here && sys::proc_shows_this_namespace()) {
    if (owner.start_time == 0) return sys::process_start_time(owner.pid).has_value();
    return sys::process_alive(owner.pid, owner.start_time);
  }
  if (owner.pid_namespace == 0) return true;
  switch (detail::registered_liveness(where, owner)) {
    case detail::RegisteredLiveness::Alive: return true;
    case detail::RegisteredLiveness::Dead:
    case detail::RegisteredLiveness::NoSlot: return false;
    case detail::RegisteredLiveness::NoRegistry: return true;
  }
  return true;
}

}  // namespace shmutils
