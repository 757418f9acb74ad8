#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "shmutils/framework/harness.hpp"
#include "shmutils/shm/error.hpp"

namespace shmutils::framework {

namespace {
// The shortest text that reads back as exactly `value`.
std::string exact(double value) {
  std::array<char, 32> text{};
  auto [end, error] = std::to_chars(text.data(), text.data() + text.size(), value);
  (void)error;  // 32 characters hold any double
  return std::string(text.data(), end);
}
}  // namespace

// The token's last field: a checksum of everything before it, so a token
// cut short or altered anywhere is refused instead of replaying another run.
namespace {
std::string token_check(std::string_view body) {
  std::uint32_t hash = 2166136261U;
  for (char c : body) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619U;
  std::array<char, 9> text{};
  (void)std::snprintf(text.data(), text.size(), "%08x", hash);
  return text.data();
}
}  // namespace

std::string replay_token(const std::string& scenario, const RunOptions& options) {
  std::ostringstream out;
  out << "shmutils1:" << scenario << ":seed=" << options.seed << ":workers=" << options.workers
      << ":kills=" << options.max_kills << ":duration=" << exact(options.duration_s)
      << ":perturb=" << (options.perturb ? 1 : 0)
      << ":pid_namespaces=" << (options.pid_namespaces ? 1 : 0)
      << ":mode=" << (options.mode == WorkerMode::Spawn ? "spawn" : "fork")
      << ":kill_rate=" << exact(options.kills_per_s)
      << ":stall_rate=" << exact(options.stalls_per_s)
      << ":point_share=" << exact(options.point_death_share)
      << ":max_hit=" << options.max_planned_hit;
  std::string body = out.str();
  return body + ":check=" + token_check(body);
}

ReplaySpec parse_replay_token(std::string_view token) {
  auto bad = [&](const std::string& why) -> ReplaySpec {
    throw Error(ErrorKind::InvalidArgument, "replay token \"" + std::string(token) + "\"", "parse",
                why);
  };
  constexpr std::string_view kPrefix = "shmutils1:";
  if (token.substr(0, kPrefix.size()) != kPrefix) return bad("does not start with shmutils1:");
  constexpr std::string_view kCheck = ":check=";
  const std::size_t check_at = token.rfind(kCheck);
  if (check_at == std::string_view::npos) return bad("no check field (the token was cut?)");
  if (token.substr(check_at + kCheck.size()) != token_check(token.substr(0, check_at))) {
    return bad("its check field does not match (the token was cut or altered)");
  }
  std::vector<std::string> parts;
  std::string current;
  for (char c : token.substr(kPrefix.size(), check_at - kPrefix.size())) {
    if (c == ':') {
      parts.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  parts.push_back(current);
  if (parts.size() < 2 || parts[0].empty()) return bad("no scenario name");
  ReplaySpec spec;
  spec.scenario = parts[0];
  RunOptions& o = spec.options;
  // Every field, once, each a whole number or a finite decimal: a cut or
  // altered token must not replay some other run.
  auto whole = [&](const std::string& key, const std::string& value) {
    std::uint64_t result = 0;
    auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), result);
    if (value.empty() || error != std::errc() || end != value.data() + value.size()) {
      bad(key + "=" + value + " is not a whole number");
    }
    return result;
  };
  auto decimal = [&](const std::string& key, const std::string& value) {
    double result = 0;
    auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), result);
    if (value.empty() || error != std::errc() || end != value.data() + value.size() ||
        !std::isfinite(result)) {
      bad(key + "=" + value + " is not a finite number");
    }
    return result;
  };
  const std::vector<std::string> expected{"seed",       "workers",        "kills",  "duration",
                                          "perturb",    "pid_namespaces", "mode",   "kill_rate",
                                          "stall_rate", "point_share",    "max_hit"};
  std::vector<std::string> seen;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    std::size_t eq = parts[i].find('=');
    if (eq == std::string::npos) return bad("field without '=': " + parts[i]);
    std::string key = parts[i].substr(0, eq);
    std::string value = parts[i].substr(eq + 1);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) return bad(key + " given twice");
    seen.push_back(key);
    if (key == "seed") {
      o.seed = whole(key, value);
      if (o.seed == 0) bad("seed=0 names no run (a run's seed is never 0)");
    } else if (key == "workers") {
      std::uint64_t workers = whole(key, value);
      if (workers > RunLimits::kMaxWorkers) bad("workers=" + value + " is out of bounds");
      o.workers = static_cast<unsigned>(workers);
    } else if (key == "kills") {
      o.max_kills = whole(key, value);
    } else if (key == "duration") {
      o.duration_s = decimal(key, value);
    } else if (key == "perturb") {
      if (value != "0" && value != "1") return bad("perturb must be 0 or 1");
      o.perturb = value == "1";
    } else if (key == "pid_namespaces") {
      if (value != "0" && value != "1") return bad("pid_namespaces must be 0 or 1");
      o.pid_namespaces = value == "1";
    } else if (key == "mode") {
      if (value != "fork" && value != "spawn") return bad("mode must be fork or spawn");
      o.mode = value == "spawn" ? WorkerMode::Spawn : WorkerMode::Fork;
    } else if (key == "kill_rate") {
      o.kills_per_s = decimal(key, value);
    } else if (key == "stall_rate") {
      o.stalls_per_s = decimal(key, value);
    } else if (key == "point_share") {
      o.point_death_share = decimal(key, value);
    } else if (key == "max_hit") {
      o.max_planned_hit = whole(key, value);
    } else {
      return bad("unknown field " + key);
    }
  }
  for (const std::string& key : expected) {
    if (std::find(seen.begin(), seen.end(), key) == seen.end()) {
      return bad("no " + key + " field (the token was cut?)");
    }
  }
  if (std::string problem = run_options_problem(o); !problem.empty()) return bad(problem);
  return spec;
}

std::string replay_command(const std::string& scenario, const RunOptions& options) {
  return options.program + " --replay " + replay_token(scenario, options);
}

}  // namespace shmutils::framework
