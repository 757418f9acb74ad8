// Helpers shared by the test files: run a body in a forked child with a
// deadline and turn its outcome into an exit status the test can assert on.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>
#include <chrono>
#include <csignal>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/shm_object.hpp"

namespace shmutils::test {

// Exit code a child uses to say "this environment cannot run the check".
inline constexpr int kSkipExitCode = 77;

// The kind of the Error f throws; a test failure (and System) when it throws none.
template <class F>
ErrorKind kind_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no error thrown";
  return ErrorKind::System;
}

// Removes a segment name at scope exit, so a failing assertion leaks nothing.
struct NameGuard {
  std::string name;
  ~NameGuard() { ShmObject::unlink_if_exists(name); }
};

// Sanitizers catch SIGSEGV/SIGBUS themselves; a child that is meant to die of
// one calls this first so it dies of the signal, as it would in production.
inline void default_fault_signals() {
  std::signal(SIGSEGV, SIG_DFL);
  std::signal(SIGBUS, SIG_DFL);
}

// Forks body, waits at most `deadline`, kills it on overrun (failing the test).
inline framework::ExitStatus run_child(
    const std::function<int()>& body,
    std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
  auto child = framework::ChildProcess::fork(body);
  auto status = child.wait_for(deadline);
  if (!status) {
    ADD_FAILURE() << "child " << child.pid() << " still running after " << deadline.count()
                  << " ms; killed";
    return child.kill();
  }
  return *status;
}

struct IsolatedRun {
  bool failed;
  framework::ExitStatus status;
  pid_t pid;  // of the copy that ran the test
  std::string output;
};

// Runs one test (usually a DISABLED_ one that misbehaves on purpose) in a
// separate copy of this program, with `environment` ("NAME=value ...")
// prepended, and returns its exit status and output.
inline IsolatedRun run_alone(const std::string& test, const std::string& environment = "",
                             std::chrono::seconds deadline = std::chrono::seconds(30)) {
  std::string log = "/tmp/shmutils-isolated-" + std::to_string(::getpid()) + ".log";
  std::string self = "/proc/" + std::to_string(::getpid()) + "/exe";
  auto child = framework::ChildProcess::spawn(
      "/bin/sh",
      {"sh", "-c",
       // A sharded run's settings would shard the one test away.
       "unset GTEST_TOTAL_SHARDS GTEST_SHARD_INDEX GTEST_SHARD_STATUS_FILE; " + environment +
           " exec \"$0\" --gtest_also_run_disabled_tests "
           "--gtest_filter=\"$2\" >\"$1\" 2>&1",
       self, log, test});
  auto status = child.wait_for(deadline);
  if (!status) status = child.kill();
  std::stringstream output;
  output << std::ifstream(log).rdbuf();
  ::unlink(log.c_str());
  return {!status->success(), *status, child.pid(), output.str()};
}

}  // namespace shmutils::test
