#include "report_writer.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

namespace shmutils::tools {

std::string to_json(const TortureRun& run) {
  nlohmann::json out;
  double duration = 0;
  std::uint64_t kills = 0, recoveries = 0, violations = 0;
  out["scenarios"] = nlohmann::json::array();
  for (const auto& r : run.scenarios) {
    duration += r.duration_s;
    kills += r.kills;
    recoveries += r.recoveries;
    violations += r.violations.size();
    nlohmann::json s;
    s["name"] = r.scenario;
    s["workers"] = r.workers;
    s["operations"] = r.operations;
    s["kills"] = r.kills;
    s["recoveries"] = r.recoveries;
    s["violations"] = r.violations.size();
    s["violation_messages"] = r.violations;
    s["stalls"] = r.stalls;
    s["leaked_bytes"] = r.leaked_bytes;
    s["duration_s"] = r.duration_s;
    s["kill_cycles_per_s"] = r.kill_cycles_per_s();
    s["replay"] = r.replay_command;
    nlohmann::json points = nlohmann::json::object();
    for (const auto& [name, counts] : r.fault_points) {
      points[name] = {{"hits", counts.hits}, {"kills", counts.kills}};
    }
    s["fault_points"] = points;
    nlohmann::json bases = nlohmann::json::array();
    for (const auto& w : r.worker_log) {
      char hex[32];
      std::snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(w.mapped_base));
      bases.push_back(hex);
    }
    s["mapped_bases"] = bases;
    s["victim_stacks"] = r.victim_stacks;
    s["diagnostics"] = r.diagnostics;
    out["scenarios"].push_back(s);
  }
  out["seed"] = run.seed;
  out["interrupted"] = run.interrupted_by != 0;
  out["duration_s"] = duration;
  out["kills"] = kills;
  out["recoveries"] = recoveries;
  out["violations"] = violations;
  out["kill_cycles_per_s"] = duration > 0 ? static_cast<double>(kills) / duration : 0.0;
  return out.dump(2) + "\n";
}

namespace {

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

const char* colour_of(const std::string& end) {
  if (end.rfind("kill (fault point)", 0) == 0) return "#d9480f";
  if (end.rfind("kill (lock holder)", 0) == 0) return "#c2255c";
  if (end.rfind("kill", 0) == 0) return "#e8590c";
  if (end.rfind("crash", 0) == 0 || end.rfind("hang", 0) == 0) return "#000000";
  return "#2f9e44";
}

// One SVG timeline: lanes are reused by the incarnations that replace each other.
std::string timeline(const framework::RunReport& r) {
  std::vector<framework::WorkerSummary> log = r.worker_log;
  std::sort(log.begin(), log.end(),
            [](const auto& a, const auto& b) { return a.started_s < b.started_s; });
  std::vector<double> lane_free;
  std::vector<std::size_t> lane_of(log.size());
  for (std::size_t i = 0; i < log.size(); ++i) {
    std::size_t lane = 0;
    while (lane < lane_free.size() && lane_free[lane] > log[i].started_s + 1e-9) ++lane;
    if (lane == lane_free.size()) lane_free.push_back(0);
    lane_free[lane] = log[i].ended_s;
    lane_of[i] = lane;
  }
  const double width = 1100, left = 70, lane_height = 22, top = 30;
  double span = std::max(r.duration_s, 1e-3);
  auto x = [&](double t) { return left + t / span * width; };
  std::ostringstream svg;
  double height = top + lane_height * static_cast<double>(lane_free.size() + 1) + 20;
  svg << "<svg width=\"" << left + width + 20 << "\" height=\"" << height << "\" font-size=\"11\">";
  for (int tick = 0; tick <= 10; ++tick) {
    double t = span * tick / 10;
    svg << "<line x1=\"" << x(t) << "\" y1=\"" << top - 8 << "\" x2=\"" << x(t) << "\" y2=\""
        << height - 20 << "\" stroke=\"#eee\"/><text x=\"" << x(t) - 10 << "\" y=\"" << top - 12
        << "\">" << t << "s</text>";
  }
  for (std::size_t lane = 0; lane < lane_free.size(); ++lane) {
    svg << "<text x=\"4\" y=\"" << top + lane_height * static_cast<double>(lane) + 14
        << "\">worker " << lane << "</text>";
  }
  for (std::size_t i = 0; i < log.size(); ++i) {
    const auto& w = log[i];
    double y = top + lane_height * static_cast<double>(lane_of[i]);
    char base[32];
    std::snprintf(base, sizeof base, "0x%llx", static_cast<unsigned long long>(w.mapped_base));
    svg << "<rect x=\"" << x(w.started_s) << "\" y=\"" << y + 3 << "\" width=\""
        << std::max(1.0, x(w.ended_s) - x(w.started_s)) << "\" height=\"" << lane_height - 6
        << "\" fill=\"#74c0fc\"><title>incarnation " << w.incarnation << ", pid " << w.pid
        << ", mapped at " << base << "\n"
        << escape(w.end) << "</title></rect>";
    svg << "<rect x=\"" << x(w.ended_s) - 1.5 << "\" y=\"" << y + 1 << "\" width=\"3\" height=\""
        << lane_height - 2 << "\" fill=\"" << colour_of(w.end) << "\"><title>" << escape(w.end)
        << "</title></rect>";
  }
  // Sampled lock holds: a dark band inside the holder's bar.
  std::map<std::uint32_t, std::size_t> lane_by_incarnation;
  for (std::size_t i = 0; i < log.size(); ++i) lane_by_incarnation[log[i].incarnation] = lane_of[i];
  for (const auto& hold : r.lock_holds) {
    auto lane = lane_by_incarnation.find(hold.incarnation);
    if (lane == lane_by_incarnation.end()) continue;
    double y = top + lane_height * static_cast<double>(lane->second);
    svg << "<rect x=\"" << x(hold.start_s) << "\" y=\"" << y + 8 << "\" width=\""
        << std::max(1.0, x(hold.end_s) - x(hold.start_s)) << "\" height=\"" << lane_height - 16
        << "\" fill=\"#1864ab\"><title>holds " << escape(hold.lock) << " from " << hold.start_s
        << " s to " << hold.end_s << " s</title></rect>";
  }
  double y_events = top + lane_height * static_cast<double>(lane_free.size());
  svg << "<text x=\"4\" y=\"" << y_events + 14 << "\">events</text>";
  for (const auto& e : r.events) {
    const char* colour = nullptr;
    if (e.kind == framework::EventKind::Recovery) colour = "#2f9e44";
    if (e.kind == framework::EventKind::Violation || e.kind == framework::EventKind::Hang)
      colour = "#e03131";
    if (e.kind == framework::EventKind::Stall) colour = "#868e96";
    if (colour == nullptr) continue;
    svg << "<circle cx=\"" << x(e.t_s) << "\" cy=\"" << y_events + 10 << "\" r=\"3\" fill=\""
        << colour << "\"><title>" << escape(std::string(framework::to_string(e.kind))) << " "
        << escape(e.detail) << "</title></circle>";
  }
  svg << "</svg>";
  return svg.str();
}

}  // namespace

std::string to_html(const TortureRun& run) {
  std::ostringstream html;
  html << "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>shmtorture report</title>"
          "<style>body{font-family:sans-serif;margin:20px}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f1f3f5}"
          "pre{background:#f8f9fa;padding:8px;overflow:auto}.bad{color:#c92a2a}.ok{color:#2b8a3e}"
          ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}</style>"
          "</head><body>";
  html << "<h1>shmtorture report</h1><p>seed " << run.seed
       << (run.interrupted_by != 0 ? " &mdash; interrupted before the end" : "") << "</p>";
  html << "<table><tr><th>scenario</th><th>workers</th><th>operations</th><th>kills</"
          "th><th>recoveries</th>"
          "<th>violations</th><th>kill cycles/s</th></tr>";
  for (const auto& r : run.scenarios) {
    html << "<tr><td style=\"text-align:left\">" << escape(r.scenario) << "</td><td>" << r.workers
         << "</td><td>" << r.operations << "</td><td>" << r.kills << "</td><td>" << r.recoveries
         << "</td><td class=\"" << (r.violations.empty() ? "ok" : "bad") << "\">"
         << r.violations.size() << "</td><td>" << static_cast<long long>(r.kill_cycles_per_s())
         << "</td></tr>";
  }
  html << "</table><p class=\"legend\">lane end marks: <span "
          "style=\"background:#d9480f\"></span>killed at a fault point"
          "<span style=\"background:#c2255c\"></span>killed holding a lock<span "
          "style=\"background:#e8590c\"></span>"
          "killed at random<span style=\"background:#000\"></span>crash or hang<span "
          "style=\"background:#2f9e44\"></span>"
          "exited; dark band: holding a lock (sampled); events: green recovery, grey stall, red "
          "violation. "
          "Hover for details.</p>";
  for (const auto& r : run.scenarios) {
    html << "<h2>" << escape(r.scenario) << "</h2>";
    for (const auto& v : r.violations)
      html << "<p class=\"bad\">VIOLATION: " << escape(v) << "</p>";
    if (!r.violations.empty())
      html << "<p>replay: <code>" << escape(r.replay_command) << "</code></p>";
    html << timeline(r);
    html << "<h3>fault points</h3><table><tr><th>point</th><th>hits</th><th>kills</th></tr>";
    for (const auto& [name, counts] : r.fault_points) {
      html << "<tr><td style=\"text-align:left\">" << escape(name) << "</td><td>" << counts.hits
           << "</td><td>" << counts.kills << "</td></tr>";
    }
    html << "</table>";
    if (!r.victim_stacks.empty()) {
      html << "<h3>stacks of the first victims, taken just before the kill</h3>";
      for (const auto& s : r.victim_stacks) html << "<pre>" << escape(s) << "</pre>";
    }
    if (!r.diagnostics.empty())
      html << "<h3>diagnostics</h3><pre>" << escape(r.diagnostics) << "</pre>";
  }
  html << "</body></html>\n";
  return html.str();
}

}  // namespace shmutils::tools
