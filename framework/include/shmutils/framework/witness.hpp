// shmutils::framework::Witness — the harness's memory that outlives workers:
// what each worker incarnation is doing, how often each fault point was hit
// and killed at, and the in-flight record a scenario uses to resolve a killed
// operation's outcome instead of guessing it.
//
// Contract
//   Lives:       in its own anonymous segment, created by the harness before
//                any worker and shared with all of them (never in the segment
//                under test, so a scenario bug cannot corrupt the evidence).
//   Writers:     each worker writes only its own WorkerRecord; fault-point
//                counters are atomic and shared.
//   Layout:      fixed arrays (kMaxWorkers incarnations, kMaxPoints points).
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace shmutils::framework {

enum class WorkerState : std::uint32_t {
  Unused = 0,
  Starting,
  Running,
  StoppedAtFaultPoint,  // raised SIGSTOP at its planned point; the harness captures and kills
  Finished,
};

struct WorkerRecord {
  std::atomic<std::uint32_t> state;
  std::atomic<std::int32_t> pid;
  std::atomic<std::uint64_t> operations;       // completed operations
  std::atomic<std::uint64_t> mapped_base;      // where this worker mapped the segment
  std::atomic<std::int32_t> planned_point;     // fault point index to die at; -1: none
  std::atomic<std::uint64_t> planned_hit;      // ... at this hit of it in this worker
  std::atomic<std::int32_t> stopped_at_point;  // the point it stopped at
  std::atomic<std::uint64_t> started_ns;
  std::atomic<std::uint64_t> ended_ns;
  // The worker's own pid and PID namespace, as lock holders record them (in
  // its own namespace: `pid` is the harness's number for it).
  std::atomic<std::int32_t> own_pid;
  std::atomic<std::uint64_t> pid_namespace;
  // Scenario-defined in-flight record (an intent), written by the worker
  // before an operation and cleared after; read by the oracle after a kill.
  std::array<std::atomic<std::uint64_t>, 8> in_flight;
};

class Witness {
 public:
  static constexpr std::uint32_t kMaxWorkers = 20000;
  static constexpr std::uint32_t kMaxPoints = 64;
  static constexpr std::size_t kPointNameSize = 48;

  WorkerRecord& worker(std::uint32_t incarnation) noexcept { return workers_[incarnation]; }
  const WorkerRecord& worker(std::uint32_t incarnation) const noexcept {
    return workers_[incarnation];
  }

  // Registers a fault point name (harness, before workers); returns its index.
  std::int32_t add_point(std::string_view name) noexcept;
  std::int32_t point_index(std::string_view name) const noexcept;
  std::string_view point_name(std::int32_t index) const noexcept;
  std::uint32_t point_count() const noexcept { return point_count_; }

  std::atomic<std::uint64_t>& hits(std::int32_t point) noexcept { return hits_[at(point)]; }
  std::atomic<std::uint64_t>& kills(std::int32_t point) noexcept { return kills_[at(point)]; }
  std::uint64_t hits(std::int32_t point) const noexcept { return hits_[at(point)].load(); }
  std::uint64_t kills(std::int32_t point) const noexcept { return kills_[at(point)].load(); }

  // Scenario-wide oracle words (totals a scenario keeps outside its segment).
  std::atomic<std::uint64_t>& scenario(std::size_t word) noexcept { return scenario_[word]; }

 private:
  static std::size_t at(std::int32_t point) noexcept { return static_cast<std::size_t>(point); }

  std::array<std::atomic<std::uint64_t>, 16> scenario_{};
  std::uint32_t point_count_ = 0;
  std::array<std::array<char, kPointNameSize>, kMaxPoints> point_names_{};
  std::array<std::atomic<std::uint64_t>, kMaxPoints> hits_{};
  std::array<std::atomic<std::uint64_t>, kMaxPoints> kills_{};
  std::array<WorkerRecord, kMaxWorkers> workers_{};
};

static_assert(std::is_standard_layout_v<Witness>);

}  // namespace shmutils::framework
