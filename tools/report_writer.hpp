// JSON and HTML renderings of shmtorture's run reports.
#pragma once

#include <string>
#include <vector>

#include "shmutils/framework/harness.hpp"

namespace shmutils::tools {

struct TortureRun {
  std::uint64_t seed = 0;
  int interrupted_by = 0;  // the signal that stopped the run early (0: it ran out)
  std::vector<framework::RunReport> scenarios;
};

// The JSON contract other tools read (see README): seed, duration_s, kills,
// recoveries, violations, kill_cycles_per_s, scenarios[...].
std::string to_json(const TortureRun& run);
// A self-contained HTML page: per scenario, a timeline with a lane per worker.
std::string to_html(const TortureRun& run);

}  // namespace shmutils::tools
