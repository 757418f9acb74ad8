#include "shmutils/shm/segment_descriptor.hpp"

#include <charconv>
#include <vector>

#include "shmutils/shm/error.hpp"

namespace shmutils {

namespace {

constexpr std::string_view kPrefix = "shmutils-segment:1;";

bool needs_escape(unsigned char c) {
  return c <= 0x20 || c >= 0x7f || c == ';' || c == '=' || c == '%';
}

std::string percent_encode(std::string_view text) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (needs_escape(c)) {
      out += '%';
      out += kDigits[c >> 4];
      out += kDigits[c & 15U];
    } else {
      out += ch;
    }
  }
  return out;
}

[[noreturn]] void bad(std::string_view text, const std::string& why) {
  throw Error(ErrorKind::InvalidArgument, "descriptor \"" + std::string(text) + "\"", "parse", why);
}

std::string percent_decode(std::string_view whole, std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    unsigned value = 0;
    if (i + 2 >= text.size()) bad(whole, "truncated %-escape");
    auto [p, ec] = std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16);
    if (ec != std::errc() || p != text.data() + i + 3) bad(whole, "bad %-escape");
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

template <class T>
T parse_number(std::string_view whole, std::string_view field, std::string_view value) {
  T number{};
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (ec != std::errc() || p != value.data() + value.size() || value.empty()) {
    bad(whole, std::string(field) + " is not a number: \"" + std::string(value) + "\"");
  }
  return number;
}

}  // namespace

std::string SegmentDescriptor::to_string() const {
  std::string text(kPrefix);
  if (anonymous) {
    text += "memfd=" + percent_encode(name) + ";fd=" + std::to_string(fd);
  } else {
    text += "name=" + percent_encode(name);
  }
  text += ";size=" + std::to_string(size) + ";uuid=" + uuid.to_string();
  return text;
}

SegmentDescriptor SegmentDescriptor::parse(std::string_view text) {
  if (text.substr(0, kPrefix.size()) != kPrefix) {
    bad(text, "does not start with \"" + std::string(kPrefix) + "\"");
  }
  SegmentDescriptor d;
  bool has_name = false, has_memfd = false, has_fd = false, has_size = false, has_uuid = false;
  std::string_view rest = text.substr(kPrefix.size());
  while (!rest.empty()) {
    std::size_t end = rest.find(';');
    std::string_view field = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
    std::size_t eq = field.find('=');
    if (eq == std::string_view::npos)
      bad(text, "field without '=': \"" + std::string(field) + "\"");
    std::string_view key = field.substr(0, eq);
    std::string_view value = field.substr(eq + 1);
    auto once = [&](bool& seen) {
      if (seen) bad(text, "field \"" + std::string(key) + "\" given twice");
      seen = true;
    };
    if (key == "name") {
      once(has_name);
      d.name = percent_decode(text, value);
    } else if (key == "memfd") {
      once(has_memfd);
      d.anonymous = true;
      d.name = percent_decode(text, value);
    } else if (key == "fd") {
      once(has_fd);
      d.fd = parse_number<int>(text, "fd", value);
      if (d.fd < 0) bad(text, "fd is negative");
    } else if (key == "size") {
      once(has_size);
      d.size = parse_number<std::uint64_t>(text, "size", value);
    } else if (key == "uuid") {
      once(has_uuid);
      d.uuid = Uuid::parse(value);
    } else {
      bad(text, "unknown field \"" + std::string(key) + "\"");
    }
  }
  if (has_name == has_memfd) bad(text, "needs exactly one of name= and memfd=");
  if (has_memfd && !has_fd) bad(text, "an anonymous segment needs fd=");
  if (has_name && has_fd) bad(text, "a named segment takes no fd=");
  if (!has_size || !has_uuid) bad(text, "needs size= and uuid=");
  if (has_name && (d.name.empty() || d.name.front() != '/')) {
    bad(text, "a segment name starts with '/'");
  }
  return d;
}

}  // namespace shmutils
