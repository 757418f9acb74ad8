// shmutils::ExitStatus — how a child process ended, as the framework and the
// fixtures report it.
#pragma once

#include <string>

namespace shmutils {

struct ExitStatus {
  bool exited = false;  // normal exit with exit_code
  int exit_code = 0;
  int signal = 0;  // the signal that killed it when !exited
  bool success() const noexcept { return exited && exit_code == 0; }
  std::string to_string() const;  // "exit code 3", "killed by SIGKILL"
};

// "SIGSEGV"; "signal 77" for a number without a name.
std::string signal_name(int signal);

}  // namespace shmutils
