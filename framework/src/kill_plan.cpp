#include "kill_plan.hpp"

#include <algorithm>
#include <limits>

namespace shmutils::framework::detail {

KillPlan::PointDeath KillPlan::plan_incarnation(std::uint32_t point_count) {
  if (point_count == 0 ||
      std::uniform_real_distribution<double>(0, 1)(random_) >= options_.point_death_share)
    return {};
  PointDeath death;
  death.point = static_cast<std::int32_t>(
      std::uniform_int_distribution<std::uint32_t>(0, point_count - 1)(random_));
  death.hit = std::uniform_int_distribution<std::uint64_t>(
      1, std::max<std::uint64_t>(1, options_.max_planned_hit))(random_);
  return death;
}

std::uint64_t KillPlan::exponential_ns(double per_s) {
  if (per_s <= 0) return std::numeric_limits<std::uint64_t>::max() / 2;
  double seconds = std::exponential_distribution<double>(per_s)(random_);
  return static_cast<std::uint64_t>(seconds * 1e9);
}

}  // namespace shmutils::framework::detail
