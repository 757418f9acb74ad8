// The worker side of a harness run: what a worker process does from its
// first instruction to its exit, however it was started.
#pragma once

#include <cstdint>
#include <string_view>

#include "shmutils/framework/harness.hpp"
#include "worker_arguments.hpp"

namespace shmutils::framework::detail {

// argv[1] of a spawned worker.
inline constexpr std::string_view kWorkerFlag = "--shmutils-worker";

// A forked worker: it inherits the harness's mappings and maps the segment
// again at a base of its own (perturbation).
int run_forked_worker(Scenario& scenario, Segment& inherited, Witness& witness,
                      std::uint32_t incarnation, const RunOptions& options, int output_fd);

// A worker told where everything is (spawned, or forked by the zygote);
// witness_fd / segment_fd >= 0 replace the fds its descriptors name.
int run_worker_from_arguments(const WorkerArguments& arguments, const ScenarioFactory& make,
                              int witness_fd, int segment_fd);

}  // namespace shmutils::framework::detail
