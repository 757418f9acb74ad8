// Fault points inside the shared containers (defined in containers.cpp): the
// templates reach them, so every instantiation is killed at the same names.
#pragma once

#include "shmutils/shm/fault_point.hpp"

namespace shmutils::detail {
extern FaultPoint fp_vector_grown;  // "container.vector.grown": new buffer published, old not freed
extern FaultPoint fp_vector_written;  // "container.vector.written": element written, size not yet
extern FaultPoint fp_map_linked;     // "container.map.linked": new node published, old not unlinked
extern FaultPoint fp_map_unlinking;  // "container.map.unlinking": about to unlink a node
extern FaultPoint fp_queue_written;  // "container.queue.written": slot written, tail not yet
extern FaultPoint fp_queue_read;     // "container.queue.read": slot read, head not yet
extern FaultPoint fp_container_repair;  // "container.repairing"
}  // namespace shmutils::detail
