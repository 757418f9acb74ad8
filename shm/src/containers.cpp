#include "shmutils/shm/detail/container_fault_points.hpp"

namespace shmutils::detail {
SHMUTILS_FAULT_POINT(fp_vector_grown, "container.vector.grown");
SHMUTILS_FAULT_POINT(fp_vector_written, "container.vector.written");
SHMUTILS_FAULT_POINT(fp_map_linked, "container.map.linked");
SHMUTILS_FAULT_POINT(fp_map_unlinking, "container.map.unlinking");
SHMUTILS_FAULT_POINT(fp_queue_written, "container.queue.written");
SHMUTILS_FAULT_POINT(fp_queue_read, "container.queue.read");
SHMUTILS_FAULT_POINT(fp_container_repair, "container.repairing");
}  // namespace shmutils::detail
