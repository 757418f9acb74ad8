// Test support: running the shmctl tool as a user would, with a bound.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "shmutils/framework/child_process.hpp"

namespace shmutils::test {

struct ToolRun {
  int code = -1;
  std::string out;
  nlohmann::json json() const { return nlohmann::json::parse(out); }
};

inline ToolRun shmctl(const std::vector<std::string>& args) {
  std::string path = "/tmp/shmutils-shmctl-" + std::to_string(::getpid()) + ".out";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  std::vector<std::string> argv{"shmctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = framework::ChildProcess::spawn(SHMUTILS_SHMCTL_PATH, argv, nullptr, {{fd, 1}});
  ::close(fd);
  auto status = child.wait_for(std::chrono::seconds(30));
  ToolRun run;
  if (!status) {
    ADD_FAILURE() << "shmctl hung";
    child.kill();
  } else {
    run.code = status->exited ? status->exit_code : 128 + status->signal;
  }
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  run.out = text.str();
  ::unlink(path.c_str());
  return run;
}

}  // namespace shmutils::test
