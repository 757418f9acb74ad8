// Test support: running a function in a process of another PID namespace,
// as a container that shares /dev/shm would.
#pragma once

#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <optional>
#include <string>

#include "shmutils/framework/pid_namespace.hpp"
#include "shmutils/shm/detail/sys.hpp"

namespace shmutils::test {

using framework::pid_namespaces_unavailable;

// A pid that names no process in this namespace, high enough that this
// namespace will not hand it out during a test.
inline pid_t pid_unused_here() {
  int pid_max = 32768;
  std::ifstream("/proc/sys/kernel/pid_max") >> pid_max;
  for (pid_t candidate = pid_max - 7; candidate > 300; --candidate) {
    if (!sys::process_start_time(candidate).has_value()) return candidate;
  }
  return 0;
}

// Runs body in a process of a new PID namespace whose pid there names no
// process here: to a pid check from here, it looks dead while it runs. With
// own_proc the namespace mounts a /proc of its own, as a container does;
// without, it sees this namespace's /proc (unshare --pid without
// --mount-proc). Returns body's return value, 126 when body threw, or 128 +
// the signal that ended it. It forks twice: the first child is the
// namespace's init, which reaps the body's process.
inline int run_in_foreign_pid_namespace(const std::function<int()>& body, bool own_proc) {
  auto code = [](const sys::ExitStatus& status) {
    return status.exited ? status.exit_code : 128 + status.signal;
  };
  const pid_t wanted = pid_unused_here();
  pid_t outer = sys::fork("pid namespace");
  if (outer == 0) {
    if (sys::unshare_pid_namespace(own_proc) != 0) sys::exit_now(125);
    pid_t init = sys::fork("pid namespace init");
    if (init == 0) {
      if (own_proc && sys::mount_own_proc() != 0) sys::exit_now(124);
      // pid 1 of the new namespace: make the next pid the one wanted.
      std::ofstream("/proc/sys/kernel/ns_last_pid") << (wanted - 1);
      pid_t worker = sys::fork("process in the pid namespace");
      if (worker == 0) {
        // Never return into the test runner: this is a copy of it.
        int result = 126;
        try {
          result = body();
        } catch (const std::exception& e) {
          std::fprintf(stderr, "in the other pid namespace: %s\n", e.what());
        }
        sys::exit_now(result);
      }
      sys::exit_now(code(sys::wait(worker)));
    }
    sys::exit_now(code(sys::wait(init)));
  }
  return code(sys::wait(outer));
}

}  // namespace shmutils::test
