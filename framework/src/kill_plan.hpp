// The harness's random choices — which incarnations die at which fault point
// hit, when the next kill and stall come, who is killed and for how long a
// worker stalls — all drawn from the run's seed, in the order the run asks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>

#include "shmutils/framework/harness.hpp"

namespace shmutils::framework::detail {

class KillPlan {
 public:
  explicit KillPlan(const RunOptions& options) : options_(options), random_(options.seed) {}

  struct PointDeath {
    std::int32_t point = -1;  // index among the run's points; -1: none planned
    std::uint64_t hit = 0;
  };
  // For the next incarnation: a death at a fault point, or none.
  PointDeath plan_incarnation(std::uint32_t point_count);
  std::uint64_t next_kill_in_ns() { return exponential_ns(options_.kills_per_s); }
  std::uint64_t next_stall_in_ns() { return exponential_ns(options_.stalls_per_s); }
  // Whether the next kill looks for a lock holder (else a random worker).
  bool kill_a_holder() { return std::uniform_int_distribution<int>(0, 1)(random_) == 1; }
  // A worker, by its index among `count`.
  std::size_t pick(std::size_t count) {
    return std::uniform_int_distribution<std::size_t>(0, count - 1)(random_);
  }
  std::uint64_t stall_length_ns() {
    return std::uniform_int_distribution<std::uint64_t>(2, 30)(random_) * 1'000'000;
  }

 private:
  // The wait until the next event of a Poisson process of `per_s` a second.
  std::uint64_t exponential_ns(double per_s);

  const RunOptions& options_;
  std::mt19937_64 random_;
};

}  // namespace shmutils::framework::detail
