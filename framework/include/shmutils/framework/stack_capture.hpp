// shmutils::framework::capture_stack — the call stack of another process,
// read with ptrace and libunwind-ptrace, symbolized and demangled.
//
// Contract
//   Target:      a process this one may trace (its child, or any with
//                ptrace permission). It is seized, interrupted, unwound and
//                detached again; it stays stopped if it was stopped, and is
//                otherwise left to run (callers that kill it next lose nothing).
//   Threads:     the thread group leader's stack (pid == tid); other threads
//                can be named by tid.
//   No ptrace:   (Yama, seccomp, containers) a StackTrace with `error` set to
//                one clear line and no frames; never an exception.
//   Cost:        about a millisecond or two per capture.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace shmutils::framework {

struct StackFrame {
  std::uintptr_t address = 0;
  std::string function;  // demangled; "??" when unknown
  std::uintptr_t offset = 0;
};

struct StackTrace {
  pid_t tid = 0;
  std::vector<StackFrame> frames;
  std::string error;              // why there are no frames
  std::string to_string() const;  // one frame a line: "#3 0x4012ab shmutils::Mutex::acquire()+0x1c"
};

StackTrace capture_stack(pid_t tid, std::size_t max_frames = 64);

}  // namespace shmutils::framework
