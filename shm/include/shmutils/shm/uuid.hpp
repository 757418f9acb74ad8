// shmutils::Uuid — 128 random bits naming one creation of a segment, so that a
// segment unlinked and re-created under the same name is told apart.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace shmutils {

struct Uuid {
  std::array<std::byte, 16> bytes{};

  static Uuid random();
  // 32 lower-case hex digits; parse throws InvalidArgument on anything else.
  std::string to_string() const;
  static Uuid parse(std::string_view text);
  bool is_nil() const noexcept;
  friend bool operator==(const Uuid&, const Uuid&) = default;
};

}  // namespace shmutils
