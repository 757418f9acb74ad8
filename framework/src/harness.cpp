#include "shmutils/framework/harness.hpp"

#include <random>
#include <sstream>

#include "run.hpp"
#include "shmutils/shm/error.hpp"

namespace shmutils::framework {

std::string_view to_string(EventKind kind) {
  switch (kind) {
    case EventKind::Start: return "start";
    case EventKind::Exit: return "exit";
    case EventKind::KillRandom: return "kill (random time)";
    case EventKind::KillHolder: return "kill (lock holder)";
    case EventKind::KillAtPoint: return "kill (fault point)";
    case EventKind::Crash: return "crash";
    case EventKind::Stall: return "stall";
    case EventKind::Resume: return "resume";
    case EventKind::Recovery: return "recovery";
    case EventKind::Violation: return "violation";
    case EventKind::Hang: return "hang";
  }
  return "?";
}

RunReport Harness::run(Scenario& scenario, const RunOptions& requested,
                       const ProgressCallback& progress) {
  check_run_options(requested);
  RunOptions options = requested;
  // A fresh seed for every run that names none: runs explore, reports replay.
  while (options.seed == 0)
    options.seed = (std::uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  detail::Run run(scenario, options, progress);
  return run.execute();
}

std::string run_options_problem(const RunOptions& o) {
  std::string problem;
  auto bad = [&](const std::string& why) {
    if (problem.empty()) problem = why;
  };
  auto within = [](double value, double low, double high) {
    return value >= low && value <= high;  // false for NaN
  };
  if (o.workers < 1 || o.workers > RunLimits::kMaxWorkers) {
    bad("workers must be 1 to " + std::to_string(RunLimits::kMaxWorkers) + ", not " +
        std::to_string(o.workers));
  }
  if (o.max_kills > RunLimits::kMaxKills) {
    bad("kills must be at most " + std::to_string(RunLimits::kMaxKills) +
        " (a run has an incarnation per kill), not " + std::to_string(o.max_kills));
  }
  if (!within(o.duration_s, RunLimits::kMinDurationS, RunLimits::kMaxDurationS)) {
    bad("duration must be " + std::to_string(RunLimits::kMinDurationS) + " to " +
        std::to_string(RunLimits::kMaxDurationS) + " s, not " + std::to_string(o.duration_s));
  }
  if (!within(o.kills_per_s, 0, RunLimits::kMaxKillRate)) bad("kill rate out of 0 to 1e9 per s");
  if (!within(o.stalls_per_s, 0, RunLimits::kMaxStallRate)) bad("stall rate out of 0 to 1e6 per s");
  if (!within(o.point_death_share, 0, 1)) bad("point share must be 0 to 1");
  if (o.max_planned_hit < 1 || o.max_planned_hit > RunLimits::kMaxPlannedHit) {
    bad("max planned hit must be 1 to " + std::to_string(RunLimits::kMaxPlannedHit));
  }
  if (!within(o.watchdog_s, 0.01, RunLimits::kMaxDurationS)) bad("watchdog must be 0.01 s or more");
  return problem;
}

void check_run_options(const RunOptions& options) {
  if (std::string problem = run_options_problem(options); !problem.empty()) {
    throw Error(ErrorKind::InvalidArgument, "run options", "check", problem);
  }
}

std::string RunReport::summary() const {
  std::ostringstream out;
  out << scenario << ": " << operations << " operations, " << kills << " kills, " << recoveries
      << " recoveries, " << stalls << " stalls in " << duration_s << " s (" << kill_cycles_per_s()
      << " kill cycles/s), " << leaked_bytes << " bytes leaked, " << violations.size()
      << " violations\n";
  for (const std::string& v : violations) out << "  VIOLATION: " << v << "\n";
  if (!violations.empty()) out << "  replay: " << replay_command << "\n";
  return out.str();
}

}  // namespace shmutils::framework
