// shmtorture — runs the fault-injection harness on the built-in scenarios:
// workers are forked, mapped at random addresses, killed at random, at lock
// holders and at named fault points, stalled and resumed; invariants are
// checked after every recovery and at the end. Writes a text summary, JSON
// and a self-contained HTML timeline; exits 1 on any violation.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <optional>
#include <random>

#include "cli_checks.hpp"
#include "report_writer.hpp"
#include "shmutils/framework/builtin_scenarios.hpp"
#include "shmutils/framework/harness.hpp"
#include "shmutils/framework/pid_namespace.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"

using namespace shmutils;

namespace {

// Creates (or truncates) path now, so an unwritable report path fails before
// the run instead of throwing the run away after it.
bool writable(const std::string& path) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) {
    std::fprintf(stderr, "shmtorture: cannot write a report to %s\n", path.c_str());
    return false;
  }
  return true;
}

std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "stored from a signal handler");

void request_stop(int signal) { g_stop_signal.store(signal, std::memory_order_relaxed); }

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) {
    std::fprintf(stderr, "shmtorture: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

// What the command line asks for.
struct Request {
  std::vector<std::string> scenarios;
  unsigned workers = 4;
  double duration = 0;
  std::uint64_t kills = 0;
  bool no_perturb = false;
  bool pid_namespaces = true;
  std::uint64_t seed = std::random_device{}();
  std::string json_path = "shmtorture-report.json";
  std::string html_path = "shmtorture-report.html";
  std::vector<std::string> required;
  bool quiet = false;
  double kill_rate = framework::RunOptions{}.kills_per_s;
  double stall_rate = framework::RunOptions{}.stalls_per_s;
  bool list = false;
  std::string mode = "fork";
  std::string replay;
};

void declare_options(CLI::App& app, Request& r, const std::vector<std::string>& names) {
  using framework::RunLimits;
  app.add_option("-s,--scenario", r.scenarios, "scenario(s) to run (default: all)")
      ->check(CLI::IsMember(names));
  app.add_option("-w,--workers", r.workers, "concurrent worker processes")
      ->check(CLI::Range(1U, RunLimits::kMaxWorkers))
      ->capture_default_str();
  app.add_option("-d,--duration", r.duration,
                 "seconds per scenario (default: 20 s shared among the scenarios)")
      ->check(tools::finite_in_range(RunLimits::kMinDurationS, RunLimits::kMaxDurationS));
  app.add_option("-k,--kills", r.kills,
                 "stop each scenario after this many kills instead of a duration (each kill "
                 "takes a worker incarnation, and a run has 19,000 of them)")
      ->check(CLI::Range(std::uint64_t{1}, RunLimits::kMaxKills));
  app.add_flag("--no-perturb", r.no_perturb, "map the segment at the same address in every worker");
  app.add_flag("--pid-namespaces,!--no-pid-namespaces", r.pid_namespaces,
               "run each forked worker in a PID namespace of its own, as processes of separate "
               "containers sharing /dev/shm do (the default where this process may create PID "
               "namespaces: root, or unprivileged user namespaces; see docs/liveness.md)");
  app.add_option("-m,--mode", r.mode, "fork workers from this process, or spawn (exec) them")
      ->check(CLI::IsMember({"fork", "spawn"}))
      ->capture_default_str();
  app.add_option("--seed", r.seed,
                 "the seed every kill plan derives from (printed; replays a run)");
  app.add_option("--json", r.json_path, "where to write the JSON report")->capture_default_str();
  app.add_option("--html", r.html_path, "where to write the HTML timeline")->capture_default_str();
  app.add_option("--require-point", r.required,
                 "fail unless this fault point was reached (repeatable)");
  app.add_option("--kill-rate", r.kill_rate,
                 "harness-initiated kills per second (random time or lock holder), besides the "
                 "deaths planned at fault points")
      ->check(tools::finite_in_range(0.0, RunLimits::kMaxKillRate))
      ->capture_default_str();
  app.add_option("--stall-rate", r.stall_rate, "SIGSTOP/SIGCONT stalls per second")
      ->check(tools::finite_in_range(0.0, RunLimits::kMaxStallRate))
      ->capture_default_str();
  app.add_flag("-q,--quiet", r.quiet, "no progress line");
  app.add_flag("--list", r.list, "list the scenarios and exit");
  app.add_option("--replay", r.replay, "replay a failed run from the token it printed")
      ->excludes("--scenario", "--seed", "--workers", "--duration", "--kills", "--mode",
                 "--kill-rate", "--stall-rate", "--no-perturb", "--pid-namespaces",
                 "--no-pid-namespaces");
}

// Whether the workers get PID namespaces of their own: asked (or replayed),
// possible for the mode, and permitted here (one line when not). Nothing
// when the request is refused (exit 2).
std::optional<bool> decide_pid_namespaces(const CLI::App& app, const Request& r,
                                          const std::optional<framework::ReplaySpec>& replayed) {
  bool wanted = r.pid_namespaces;
  // Spawned workers are exec'ed by this process: they share its namespace.
  if (r.mode != "fork" && wanted) {
    if (app.count("--pid-namespaces") != 0) {
      std::fprintf(stderr, "shmtorture: --pid-namespaces needs forked workers (--mode fork)\n");
      return std::nullopt;
    }
    wanted = false;
  }
  if (replayed) wanted = replayed->options.pid_namespaces;
  if (wanted) {
    if (auto why = framework::pid_namespaces_unavailable()) {
      std::printf("shmtorture: workers share this PID namespace: %s\n", why->c_str());
      wanted = false;
    }
  }
  return wanted;
}

framework::RunOptions run_options(const Request& r, bool pid_namespaces,
                                  const std::optional<framework::ReplaySpec>& replayed,
                                  const char* program) {
  framework::RunOptions options;
  if (replayed) {
    options = replayed->options;
  } else {
    options.seed = r.seed;
    options.workers = r.workers;
    options.duration_s = r.duration;
    options.max_kills = r.kills;
    options.perturb = !r.no_perturb;
    options.kills_per_s = r.kill_rate;
    options.stalls_per_s = r.stall_rate;
    options.mode = r.mode == "spawn" ? framework::WorkerMode::Spawn : framework::WorkerMode::Fork;
  }
  options.pid_namespaces = pid_namespaces;
  options.required_points = r.required;
  options.program = program;
  options.stop_requested = &g_stop_signal;
  return options;
}

// Runs each scenario in turn with a live progress line; stops after the one
// during which Ctrl-C or SIGTERM came.
tools::TortureRun run_all(const Request& r, const framework::RunOptions& options) {
  tools::TortureRun run;
  run.seed = options.seed;
  const bool interactive = !r.quiet && sys::is_terminal(STDERR_FILENO);
  for (const std::string& name : r.scenarios) {
    auto scenario = framework::make_builtin_scenario(name);
    framework::Harness harness;
    auto report = harness.run(*scenario, options, [&](const framework::Progress& p) {
      if (r.quiet) return;
      std::fprintf(
          stderr, "%s[%s] %5.1f s  ops %-10llu kills %-7llu recoveries %-7llu violations %zu%s",
          interactive ? "\r" : "", name.c_str(), p.elapsed_s,
          static_cast<unsigned long long>(p.operations), static_cast<unsigned long long>(p.kills),
          static_cast<unsigned long long>(p.recoveries), p.violations, interactive ? "   " : "\n");
    });
    if (interactive) std::fprintf(stderr, "\n");
    run.scenarios.push_back(std::move(report));
    run.interrupted_by = g_stop_signal.load();
    if (run.interrupted_by != 0) break;
  }
  return run;
}

// The summary table, every violation with its replay command, the reports;
// the exit status.
int report(const Request& r, const tools::TortureRun& run) {
  std::printf("\n%-20s %8s %12s %8s %11s %11s %14s\n", "scenario", "workers", "operations", "kills",
              "recoveries", "violations", "kill cycles/s");
  std::size_t violations = 0;
  for (const auto& s : run.scenarios) {
    std::printf(
        "%-20s %8u %12llu %8llu %11llu %11zu %14.0f\n", s.scenario.c_str(), s.workers,
        static_cast<unsigned long long>(s.operations), static_cast<unsigned long long>(s.kills),
        static_cast<unsigned long long>(s.recoveries), s.violations.size(), s.kill_cycles_per_s());
    violations += s.violations.size();
  }
  for (const auto& s : run.scenarios) {
    for (const auto& v : s.violations)
      std::printf("VIOLATION in %s: %s\n", s.scenario.c_str(), v.c_str());
    if (!s.violations.empty()) {
      std::printf("replay: %s\n", s.replay_command.c_str());
      if (!s.diagnostics.empty()) std::printf("%s", s.diagnostics.c_str());
    }
  }
  bool written =
      write_file(r.json_path, tools::to_json(run)) && write_file(r.html_path, tools::to_html(run));
  const char* verdict = violations != 0 ? "FAIL" : run.interrupted_by != 0 ? "INTERRUPTED" : "PASS";
  std::printf("\n%s: %zu violation(s)%s; reports: %s, %s\n", verdict, violations,
              run.interrupted_by != 0 ? " before the run was interrupted" : "",
              written ? r.json_path.c_str() : "(not written)", written ? r.html_path.c_str() : "");
  if (!written) return 2;
  if (violations != 0) return 1;
  return run.interrupted_by != 0 ? 128 + run.interrupted_by : 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Spawn-mode workers are this program, exec'd with a worker argv.
  if (int status = framework::run_spawned_worker(argc, argv, &framework::make_builtin_scenario);
      status >= 0) {
    return status;
  }
  CLI::App app{
      "shmtorture: runs shmutils' fault-injection harness on the built-in scenarios and reports.\n"
      "With no arguments: every scenario for about 20 s in all, a live progress line, a summary\n"
      "table, shmtorture-report.json and shmtorture-report.html in the current directory, and\n"
      "exit status 1 on any violation. Every failure prints the command that replays it."};
  Request r;
  std::vector<std::string> names;
  for (auto& s : framework::builtin_scenarios()) names.emplace_back(s->name());
  declare_options(app, r, names);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is not an error; bad arguments are 2
  }
  if (r.list) {
    for (auto& s : framework::builtin_scenarios()) {
      std::printf("%-20s %s\n", std::string(s->name()).c_str(),
                  std::string(s->description()).c_str());
    }
    return 0;
  }
  // Both reports are written after the run: find out now that they can be.
  for (const std::string& path : {r.json_path, r.html_path}) {
    if (!writable(path)) return 2;
  }
  std::optional<framework::ReplaySpec> replayed;
  if (app.count("--replay") != 0) {
    try {
      replayed = framework::parse_replay_token(r.replay);
    } catch (const Error& e) {
      std::fprintf(stderr, "shmtorture: %s\n", e.what());
      return 2;
    }
    if (!framework::make_builtin_scenario(replayed->scenario)) {
      std::fprintf(stderr, "shmtorture: the replay token names an unknown scenario %s\n",
                   replayed->scenario.c_str());
      return 2;
    }
    r.scenarios = {replayed->scenario};
  }
  if (r.scenarios.empty()) r.scenarios = names;
  if (r.duration == 0) r.duration = 20.0 / static_cast<double>(r.scenarios.size());
  std::optional<bool> pid_namespaces = decide_pid_namespaces(app, r, replayed);
  if (!pid_namespaces) return 2;
  const framework::RunOptions options = run_options(r, *pid_namespaces, replayed, argv[0]);
  // Ctrl-C or SIGTERM: the running scenario stops as at its end (workers
  // stopped, invariants checked), the reports say interrupted, exit 128 + signal.
  sys::set_signal_handler(SIGINT, &request_stop, 0);
  sys::set_signal_handler(SIGTERM, &request_stop, 0);
  const std::string amount = options.max_kills != 0
                                 ? std::to_string(options.max_kills) + " kills each"
                                 : std::to_string(options.duration_s) + " s each";
  std::printf("shmtorture: seed %llu, %u workers%s, %s, %zu scenario(s)\n",
              static_cast<unsigned long long>(options.seed), options.workers,
              options.pid_namespaces ? " (each in its own PID namespace)" : "", amount.c_str(),
              r.scenarios.size());
  try {
    return report(r, run_all(r, options));
  } catch (const Error& e) {
    std::fprintf(stderr, "shmtorture: %s\n", e.what());
    return 2;
  }
}
