// shmutils::type_name<T>() — the compiler's name for T ("int", "Order"), used
// to check that a handle passed between processes is resolved as the type it
// was made for. Stable between builds of one compiler family.
#pragma once

#include <string_view>

namespace shmutils {

template <class T>
constexpr std::string_view type_name() noexcept {
  std::string_view text = __PRETTY_FUNCTION__;  // "... type_name() [with T = int; ...]"
  constexpr std::string_view marker = "T = ";
  auto start = text.find(marker);
  if (start == std::string_view::npos) return text;
  start += marker.size();
  auto end = text.find_first_of(";]", start);
  return text.substr(start, end - start);
}

}  // namespace shmutils
