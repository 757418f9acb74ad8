// shmutils::LockHolder — who holds a robust lock, as anyone may read it
// without taking the lock (tools, the harness, error messages).
//
// Contract
//   Lives:       a process-local copy of what the lock records in shared
//                memory, taken at one moment: it may be stale by the time it
//                is read, and a hostile peer may have written any of it.
//   Ids:         pid and tid are the holder's own, in its PID namespace
//                (pid_namespace, sys::pid_namespace_id()); they name a
//                process for an observer only when the namespaces match.
//   Liveness:    liveness() asks the OS about the holder from here: Alive,
//                Stopped (SIGSTOP, a debugger), Dead, or Unknown when its
//                namespace is not ours (or not recorded): a pid from another
//                namespace is never taken for dead.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace shmutils {

struct LockHolder {
  pid_t pid = 0;  // 0 when free
  pid_t tid = 0;
  std::uint64_t pid_namespace = 0;  // 0: not recorded
  std::uint64_t since_ns = 0;       // CLOCK_MONOTONIC_COARSE when first seen held; 0 if unseen
  bool owner_died = false;          // the last holder died; the next acquirer will repair

  enum class Liveness { Alive, Stopped, Dead, Unknown };
  Liveness liveness() const;
};

const char* to_string(LockHolder::Liveness liveness) noexcept;
// One line for messages and reports: "pid 41 (tid 42, stopped), held 1.2 s",
// "free", "free, its last holder died", "pid 7 (tid 7, in another PID
// namespace)".
std::string to_string(const LockHolder& holder);

}  // namespace shmutils
