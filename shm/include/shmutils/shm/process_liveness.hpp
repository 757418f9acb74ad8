// shmutils::record_owner_alive — whether the process a record in a segment
// names still lives, decided the same way for every record (reader counts,
// unit holders, lock holders the kernel did not release).
//
// Contract
//   Identity:    a record names a process by pid, PID namespace and start
//                time, as that process saw them (sys::pid_namespace_id(),
//                sys::own_start_time()).
//   Decision:    in this process's namespace, /proc decides (a recycled pid
//                has another start time). In another namespace, or where
//                /proc belongs to another one, the registry of the segment holding the
//                record decides: the slot of that pid and namespace is alive
//                while its process holds the slot's lock (process_registry.hpp).
//                No such slot means the process detached (it can no longer
//                release what the record holds) or died and was reaped: dead.
//                So a process in another namespace that holds locks, units or
//                read counts in a segment must be registered there (the
//                default for writable attachments). A record outside any
//                attached segment, or with no namespace, is presumed alive:
//                a live process is never declared dead.
//   Hostile:     the ids are read from shared memory; a forged record can
//                make a dead process look alive (it holds up only what that
//                record holds) but never make a live one look dead.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace shmutils {

struct RecordedProcess {
  pid_t pid = 0;
  std::uint64_t pid_namespace = 0;  // 0: not recorded
  std::uint64_t start_time = 0;     // 0: not recorded
};

// `where` is the record's address (it finds the segment and its registry).
bool record_owner_alive(const void* where, const RecordedProcess& owner);

}  // namespace shmutils
