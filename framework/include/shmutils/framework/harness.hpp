// shmutils::framework::Harness — runs a Scenario in worker processes under a
// kill plan derived from one seed, and reports what happened.
//
// Contract
//   Workers:     forked from the calling process with PR_SET_PDEATHSIG, so
//                none outlives the harness, even a SIGKILLed one. Each
//                worker's exit status, crash signal and output are captured.
//                A threaded caller forks safely only while no other thread
//                holds a lock a worker needs (the allocator's, stdio's): test
//                programs fork from the zygote instead (see test_main.hpp).
//   Seed:        RunOptions::seed, or a fresh one when it is 0; the report
//                carries it and the replay token reproduces the plan.
//   Addresses:   with perturbation on, every worker maps the segment at its
//                own random base and turns the inherited range into a guard
//                (PROT_NONE): a stale absolute pointer faults at once.
//   Kill plan:   from the seed: per worker incarnation, maybe a death at the
//                Nth hit of a named fault point (deterministic: the worker
//                stops itself there and the harness kills it); between
//                those, random-time kills, kills of the current holder of a
//                scenario lock, and stalls (SIGSTOP ... SIGCONT).
//   Oracles:     Scenario::check after every kill and at the end; required
//                fault points must have been hit (and killed at) or the run fails.
//   Diagnostics: the stack of each killed victim (captured just before the
//                kill), of a crashed worker, and of every worker on a hang
//                (no progress for watchdog_s), with the lock holders.
//   Replay:      RunReport::replay_command reproduces the run's plan.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shmutils/framework/scenario.hpp"
#include "shmutils/framework/stack_capture.hpp"

namespace shmutils::framework {

enum class WorkerMode {
  Fork,   // forked from the harness: inherits the mappings (then perturbed)
  Spawn,  // exec'd worker program that attaches from descriptors in argv
};

struct RunOptions {
  // 0: the run picks a fresh seed (RunReport::seed and the replay carry it).
  std::uint64_t seed = 0;
  WorkerMode mode = WorkerMode::Fork;
  // Spawn mode: the program to exec; it must call run_spawned_worker first
  // thing in main. Empty: this program (/proc/self/exe).
  std::string worker_program;
  unsigned workers = 4;
  double duration_s = 4.0;      // stop after this long ...
  std::uint64_t max_kills = 0;  // ... or this many kills (0: no limit)
  bool perturb = true;
  // Each forked worker runs in a PID namespace of its own, as a container
  // sharing /dev/shm would (framework/pid_namespace.hpp says when that is
  // permitted; the run fails with NotSupported where not). Fork mode only.
  bool pid_namespaces = false;
  double point_death_share = 0.5;  // share of incarnations planned to die at a fault point
  std::uint64_t max_planned_hit = 200;
  double kills_per_s = 400;  // harness-initiated kills (random time / lock holder)
  double stalls_per_s = 5;
  double watchdog_s = 5;
  // Workers yield the CPU to the harness: with more workers than cores, a
  // harness that waits for a time slice kills and checks late.
  int worker_nice = 10;
  std::size_t victim_stacks_kept = 8;
  bool capture_victim_stacks = true;
  std::vector<std::string> required_points;  // fail the run if any was never hit
  std::string program = "shmtorture";        // for the replay command
  // When given and non-zero (a signal number, set by a signal handler), the
  // run stops at its next turn, as at its end, and reports itself interrupted.
  const std::atomic<int>* stop_requested = nullptr;
};

// The bounds of every run's options, wherever they come from (the command
// line, a replay token, a test): a run needs an incarnation per kill, and
// the witness holds Witness::kMaxWorkers of them.
struct RunLimits {
  static constexpr unsigned kMaxWorkers = 64;
  static constexpr std::uint64_t kMaxKills = 19'000;
  static constexpr double kMinDurationS = 0.1;
  static constexpr double kMaxDurationS = 86'400;
  static constexpr double kMaxKillRate = 1e9;
  static constexpr double kMaxStallRate = 1e6;
  static constexpr std::uint64_t kMaxPlannedHit = 1'000'000;
};
// Throws Error(InvalidArgument) naming the first option out of its bounds
// (NaN and infinities included).
void check_run_options(const RunOptions& options);
// Why the options are out of bounds; empty when they are within them.
std::string run_options_problem(const RunOptions& options);

enum class EventKind {
  Start,
  Exit,
  KillRandom,
  KillHolder,
  KillAtPoint,
  Crash,
  Stall,
  Resume,
  Recovery,
  Violation,
  Hang
};
std::string_view to_string(EventKind kind);

struct RunEvent {
  double t_s = 0;
  std::uint32_t incarnation = 0;
  EventKind kind = EventKind::Start;
  std::string detail;
};

struct PointCounts {
  std::uint64_t hits = 0;
  std::uint64_t kills = 0;
};

// A stretch of time during which the harness saw a worker hold a scenario
// lock (sampled on every turn of the harness loop, so short holds between
// two samples are not seen).
struct LockHold {
  std::uint32_t incarnation = 0;
  std::string lock;
  double start_s = 0;
  double end_s = 0;
};

struct WorkerSummary {
  std::uint32_t incarnation = 0;
  pid_t pid = 0;
  std::uint64_t mapped_base = 0;
  double started_s = 0;
  double ended_s = 0;
  std::string end;     // "killed (random)", "killed at lock.acquired #12", "exit 0", ...
  std::string output;  // what it printed (truncated)
};

struct RunReport {
  std::string scenario;
  std::uint64_t seed = 0;
  unsigned workers = 0;
  double duration_s = 0;
  std::uint64_t operations = 0;
  std::uint64_t kills = 0;
  std::uint64_t recoveries = 0;
  std::uint64_t stalls = 0;
  std::uint64_t leaked_bytes = 0;  // heap bytes no scenario data reaches after the run
  std::vector<std::string> violations;
  std::map<std::string, PointCounts> fault_points;
  std::vector<WorkerSummary> worker_log;
  std::vector<RunEvent> events;
  std::vector<LockHold> lock_holds;        // sampled; at most 20,000
  std::vector<std::string> victim_stacks;  // the first few, as text
  std::string diagnostics;                 // crash / hang stacks and lock holders
  std::string replay_command;
  std::string worker_source;  // "fork", "zygote" (fork mode, threaded caller) or "spawn"
  bool interrupted = false;   // stopped early by RunOptions::stop_requested
  double kill_cycles_per_s() const {
    return duration_s > 0 ? static_cast<double>(kills) / duration_s : 0;
  }
  bool ok() const { return violations.empty(); }
  std::string summary() const;  // a few lines for people
};

struct Progress {
  double elapsed_s;
  std::uint64_t operations;
  std::uint64_t kills;
  std::uint64_t recoveries;
  std::size_t violations;
};

class Harness {
 public:
  using ProgressCallback = std::function<void(const Progress&)>;
  RunReport run(Scenario& scenario, const RunOptions& options,
                const ProgressCallback& progress = {});
};

// In a program used as a spawn-mode worker: call first in main(). Returns -1
// when argv is not a worker invocation (carry on as usual), else the exit
// status the program must return. `make` builds the scenario named in argv.
using ScenarioFactory = std::function<std::unique_ptr<Scenario>(std::string_view name)>;
int run_spawned_worker(int argc, char** argv, const ScenarioFactory& make);

// A run's replay token: the scenario and every plan option, in one word
// ("shmutils1:counter:seed=42:workers=4:..."), and its inverse (throws
// InvalidArgument on a malformed token).
std::string replay_token(const std::string& scenario, const RunOptions& options);
struct ReplaySpec {
  std::string scenario;
  RunOptions options;
};
ReplaySpec parse_replay_token(std::string_view token);

// The command that replays a run: `<program> --replay <token>`.
std::string replay_command(const std::string& scenario, const RunOptions& options);

}  // namespace shmutils::framework
