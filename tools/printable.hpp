// printable() — text from a segment or from /dev/shm (names, named objects,
// error messages quoting them) made safe to print and to put in JSON: bytes
// that are not valid UTF-8, control characters and backslashes become
// \xNN / \\, so the output is always valid UTF-8 and shows every byte.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace shmutils::tools {

// How many bytes the UTF-8 sequence at text[i] takes, or 0 when it is not a
// valid (shortest-form, non-surrogate) sequence.
inline std::size_t utf8_sequence_length(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  std::size_t length = 0;
  unsigned min = 0;
  unsigned value = 0;
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, min = 0x80, value = lead & 0x1FU;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, min = 0x800, value = lead & 0x0FU;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, min = 0x10000, value = lead & 0x07U;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    value = (value << 6) | (byte(i + k) & 0x3FU);
  }
  if (value < min || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  return length;
}

inline std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::size_t length = utf8_sequence_length(text, i);
    if (c == '\\') {
      out += "\\\\";
    } else if (length == 0 || c < 0x20 || c == 0x7F) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02X", c);
      out += escaped;
      length = 1;
    } else {
      out.append(text.substr(i, length));
    }
    i += length;
  }
  return out;
}

}  // namespace shmutils::tools
