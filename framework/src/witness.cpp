#include "shmutils/framework/witness.hpp"

#include <algorithm>
#include <cstring>

namespace shmutils::framework {

std::int32_t Witness::add_point(std::string_view name) noexcept {
  if (std::int32_t existing = point_index(name); existing >= 0) return existing;
  if (point_count_ >= kMaxPoints) return -1;
  auto& slot = point_names_[point_count_];
  std::size_t length = std::min(name.size(), kPointNameSize - 1);
  std::memcpy(slot.data(), name.data(), length);
  slot[length] = '\0';
  return static_cast<std::int32_t>(point_count_++);
}

std::int32_t Witness::point_index(std::string_view name) const noexcept {
  for (std::uint32_t i = 0; i < point_count_; ++i) {
    if (point_name(static_cast<std::int32_t>(i)) == name) return static_cast<std::int32_t>(i);
  }
  return -1;
}

std::string_view Witness::point_name(std::int32_t index) const noexcept {
  if (index < 0 || static_cast<std::uint32_t>(index) >= point_count_) return {};
  return {point_names_[static_cast<std::size_t>(index)].data()};
}

}  // namespace shmutils::framework
