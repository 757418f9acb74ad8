// The harness's side of the zygote: one request, one worker.
#pragma once

#include <sys/types.h>

#include "worker_arguments.hpp"

namespace shmutils::framework::detail {

// Asks the zygote for a worker told `arguments`, with these fds of this
// process: the witness, the segment, the output (stdout and stderr) and the
// crash channel's write end. Returns the worker's pid; it is this process's
// child once the zygote's intermediate has exited (child subreaper).
pid_t zygote_fork_worker(const WorkerArguments& arguments, int witness_fd, int segment_fd,
                         int output_fd, int crash_fd);

}  // namespace shmutils::framework::detail
