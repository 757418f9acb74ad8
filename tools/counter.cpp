// shmutils-counter — the seed's example in C++, with kills: N processes count
// to a target under one robust Mutex while the parent SIGKILLs workers at
// random and starts replacements. A per-worker intent record lets whoever
// takes the mutex after a death finish or undo the dead worker's increment,
// so at the end the counter equals the increments completed, exactly.
//
// The counter lives in an anonymous (memfd) segment, so nothing is left in
// /dev/shm whatever happens to this program; the workers are forked children
// owned by ChildProcess (and die with it), so none outlives it.
#include <CLI/CLI.hpp>

#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <new>
#include <optional>
#include <random>
#include <vector>

#include "shmutils/framework/child_process.hpp"
#include "shmutils/framework/kill_at.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/segment.hpp"

namespace {

constexpr std::size_t kMaxWorkers = 4096;  // every incarnation gets its own slot

// What a worker is about to do, written before it touches the counter.
struct Intent {
  std::uint64_t active;
  std::uint64_t value_before;
  std::uint64_t completed_before;
};

struct CounterState {
  shmutils::Mutex lock;
  std::uint64_t value;
  std::uint64_t target;
  std::uint64_t recoveries;      // repairs made after a holder died
  std::uint64_t rolled_forward;  // dead workers' increments found applied
  std::uint64_t rolled_back;     // dead workers' increments found not applied
  std::uint64_t completed[kMaxWorkers];
  Intent intent[kMaxWorkers];
};

// Runs under the mutex after OwnerDied: resolve the dead holder's intent.
void repair(CounterState& s, std::size_t slots) {
  for (std::size_t w = 0; w < slots; ++w) {
    Intent& in = s.intent[w];
    if (in.active == 0) continue;
    if (s.value == in.value_before + 1) {
      // The increment landed: make sure it is counted once.
      s.completed[w] = in.completed_before + 1;
      ++s.rolled_forward;
    } else {
      // It did not land: nothing was counted either.
      s.value = in.value_before;
      s.completed[w] = in.completed_before;
      ++s.rolled_back;
    }
    in.active = 0;
  }
  ++s.recoveries;
}

// Two places inside the critical section where a worker may be told to die:
// random kills from outside rarely land in so short a section.
SHMUTILS_FAULT_POINT(fp_intent_written, "counter.intent_written");
SHMUTILS_FAULT_POINT(fp_value_incremented, "counter.value_incremented");

int work(CounterState& s, std::size_t slot, std::size_t slots) {
  for (;;) {
    shmutils::MutexGuard guard(s.lock);
    if (guard.owner_died()) {
      repair(s, slots);
      guard.mark_consistent();
    }
    if (s.value >= s.target) return 0;
    Intent& in = s.intent[slot];
    in.value_before = s.value;
    in.completed_before = s.completed[slot];
    in.active = 1;
    fp_intent_written.reached();
    ++s.value;
    fp_value_incremented.reached();
    ++s.completed[slot];
    in.active = 0;
  }
}

// One run: the workers, the kill schedule drawn from the seed, the tally.
class CounterRun {
 public:
  CounterRun(CounterState& state, unsigned processes, unsigned kills, std::uint64_t seed)
      : state_(state),
        processes_(processes),
        kills_(kills),
        slots_(processes + kills),
        random_(seed) {}

  // Starts the workers together (the lock held while they start, as the
  // seed's example did), then kills until the budget is spent or the count
  // is done.
  void kill_while_counting() {
    (void)state_.lock.acquire();
    for (unsigned i = 0; i < processes_; ++i) workers_.push_back(spawn());
    start_ns_ = shmutils::sys::monotonic_ns();
    state_.lock.release();
    bool counting = true;
    while (counting && killed_ < kills_) {
      shmutils::sys::sleep_ns(std::uniform_int_distribution<std::uint64_t>(0, 200'000)(random_));
      counting = replace_planned_deaths();
      if (!counting || killed_ >= kills_) break;
      auto& victim =
          workers_[std::uniform_int_distribution<std::size_t>(0, workers_.size() - 1)(random_)];
      if (!victim.running()) continue;
      victim.kill();
      ++killed_;
      victim = spawn();
    }
  }

  // Lets the workers finish; one that still dies at its planned point is
  // replaced (with no plan), so the count always completes. False when a
  // worker failed or they did not finish in 5 minutes.
  bool finish() {
    bool ok = true;
    const std::uint64_t give_up = shmutils::sys::monotonic_ns() + 300'000'000'000ULL;
    for (bool running = true; running;) {
      running = false;
      for (auto& worker : workers_) {
        auto status = worker.wait_for(std::chrono::milliseconds(1));
        if (!status) {
          running = true;
        } else if (status->signal == SIGKILL) {
          ++killed_;
          ++planned_deaths_;
          worker = spawn();
          running = true;
        } else if (!status->success()) {
          std::fprintf(stderr, "worker pid %d failed: %s\n", worker.pid(),
                       status->to_string().c_str());
          ok = false;
        }
      }
      if (running && shmutils::sys::monotonic_ns() > give_up) {
        std::fprintf(stderr, "workers did not finish in 5 minutes; killed\n");
        for (auto& worker : workers_) worker.kill();
        return false;
      }
    }
    seconds_ = static_cast<double>(shmutils::sys::monotonic_ns() - start_ns_) / 1e9;
    // A kill can land between the last increment and the last release: settle it.
    shmutils::MutexGuard guard(state_.lock);
    if (guard.owner_died()) {
      repair(state_, slots_);
      guard.mark_consistent();
    }
    return ok;
  }

  // Prints the tally; true when the count is exact.
  bool report(std::uint64_t target) const {
    std::uint64_t completed = 0;
    for (std::size_t w = 0; w < next_slot_; ++w) completed += state_.completed[w];
    const bool exact = state_.value == target && completed == target;
    std::printf("counter = %" PRIu64 ", increments completed = %" PRIu64 ", target = %" PRIu64
                ": %s (%.3f s)\n",
                state_.value, completed, target, exact ? "exact" : "WRONG", seconds_);
    std::printf("kills: %u (%u inside the critical section at a fault point), recoveries: %" PRIu64
                " (%" PRIu64 " increments rolled forward, %" PRIu64 " rolled back)\n",
                killed_, planned_deaths_, state_.recoveries, state_.rolled_forward,
                state_.rolled_back);
    return exact;
  }

 private:
  // Half the workers are planned to die inside the critical section, at a
  // fault point, on a hit chosen from the seed (while the kill budget
  // lasts); the others die, if at all, by the random SIGKILLs.
  shmutils::framework::ChildProcess spawn() {
    const std::size_t slot = next_slot_++;
    const shmutils::FaultPoint* point = nullptr;
    std::uint64_t hit = 0;
    if (killed_ < kills_ && std::uniform_int_distribution<int>(0, 1)(random_) == 1) {
      point = std::uniform_int_distribution<int>(0, 1)(random_) == 0 ? &fp_intent_written
                                                                     : &fp_value_incremented;
      hit = std::uniform_int_distribution<std::uint64_t>(1, 20'000)(random_);
    }
    CounterState* state = &state_;
    const std::size_t slots = slots_;
    return shmutils::framework::ChildProcess::fork([state, slot, slots, point, hit] {
      // The one death planned for this worker process, if any.
      std::optional<shmutils::framework::ScopedKillAt> planned;
      if (point != nullptr) planned.emplace(point->name(), hit);
      return work(*state, slot, slots);
    });
  }

  // Replaces the workers that died at their planned fault point; false once
  // every worker has finished counting.
  bool replace_planned_deaths() {
    bool counting = false;
    for (auto& worker : workers_) {
      auto status = worker.wait_for(std::chrono::milliseconds(0));
      if (!status) {
        counting = true;
      } else if (status->signal == SIGKILL && killed_ < kills_) {
        ++killed_;
        ++planned_deaths_;
        worker = spawn();
        counting = true;
      }
    }
    return counting;
  }

  CounterState& state_;
  unsigned processes_;
  unsigned kills_;
  std::size_t slots_;
  std::mt19937_64 random_;
  std::vector<shmutils::framework::ChildProcess> workers_;
  std::size_t next_slot_ = 0;
  unsigned killed_ = 0;
  unsigned planned_deaths_ = 0;
  std::uint64_t start_ns_ = 0;
  double seconds_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "shmutils-counter: N processes increment one shared counter under a robust mutex until it\n"
      "reaches the target, while workers are SIGKILLed at random and replaced. Prints the total,\n"
      "the kills and the recoveries; exits 1 unless counter == increments completed == target.\n"
      "The seed's example is: shmutils-counter --processes 2 --target 20000 --kills 0"};
  unsigned processes = 4;
  std::uint64_t target = 20'000'000;
  unsigned kills = 100;
  std::uint64_t seed = std::random_device{}();
  app.add_option("-p,--processes", processes, "worker processes running at once")
      ->check(CLI::Range(1U, 64U))
      ->capture_default_str();
  app.add_option("-t,--target", target, "value to count to")
      ->check(CLI::Range(1ULL, 1ULL << 40))
      ->capture_default_str();
  app.add_option("-k,--kills", kills, "workers to SIGKILL (and replace) on the way")
      ->check(CLI::Range(0U, 4000U))
      ->capture_default_str();
  app.add_option("-s,--seed", seed, "seed of the kill schedule (printed; pass it to replay)");
  CLI11_PARSE(app, argc, argv);

  try {
    auto segment = shmutils::Segment::create_anonymous(shmutils::Segment::minimum_size() +
                                                       sizeof(CounterState));
    auto* state = new (segment.user_area().data()) CounterState{};
    state->target = target;
    std::printf("seed %" PRIu64 ": %u processes count to %" PRIu64 " with %u kills\n", seed,
                processes, target, kills);
    CounterRun run(*state, processes, kills, seed);
    run.kill_while_counting();
    const bool ok = run.finish();
    const bool exact = run.report(target);
    if (!exact)
      std::printf("replay: %s --processes %u --target %" PRIu64 " --kills %u --seed %" PRIu64 "\n",
                  argv[0], processes, target, kills, seed);
    return ok && exact ? 0 : 1;
  } catch (const shmutils::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
