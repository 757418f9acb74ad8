#include "shmutils/framework/pid_namespace.hpp"

#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"

namespace shmutils::framework {

std::optional<std::string> pid_namespaces_unavailable() {
  ChildProcess probe = ChildProcess::fork([] { return sys::unshare_pid_namespace(); });
  ExitStatus status = probe.wait();
  if (status.success()) return std::nullopt;
  std::string why = status.exited
                        ? Error(ErrorKind::System, "", "unshare", "", status.exit_code).what()
                        : status.to_string();
  return "this process may not create PID namespaces (" + why +
         "): run as root, or where unprivileged user namespaces are allowed";
}

}  // namespace shmutils::framework
