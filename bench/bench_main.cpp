// shmutils_bench — runs the benchmarks (Google Benchmark) and prints the
// comparison against the peers measured in the same run.
//
//   shmutils_bench [--quick] [--json FILE] [Google Benchmark flags...]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "comparison.hpp"

namespace shmutils::bench {
void register_lock_benchmarks(bool quick);
void register_harness_benchmarks(bool quick);
void register_heap_benchmarks(bool quick);
std::vector<RowSpec> harness_rows();
std::vector<RowSpec> heap_rows();
}  // namespace shmutils::bench

int main(int argc, char** argv) {
  bool quick = false;
  std::string json_path;
  std::vector<char*> passed{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--json") == 0) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "--json needs a file name\n");
        return 2;
      }
      json_path = argv[++i];
    } else if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::printf(
          "usage: %s [--quick] [--json FILE] [Google Benchmark flags]\n"
          "Runs shmutils' benchmarks and the peers' in one run and prints, per row, our figure,\n"
          "the peer's, the advantage (above 1: ours is better) and the goal.\n"
          "  --quick      fewer repetitions and samples (the whole run under 2 minutes)\n"
          "  --json FILE  also write the table as JSON\n",
          argv[0]);
      return 0;
    } else {
      passed.push_back(argv[i]);
    }
  }
  int passed_argc = static_cast<int>(passed.size());
  benchmark::Initialize(&passed_argc, passed.data());
  if (benchmark::ReportUnrecognizedArguments(passed_argc, passed.data())) return 2;

  shmutils::bench::register_lock_benchmarks(quick);
  shmutils::bench::register_harness_benchmarks(quick);
  shmutils::bench::register_heap_benchmarks(quick);
  shmutils::bench::CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::vector<shmutils::bench::RowSpec> specs = shmutils::bench::lock_rows();
  for (auto& row : shmutils::bench::harness_rows()) specs.push_back(row);
  for (auto& row : shmutils::bench::heap_rows()) specs.push_back(row);
  auto rows = shmutils::bench::compare(reporter, specs);
  shmutils::bench::print_table(rows);
  if (!json_path.empty()) shmutils::bench::write_json(rows, json_path, quick);
  return rows.size() == specs.size() ? 0 : 1;
}
