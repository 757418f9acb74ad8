// shmutils-counter — the seed's example in C++: several processes count to a
// target under one shared lock, and the exact total is printed and checked.
//
// The counter lives in an anonymous (memfd) segment, so nothing is left in
// /dev/shm whatever happens to this program; the workers are forked children
// owned by ChildProcess, so none outlives it.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <cstdio>
#include <new>
#include <vector>

#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/segment.hpp"
#include "shmutils/shm/sys.hpp"

namespace {

struct CounterState {
  pthread_mutex_t lock;
  std::uint64_t value;
  std::uint64_t increments[1];  // one per worker (sized at run time)
};

// The seed's _increment_to: returns how many increments this worker made.
std::uint64_t increment_to(CounterState& state, std::uint64_t limit) {
  std::uint64_t made = 0;
  for (;;) {
    if (shmutils::sys::robust_mutex_lock(&state.lock, "counter lock") ==
        shmutils::sys::RobustLockResult::OwnerDied) {
      shmutils::sys::robust_mutex_consistent(&state.lock, "counter lock");
    }
    bool done = state.value >= limit;
    if (!done) {
      ++state.value;
      ++made;
    }
    shmutils::sys::robust_mutex_unlock(&state.lock, "counter lock");
    if (done) return made;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "shmutils-counter: N processes increment one shared counter under a shared lock until it\n"
      "reaches the target; prints the total and each worker's share, and exits 1 unless the\n"
      "total is exact."};
  unsigned processes = 2;
  std::uint64_t target = 20'000;
  app.add_option("-p,--processes", processes, "worker processes")->check(CLI::Range(1U, 64U));
  app.add_option("-t,--target", target, "value to count to")->check(CLI::Range(1ULL, 1ULL << 40));
  CLI11_PARSE(app, argc, argv);

  try {
    std::size_t needed = sizeof(CounterState) + processes * sizeof(std::uint64_t);
    auto segment = shmutils::Segment::create_anonymous(shmutils::Segment::minimum_size() + needed);
    auto* state = new (segment.user_area().data()) CounterState{};
    shmutils::sys::robust_mutex_init(&state->lock, "counter lock");

    // Hold the lock while starting the workers, as the seed did, so they all
    // begin counting together.
    shmutils::sys::robust_mutex_lock(&state->lock, "counter lock");
    std::vector<shmutils::framework::ChildProcess> workers;
    for (unsigned i = 0; i < processes; ++i) {
      workers.push_back(shmutils::framework::ChildProcess::fork([state, target, i] {
        state->increments[i] = increment_to(*state, target);
        return 0;
      }));
    }
    std::uint64_t start = shmutils::sys::monotonic_ns();
    shmutils::sys::robust_mutex_unlock(&state->lock, "counter lock");

    bool ok = true;
    for (unsigned i = 0; i < processes; ++i) {
      auto status = workers[i].wait_for(std::chrono::minutes(5));
      if (!status) {
        std::fprintf(stderr, "worker %u (pid %d) did not finish in 5 minutes; killed\n", i,
                     workers[i].pid());
        workers[i].kill();
        ok = false;
      } else if (!status->success()) {
        std::fprintf(stderr, "worker %u (pid %d) failed: %s\n", i, workers[i].pid(),
                     status->to_string().c_str());
        ok = false;
      }
    }
    double seconds = static_cast<double>(shmutils::sys::monotonic_ns() - start) / 1e9;

    std::uint64_t sum = 0;
    for (unsigned i = 0; i < processes; ++i) {
      std::printf("worker %u: %llu increments\n", i,
                  static_cast<unsigned long long>(state->increments[i]));
      sum += state->increments[i];
    }
    bool exact = state->value == target && sum == target;
    std::printf("counter = %llu, sum of increments = %llu, target = %llu: %s (%.3f s)\n",
                static_cast<unsigned long long>(state->value), static_cast<unsigned long long>(sum),
                static_cast<unsigned long long>(target), exact ? "exact" : "WRONG", seconds);
    return ok && exact ? 0 : 1;
  } catch (const shmutils::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
