// shmutils::framework::pid_namespaces_unavailable — whether this process may
// run children in PID namespaces of their own (root, or a kernel that lets
// unprivileged users create user namespaces), as containers that share
// /dev/shm run theirs.
//
// Contract
//   Probe:       forks a short-lived child that tries; nothing else changes.
//   Result:      nullopt when permitted, else one line saying why not.
#pragma once

#include <optional>
#include <string>

namespace shmutils::framework {

std::optional<std::string> pid_namespaces_unavailable();

}  // namespace shmutils::framework
