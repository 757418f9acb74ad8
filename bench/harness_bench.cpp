// Harness benchmarks: kill+recover cycles per second of the counter scenario
// against a hand-made fork/kill/waitpid/recover loop doing the same work, and
// the latency of capturing a victim's stack.
#include <algorithm>
#include <csignal>
#include <new>
#include <random>
#include <vector>

#include "comparison.hpp"
#include "shmutils/framework/builtin_scenarios.hpp"
#include "shmutils/framework/child_process.hpp"
#include "shmutils/framework/harness.hpp"
#include "shmutils/framework/stack_capture.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::bench {
namespace {

constexpr unsigned kWorkers = 4;

double g_run_seconds = 3.0;

void harness_counter_cycles(benchmark::State& state) {
  double cycles_per_s = 0;
  for (auto _ : state) {
    framework::CounterScenario scenario;
    framework::RunOptions options;
    options.seed = 12345;
    options.workers = kWorkers;
    options.duration_s = g_run_seconds;
    options.kills_per_s = 1e9;  // as fast as the harness can
    options.stalls_per_s = 0;
    framework::RunReport report = framework::Harness().run(scenario, options);
    state.SetIterationTime(report.duration_s);
    if (!report.ok()) {
      state.SkipWithError("the counter scenario reported a violation");
      return;
    }
    cycles_per_s = report.kill_cycles_per_s();
  }
  state.counters["value"] = cycles_per_s;
}

struct RawCounter {
  Mutex lock;
  std::uint64_t value;
};

// The hand-made loop: the same workers, SIGKILL one at random, reap it, fork
// its replacement, take the lock (repairing on owner death). No perturbation,
// witness, plan, stacks or checks.
void raw_kill_loop_cycles(benchmark::State& state) {
  double cycles_per_s = 0;
  for (auto _ : state) {
    Segment segment = Segment::create_anonymous(1 << 20);
    auto* counter = new (segment.user_area().data()) RawCounter{};
    auto spawn = [counter] {
      return framework::ChildProcess::fork([counter] {
        for (;;) {
          MutexGuard guard(counter->lock);
          if (guard.owner_died()) guard.mark_consistent();
          ++counter->value;
        }
        return 0;
      });
    };
    std::vector<framework::ChildProcess> workers;
    for (unsigned i = 0; i < kWorkers; ++i) workers.push_back(spawn());
    std::mt19937_64 random(1);
    std::uint64_t start = sys::monotonic_ns();
    std::uint64_t end = start + static_cast<std::uint64_t>(g_run_seconds * 1e9);
    std::uint64_t cycles = 0;
    while (sys::monotonic_ns() < end) {
      auto& victim = workers[std::uniform_int_distribution<std::size_t>(0, kWorkers - 1)(random)];
      victim.kill();
      victim = spawn();
      MutexGuard guard(counter->lock);
      if (guard.owner_died()) guard.mark_consistent();
      ++cycles;
    }
    double seconds = static_cast<double>(sys::monotonic_ns() - start) / 1e9;
    state.SetIterationTime(seconds);
    cycles_per_s = static_cast<double>(cycles) / seconds;
  }
  state.counters["value"] = cycles_per_s;
}

// Stack captures of a worker busy taking and releasing a robust mutex.
void victim_stack_capture(benchmark::State& state) {
  Segment segment = Segment::create_anonymous(1 << 20);
  auto* counter = new (segment.user_area().data()) RawCounter{};
  auto worker = framework::ChildProcess::fork([counter] {
    for (;;) {
      MutexGuard guard(counter->lock);
      ++counter->value;
    }
    return 0;
  });
  sys::sleep_ns(20'000'000);
  std::vector<double> samples_ms;
  for (auto _ : state) {
    std::uint64_t t0 = sys::monotonic_ns();
    framework::StackTrace trace = framework::capture_stack(worker.pid());
    double ms = static_cast<double>(sys::monotonic_ns() - t0) / 1e6;
    state.SetIterationTime(ms / 1e3);
    if (trace.frames.empty()) {
      state.SkipWithError(("no stack: " + trace.error).c_str());
      return;
    }
    samples_ms.push_back(ms);
  }
  std::sort(samples_ms.begin(), samples_ms.end());
  state.counters["p99_ms"] =
      samples_ms[std::min(samples_ms.size() - 1, samples_ms.size() * 99 / 100)];
  state.counters["median_ms"] = samples_ms[samples_ms.size() / 2];
  state.counters["budget_ms"] = 10.0;  // the goal: p99 within 10 ms
}

}  // namespace

void register_harness_benchmarks(bool quick) {
  g_run_seconds = quick ? 2.0 : 4.0;
  benchmark::RegisterBenchmark("kill_cycles/harness_counter", &harness_counter_cycles)
      ->UseManualTime()
      ->Iterations(1);
  benchmark::RegisterBenchmark("kill_cycles/raw_loop", &raw_kill_loop_cycles)
      ->UseManualTime()
      ->Iterations(1);
  benchmark::RegisterBenchmark("stack_capture/victim", &victim_stack_capture)
      ->UseManualTime()
      ->Iterations(quick ? 100 : 300);
}

std::vector<RowSpec> harness_rows() {
  return {
      {"kill+recover cycles, counter scenario", "1/s", "kill_cycles/harness_counter:value",
       "raw fork+kill+waitpid loop", "kill_cycles/raw_loop:value", true, 0.8},
      {"victim stack capture, p99", "ms", "stack_capture/victim:p99_ms", "10 ms budget",
       "stack_capture/victim:budget_ms", false, 1.0},
  };
}

}  // namespace shmutils::bench
