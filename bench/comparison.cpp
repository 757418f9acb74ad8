#include "comparison.hpp"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

namespace shmutils::bench {

void CollectingReporter::ReportRuns(const std::vector<Run>& runs) {
  ConsoleReporter::ReportRuns(runs);
  for (const Run& run : runs) {
    if (run.error_occurred) continue;
    bool aggregate = run.run_type == Run::RT_Aggregate;
    if (aggregate && run.aggregate_name != "median") continue;
    std::string name = run.run_name.function_name;  // as registered, without /iterations:N etc.
    for (const auto& [counter, value] : run.counters) {
      std::string key = name + ":" + counter;
      if (aggregate || !has_median_.count(key)) {
        figures_[key] = value.value;
        if (aggregate) has_median_[key] = true;
      }
    }
    double value = 0;
    if (auto it = run.counters.find("value"); it != run.counters.end()) {
      value = it->second.value;
    } else {
      value = run.GetAdjustedRealTime();  // in the run's time unit: ns for ours
    }
    // A median, when there is one, replaces the single runs' figures.
    if (aggregate || figures_.count(name) == 0 || !has_median_.count(name)) {
      figures_[name] = value;
      if (aggregate) has_median_[name] = true;
    }
  }
}

std::optional<double> CollectingReporter::figure(const std::string& benchmark) const {
  auto it = figures_.find(benchmark);
  if (it == figures_.end()) return std::nullopt;
  return it->second;
}

std::vector<Row> compare(const CollectingReporter& reporter, const std::vector<RowSpec>& specs) {
  std::vector<Row> rows;
  for (const RowSpec& spec : specs) {
    auto ours = reporter.figure(spec.ours);
    auto peer = reporter.figure(spec.peer_run);
    if (!ours || !peer || *ours <= 0 || *peer <= 0) {
      std::fprintf(stderr, "compare: no figure for %s or %s; row \"%s\" left out\n",
                   spec.ours.c_str(), spec.peer_run.c_str(), spec.metric.c_str());
      continue;
    }
    Row row{spec, *ours, *peer, spec.higher_is_better ? *ours / *peer : *peer / *ours};
    rows.push_back(row);
  }
  return rows;
}

void print_table(const std::vector<Row>& rows) {
  std::printf("\n%-44s %-8s %12s  %-26s %12s %10s %8s\n", "metric", "unit", "ours", "peer",
              "peer_value", "advantage", "goal");
  for (const Row& row : rows) {
    char goal[32] = "-";
    if (row.spec.goal) std::snprintf(goal, sizeof goal, ">= %.2f", *row.spec.goal);
    const char* mark = !row.spec.goal ? "" : row.advantage >= *row.spec.goal ? "  met" : "  MISSED";
    std::printf("%-44s %-8s %12.3f  %-26s %12.3f %10.2f %8s%s\n", row.spec.metric.c_str(),
                row.spec.unit.c_str(), row.ours, row.spec.peer.c_str(), row.peer, row.advantage,
                goal, mark);
  }
}

void write_json(const std::vector<Row>& rows, const std::string& path, bool quick) {
  nlohmann::json out;
  out["quick"] = quick;
  out["rows"] = nlohmann::json::array();
  for (const Row& row : rows) {
    nlohmann::json r;
    r["metric"] = row.spec.metric;
    r["unit"] = row.spec.unit;
    r["ours"] = row.ours;
    r["peer"] = row.spec.peer;
    r["peer_value"] = row.peer;
    r["advantage"] = row.advantage;
    r["goal"] = row.spec.goal ? nlohmann::json(*row.spec.goal) : nlohmann::json(nullptr);
    out["rows"].push_back(r);
  }
  std::ofstream file(path);
  file << out.dump(2) << "\n";
  if (!file) std::fprintf(stderr, "compare: could not write %s\n", path.c_str());
}

}  // namespace shmutils::bench
