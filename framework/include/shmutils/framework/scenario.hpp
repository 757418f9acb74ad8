// shmutils::framework::Scenario — what the harness runs: shared data, the
// operation every worker repeats, and the invariants checked after every
// recovery and at the end.
//
// Contract
//   setup():   harness process, once, in a fresh segment; put the root at the
//              start of the user area (workers find it by offset).
//   work():    a worker process (one incarnation), looping until
//              ctx.should_stop(); counts each completed operation with
//              ctx.operation_done(). It may be killed at any instruction.
//   check():   a checker process forked from the harness after setup(),
//              after each kill and at the end, waited for at most
//              RunOptions::watchdog_s: verify the invariants, return one line
//              per violation; repair what a dead holder left, counting the
//              recovery with Witness::scenario(kRecoveries). Between kills
//              (final false) workers run and may be stopped holding a lock:
//              take locks with a bound and return {} when one does not come
//              (CounterScenario::check does). At the end (final true) every
//              worker is dead and reaped: block as needed. A check still
//              running at the bound ends the run as a hang that names each
//              lock's holder (alive, stopped, or dead: how and when); one that
//              throws or crashes is a violation. leaked_bytes() runs in the
//              checker after the final check.
//   The witness (witness.hpp) holds what must survive workers: per-worker
//   completed operations and in-flight records.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shmutils/framework/witness.hpp"
#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::framework {

// Witness::scenario slots every scenario shares.
inline constexpr std::size_t kRecoveries = 0;         // repairs after a holder died
inline constexpr std::size_t kStopFlag = 1;           // set by the harness: workers finish
inline constexpr std::size_t kIncarnations = 2;       // worker incarnations started so far
inline constexpr std::size_t kKills = 3;              // workers killed so far (by the harness)
inline constexpr std::size_t kWorkerCount = 4;        // RunOptions::workers, set before any runs
inline constexpr std::size_t kFirstScenarioWord = 5;  // scenarios may use words from here

class WorkerContext {
 public:
  WorkerContext(Segment& segment, Witness& witness, std::uint32_t incarnation,
                std::uint64_t seed) noexcept
      : segment_(segment), witness_(witness), incarnation_(incarnation), random_(seed) {}

  Segment& segment() noexcept { return segment_; }
  Witness& witness() noexcept { return witness_; }
  WorkerRecord& record() noexcept { return witness_.worker(incarnation_); }
  std::uint32_t incarnation() const noexcept { return incarnation_; }
  // How many workers run at once: a lone worker (1) has nobody to take
  // turns with and plays every role itself.
  std::uint64_t workers() const noexcept {
    return witness_.scenario(kWorkerCount).load(std::memory_order_relaxed);
  }
  std::mt19937_64& random() noexcept { return random_; }
  bool should_stop() const noexcept {
    return witness_.scenario(kStopFlag).load(std::memory_order_relaxed) != 0;
  }
  void operation_done() noexcept { record().operations.fetch_add(1, std::memory_order_relaxed); }

  // The scenario's root, at the start of the user area of this attachment.
  template <class T>
  T& root() noexcept {
    return *reinterpret_cast<T*>(segment_.user_area().data());
  }

 private:
  Segment& segment_;
  Witness& witness_;
  std::uint32_t incarnation_;
  std::mt19937_64 random_;
};

struct NamedLockHolder {
  std::string lock;
  LockHolder holder;
};

class Scenario {
 public:
  virtual ~Scenario() = default;
  virtual std::string_view name() const = 0;
  virtual std::string_view description() const = 0;
  virtual std::size_t segment_size() const { return 4 << 20; }
  // The harness creates the segment with a heap (SegmentOptions::heap).
  virtual bool uses_heap() const { return false; }
  // After the final check, with every worker dead and reaped: heap bytes that
  // are live but unreachable from the scenario's data. Must be 0.
  virtual std::uint64_t leaked_bytes(Segment& /*segment*/, Witness& /*witness*/) { return 0; }
  // Fault points a worker may be planned to die at (compiled-in names).
  virtual std::vector<std::string> fault_points() const = 0;
  virtual void setup(Segment& segment, Witness& witness) = 0;
  virtual void work(WorkerContext& ctx) = 0;
  virtual std::vector<std::string> check(Segment& segment, Witness& witness, bool final) = 0;
  // Locks and who holds them: for holder kills and hang reports.
  virtual std::vector<NamedLockHolder> lock_holders(Segment& segment) = 0;

  template <class T>
  static T& root(Segment& segment) noexcept {
    return *reinterpret_cast<T*>(segment.user_area().data());
  }
};

}  // namespace shmutils::framework
