// shmutils::framework zygote — forks workers from a process that never had
// threads, for callers that do (GoogleTest, rapidcheck, any threaded app):
// fork() of a multi-threaded process can leave the child holding a lock some
// other thread held at the fork, and hang there.
//
// Contract
//   start_zygote(factory) forks the zygote at once: call it first thing in
//   main(), before any thread exists. The zygote waits for requests; for each
//   it forks (single-threaded, so safely) a worker that attaches to the
//   segment and the witness from the fds sent with the request and builds its
//   scenario by name with `factory`.
//   Parentage: the worker is handed to the harness process (PR_SET_CHILD_
//   SUBREAPER during a run, and a double fork), so the harness waits for it,
//   sees its stops and kills it like any forked worker; it dies with the
//   harness (PR_SET_PDEATHSIG), and the zygote dies with the harness too.
//   The harness uses the zygote for Fork-mode runs whenever the calling
//   process has more than one thread and a zygote was started.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "shmutils/framework/harness.hpp"

namespace shmutils::framework {

void start_zygote(const ScenarioFactory& factory);
bool zygote_started() noexcept;
// The zygote's pid (0 when none): a child of this process that is meant to be.
pid_t zygote_pid() noexcept;

}  // namespace shmutils::framework
