// The comparison table bench/compare prints: each row sets one of our figures
// against one peer's, measured in the same run, as an advantage ("how many
// times better ours is": above 1 means ahead) next to the goal aimed at.
#pragma once

#include <benchmark/benchmark.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace shmutils::bench {

// Keeps every run's figure while printing the usual console output. A
// benchmark's figure is its "value" counter if it sets one, else its real
// time per iteration in ns; "name:counter" names each counter. With
// repetitions, the median is kept.
class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override;
  std::optional<double> figure(const std::string& benchmark) const;

 private:
  std::map<std::string, double> figures_;
  std::map<std::string, bool> has_median_;
};

struct RowSpec {
  std::string metric;
  std::string unit;
  std::string ours;      // benchmark name of our figure
  std::string peer;      // the peer's display name
  std::string peer_run;  // benchmark name of the peer's figure
  bool higher_is_better;
  std::optional<double> goal;  // advantage aimed at
};

struct Row {
  RowSpec spec;
  double ours = 0;
  double peer = 0;
  double advantage = 0;
};

std::vector<Row> compare(const CollectingReporter& reporter, const std::vector<RowSpec>& specs);
void print_table(const std::vector<Row>& rows);
void write_json(const std::vector<Row>& rows, const std::string& path, bool quick);

// The rows each benchmark file contributes.
std::vector<RowSpec> lock_rows();

}  // namespace shmutils::bench
