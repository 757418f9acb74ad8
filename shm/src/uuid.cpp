#include "shmutils/shm/uuid.hpp"

#include <algorithm>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"

namespace shmutils {

Uuid Uuid::random() {
  Uuid uuid;
  sys::random_bytes(uuid.bytes);
  return uuid;
}

std::string Uuid::to_string() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  text.reserve(32);
  for (std::byte b : bytes) {
    auto v = static_cast<unsigned>(b);
    text += kDigits[v >> 4];
    text += kDigits[v & 15U];
  }
  return text;
}

Uuid Uuid::parse(std::string_view text) {
  auto nibble = [&](char c) -> unsigned {
    if (c >= '0' && c <= '9') return static_cast<unsigned>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<unsigned>(c - 'a' + 10);
    throw Error(ErrorKind::InvalidArgument, "uuid \"" + std::string(text) + "\"", "parse",
                "expected 32 lower-case hex digits");
  };
  if (text.size() != 32) nibble('x');
  Uuid uuid;
  for (std::size_t i = 0; i < 16; ++i) {
    uuid.bytes[i] = static_cast<std::byte>((nibble(text[2 * i]) << 4) | nibble(text[2 * i + 1]));
  }
  return uuid;
}

bool Uuid::is_nil() const noexcept {
  return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
}

}  // namespace shmutils
