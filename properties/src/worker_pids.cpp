#include "shmutils/properties/models/worker_pids.hpp"

#include "shmutils/shm/detail/sys.hpp"

namespace shmutils::properties::models {

void WorkerPids::record(unsigned worker) noexcept {
  pids.at(worker).store(sys::getpid(), std::memory_order_relaxed);
}

}  // namespace shmutils::properties::models
