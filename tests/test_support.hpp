// Helpers shared by the test files: the kind of error a call throws, and a
// test run alone in a copy of this program. (Children run on the fixtures:
// fixtures/children.hpp.)
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
