// shmtorture as users run it: the JSON contract, spawn mode, replay tokens,
// and no orphan left behind when the harness itself is SIGKILLed.
#include <gtest/gtest.h>

#include <unistd.h>
#include <array>

#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "shmutils/framework/builtin_scenarios.hpp"
#include "shmutils/framework/child_process.hpp"
#include "shmutils/framework/harness.hpp"
#include "shmutils/framework/pid_namespace.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"

namespace shmutils::framework {
namespace {

std::string temp_path(const std::string& stem) {
  return "/tmp/shmutils-" + stem + "-" + std::to_string(::getpid());
}

ExitStatus run_shmtorture(const std::vector<std::string>& args, std::chrono::seconds deadline) {
  std::vector<std::string> argv{"shmtorture", "--quiet"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = ChildProcess::spawn(SHMUTILS_SHMTORTURE_PATH, argv);
  auto status = child.wait_for(deadline);
  if (!status) {
    ADD_FAILURE() << "shmtorture did not finish in " << deadline.count() << " s";
    return child.kill();
  }
  return *status;
}

TEST(ShmtortureTest, WritesTheJsonContractAndASelfContainedHtmlTimeline) {
  std::string json_path = temp_path("report.json");
  std::string html_path = temp_path("report.html");
  // Bounded by kills (the duration is the deadline): a loaded machine takes
  // longer, never sees fewer.
  auto status =
      run_shmtorture({"--scenario", "counter", "--scenario", "semaphore", "--kills", "20",
                      "--duration", "2", "--seed", "77", "--json", json_path, "--html", html_path},
                     std::chrono::seconds(200));
  EXPECT_TRUE(status.success()) << status.to_string();
  nlohmann::json report = nlohmann::json::parse(std::ifstream(json_path));
  ::unlink(json_path.c_str());
  for (const char* key : {"seed", "duration_s", "kills", "recoveries", "violations",
                          "kill_cycles_per_s", "scenarios"}) {
    EXPECT_TRUE(report.contains(key)) << key;
  }
  EXPECT_EQ(report["seed"], 77);
  ASSERT_EQ(report["scenarios"].size(), 2U);
  const auto& counter = report["scenarios"][0];
  EXPECT_EQ(counter["name"], "counter");
  for (const char* key : {"workers", "operations", "kills", "recoveries", "violations",
                          "fault_points", "leaked_bytes"}) {
    EXPECT_TRUE(counter.contains(key)) << key;
  }
  EXPECT_GT(counter["kills"].get<int>(), 0);
  // By default the workers run in PID namespaces of their own where permitted.
  const bool separate = !pid_namespaces_unavailable().has_value();
  EXPECT_EQ(counter["replay"].get<std::string>().find(":pid_namespaces=1:") != std::string::npos,
            separate)
      << counter["replay"];
  EXPECT_TRUE(counter["fault_points"].contains("lock.acquired"));
  EXPECT_TRUE(counter["fault_points"]["lock.acquired"].contains("hits"));
  EXPECT_TRUE(counter["fault_points"]["lock.acquired"].contains("kills"));
  std::ifstream html(html_path);
  std::string page((std::istreambuf_iterator<char>(html)), std::istreambuf_iterator<char>());
  ::unlink(html_path.c_str());
  EXPECT_NE(page.find("<svg"), std::string::npos);
  EXPECT_NE(page.find("<title>holds counter.lock"), std::string::npos) << "lock holds are drawn";
  EXPECT_EQ(page.find("http"), std::string::npos) << "the page loads nothing from the network";
}

TEST(ShmtortureTest, BadArgumentsAreRefusedWithAUsageError) {
  EXPECT_NE(run_shmtorture({"--scenario", "no-such-scenario"}, std::chrono::seconds(10)).exit_code,
            0);
  EXPECT_NE(run_shmtorture({"--workers", "0"}, std::chrono::seconds(10)).exit_code, 0);
  EXPECT_NE(run_shmtorture({"--replay", "garbage"}, std::chrono::seconds(10)).exit_code, 0);
  EXPECT_EQ(run_shmtorture({"--help"}, std::chrono::seconds(10)).exit_code, 0);
}

TEST(ShmtortureTest, SpawnModeWorkersAttachFromDescriptorsAndPass) {
  CounterScenario scenario;
  RunOptions options;
  options.seed = 5;
  options.workers = 3;
  options.duration_s = 2.0;  // the deadline: bounded by kills
  options.max_kills = 6;
  options.kills_per_s = 20;  // an exec'd worker takes a while to start (longer under sanitizers)
  options.mode = WorkerMode::Spawn;
  options.worker_program = SHMUTILS_SHMTORTURE_PATH;
  RunReport report = Harness().run(scenario, options);
  EXPECT_TRUE(report.ok()) << report.summary() << report.diagnostics;
  EXPECT_GT(report.kills, 3U);
  EXPECT_GT(report.operations, 0U);
  std::set<std::uint64_t> bases;
  for (const auto& worker : report.worker_log) {
    if (worker.mapped_base != 0) bases.insert(worker.mapped_base);
  }
  EXPECT_GT(bases.size(), 2U) << "spawned workers map at their own random bases";
  EXPECT_EQ(bases.size(), [&] {
    std::size_t attached = 0;
    for (const auto& worker : report.worker_log) attached += worker.mapped_base != 0 ? 1 : 0;
    return attached;
  }()) << "no two workers share a base";
}

TEST(ShmtortureTest, AReplayTokenCarriesTheWholePlan) {
  RunOptions options;
  options.seed = 123456789;
  options.workers = 7;
  options.max_kills = 500;
  options.perturb = false;
  options.mode = WorkerMode::Spawn;
  options.kills_per_s = 250;
  options.stalls_per_s = 3;
  options.point_death_share = 0.25;
  options.max_planned_hit = 77;
  ReplaySpec spec = parse_replay_token(replay_token("shared_mutex", options));
  EXPECT_EQ(spec.scenario, "shared_mutex");
  EXPECT_EQ(spec.options.seed, options.seed);
  EXPECT_EQ(spec.options.workers, options.workers);
  EXPECT_EQ(spec.options.max_kills, options.max_kills);
  EXPECT_EQ(spec.options.perturb, options.perturb);
  EXPECT_EQ(spec.options.mode, options.mode);
  EXPECT_EQ(spec.options.kills_per_s, options.kills_per_s);
  EXPECT_EQ(spec.options.stalls_per_s, options.stalls_per_s);
  EXPECT_EQ(spec.options.point_death_share, options.point_death_share);
  EXPECT_EQ(spec.options.max_planned_hit, options.max_planned_hit);
  for (const char* bad :
       {"", "counter", "shmutils1:", "shmutils1:counter:seed=x", "shmutils1:counter:colour=red",
        "shmutils1:counter:mode=thread", "shmutils1:counter:workers=0"}) {
    EXPECT_THROW(parse_replay_token(bad), Error) << bad;
  }
  EXPECT_NE(replay_command("counter", options).find(" --replay shmutils1:counter:"),
            std::string::npos);
}

// A token cut short, altered, or beyond the options' bounds is refused, never
// read as some other run; decimals come back exactly.
TEST(ShmtortureTest, AReplayTokenIsParsedStrictlyAndWithinTheOptionsBounds) {
  RunOptions options;
  options.seed = 1;
  options.duration_s = 20.0 / 3;  // no short decimal
  options.point_death_share = 0.1;
  const std::string token = replay_token("counter", options);
  EXPECT_EQ(parse_replay_token(token).options.duration_s, options.duration_s) << token;
  for (std::size_t cut = token.size() - 1; cut > 10; --cut) {
    EXPECT_THROW(parse_replay_token(token.substr(0, cut)), Error) << token.substr(0, cut);
  }
  std::string altered = token;
  altered[altered.find("seed=1") + 5] = '2';
  EXPECT_THROW(parse_replay_token(altered), Error) << altered;
  // Tokens written out of bounds, with their checks made to match: the bounds
  // of the command line hold for them too.
  RunOptions defaults;
  defaults.seed = 3;
  defaults.duration_s = 2;
  const std::string full = replay_token("counter", defaults);
  EXPECT_NO_THROW(parse_replay_token(full));
  auto with = [&](const std::string& field, const std::string& value) {
    std::string body = full.substr(0, full.rfind(":check="));
    std::size_t at = body.find(":" + field + "=") + field.size() + 2;
    std::size_t end = body.find(':', at);
    body = body.substr(0, at) + value + (end == std::string::npos ? "" : body.substr(end));
    std::uint32_t hash = 2166136261U;
    for (char c : body) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619U;
    std::array<char, 9> check{};
    std::snprintf(check.data(), check.size(), "%08x", hash);
    return body + ":check=" + check.data();
  };
  for (const auto& [field, value] :
       std::vector<std::pair<std::string, std::string>>{{"seed", "12abc"},
                                                        {"seed", "-1"},
                                                        {"seed", "0"},
                                                        {"workers", "1000"},
                                                        {"workers", "-1"},
                                                        {"workers", "0"},
                                                        {"kills", "10000000"},
                                                        {"duration", "1e308"},
                                                        {"duration", "nan"},
                                                        {"duration", "0"},
                                                        {"kill_rate", "inf"},
                                                        {"point_share", "2"},
                                                        {"perturb", "yes"},
                                                        {"max_hit", "0"}}) {
    EXPECT_THROW(parse_replay_token(with(field, value)), Error) << with(field, value);
  }
  EXPECT_THROW(parse_replay_token(with("max_hit", "200:seed=2")), Error) << "a field given twice";
}

TEST(ShmtortureTest, BadArgumentsAreRefusedBeforeAnyRunWithExitStatus2) {
  const std::string json = temp_path("unwritable") + "/no/such/dir/report.json";
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--duration", "nan"},
                                             {"--kills", "100000"},
                                             {"--replay", ""},
                                             {"--replay", "shmutils1:counter:seed=12abc"},
                                             {"--json", json, "--duration", "0.2"}}) {
    ExitStatus status = run_shmtorture(args, std::chrono::seconds(30));
    EXPECT_EQ(status.exit_code, 2) << args[0] << " " << args[1] << ": " << status.to_string();
  }
}

// Ctrl-C or SIGTERM ends a long run at once, as its end would: reports
// written and marked interrupted, exit 128 + the signal.
TEST(ShmtortureTest, SigintAndSigtermStopTheRunAndWriteReportsMarkedInterrupted) {
  for (int signal : {SIGINT, SIGTERM}) {
    std::string json_path = temp_path("interrupted.json");
    std::string html_path = temp_path("interrupted.html");
    ::unlink(json_path.c_str());
    auto torture = ChildProcess::spawn(
        SHMUTILS_SHMTORTURE_PATH,
        {"shmtorture", "--quiet", "--scenario", "counter", "--scenario", "semaphore", "--duration",
         "600", "--json", json_path, "--html", html_path});
    // The report files are created before the run starts.
    const std::uint64_t until = sys::monotonic_ns() + 30'000'000'000ULL;
    while (::access(json_path.c_str(), F_OK) != 0 && sys::monotonic_ns() < until) {
      sys::sleep_ns(10'000'000);
    }
    sys::sleep_ns(300'000'000);  // well into the first scenario (any moment would do)
    ASSERT_TRUE(torture.signal(signal));
    auto status = torture.wait_for(std::chrono::seconds(60));
    ASSERT_TRUE(status.has_value()) << "still running after " << sys::signal_name(signal);
    EXPECT_EQ(status->exit_code, 128 + signal) << status->to_string();
    nlohmann::json report = nlohmann::json::parse(std::ifstream(json_path));
    EXPECT_EQ(report["interrupted"], true);
    EXPECT_EQ(report["scenarios"].size(), 1U) << "the second scenario ran after the signal";
    ::unlink(json_path.c_str());
    ::unlink(html_path.c_str());
  }
}

TEST(ShmtortureTest, ItsWorkersDieWithItWhenItIsKilled) {
  auto torture = ChildProcess::spawn(
      SHMUTILS_SHMTORTURE_PATH, {"shmtorture", "--quiet", "--scenario", "counter", "--duration",
                                 "30", "--json", "/dev/null", "--html", "/dev/null"});
  // Every descendant: a worker in a PID namespace of its own sits under its
  // namespace's init and a carrier.
  auto descendants = [](pid_t root) {
    std::vector<pid_t> found = sys::child_pids(root);
    for (std::size_t i = 0; i < found.size(); ++i) {
      for (pid_t child : sys::child_pids(found[i])) found.push_back(child);
    }
    return found;
  };
  std::vector<pid_t> workers;
  std::uint64_t until = sys::monotonic_ns() + 10'000'000'000ULL;
  while (workers.size() < 4 && sys::monotonic_ns() < until) {
    sys::sleep_ns(20'000'000);
    workers = descendants(torture.pid());
  }
  ASSERT_GE(workers.size(), 4U) << "shmtorture started no workers";
  torture.kill();
  until = sys::monotonic_ns() + 5'000'000'000ULL;
  for (pid_t worker : workers) {
    while (sys::process_start_time(worker).has_value() && sys::monotonic_ns() < until) {
      sys::sleep_ns(5'000'000);
    }
    EXPECT_FALSE(sys::process_start_time(worker).has_value()) << "orphaned worker " << worker;
  }
}

}  // namespace
}  // namespace shmutils::framework
