// Command-line checks shared by the tools. CLI::Range lets NaN through (every
// comparison with NaN is false), so numbers are checked here instead.
#pragma once

#include <CLI/CLI.hpp>
#include <cmath>
#include <string>

namespace shmutils::tools {

// A finite decimal number from low to high.
inline CLI::Validator finite_in_range(double low, double high) {
  std::string range = "[" + CLI::detail::to_string(low) + ", " + CLI::detail::to_string(high) + "]";
  return CLI::Validator(
      [low, high, range](const std::string& text) -> std::string {
        char* end = nullptr;
        double value = std::strtod(text.c_str(), &end);
        if (end == text.c_str() || *end != '\0' || !std::isfinite(value) || value < low ||
            value > high) {
          return "a number in " + range + ", not " + text;
        }
        return {};
      },
      "NUMBER in " + range);
}

}  // namespace shmutils::tools
