// Test support: a process that holds a lock of a segment and is stopped
// (Ctrl-Z, a debugger) while it holds it.
#pragma once

#include <csignal>
#include <cstdint>
#include <string>

#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::test {

// A child that takes `lock` and stops itself (Ctrl-Z, a debugger) while
// holding it; returned once it is stopped (*stopped says whether it did).
inline framework::ChildProcess stopped_holder_of(const std::string& segment_name,
                                                 Mutex& (*locate)(Segment&), bool* stopped) {
  auto child = framework::ChildProcess::fork([segment_name, locate] {
    Segment mine = Segment::open(segment_name);
    LockResult taken = locate(mine).acquire();
    (void)taken;
    sys::raise_signal(SIGSTOP);
    return 0;
  });
  const std::uint64_t until = sys::monotonic_ns() + 20'000'000'000ULL;
  *stopped = false;
  while (!*stopped && sys::monotonic_ns() < until) {
    *stopped = child.poll() == framework::ChildProcess::State::Stopped;
    sys::sleep_ns(1'000'000);
  }
  return child;
}

}  // namespace shmutils::test
