#include "worker_arguments.hpp"

#include <array>
#include <charconv>

#include "shmutils/shm/error.hpp"

namespace shmutils::framework::detail {
namespace {

constexpr std::size_t kFieldCount = 9;

template <typename Number>
Number number(const std::vector<std::string>& fields, std::size_t index, const char* what,
              int base = 10) {
  const std::string& text = fields[index];
  Number value{};
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (text.empty() || error != std::errc() || end != text.data() + text.size())
    throw Error(ErrorKind::InvalidArgument, "worker arguments", what,
                "\"" + text + "\" is not a number");
  return value;
}

}  // namespace

std::vector<std::string> WorkerArguments::to_strings() const {
  std::array<char, 32> base{};
  auto [end, error] = std::to_chars(base.data(), base.data() + base.size(), harness_base, 16);
  (void)error;  // 32 characters hold any address
  return {scenario,
          std::to_string(incarnation),
          std::to_string(run_seed),
          perturb ? "1" : "0",
          std::to_string(nice),
          witness_descriptor,
          segment_descriptor,
          std::string(base.data(), end),
          std::to_string(harness_size)};
}

WorkerArguments WorkerArguments::from_strings(const std::vector<std::string>& fields) {
  if (fields.size() != kFieldCount)
    throw Error(ErrorKind::InvalidArgument, "worker arguments", "parse",
                "expected " + std::to_string(kFieldCount) + " fields, got " +
                    std::to_string(fields.size()));
  WorkerArguments arguments;
  arguments.scenario = fields[0];
  arguments.incarnation = number<std::uint32_t>(fields, 1, "incarnation");
  arguments.run_seed = number<std::uint64_t>(fields, 2, "seed");
  if (fields[3] != "0" && fields[3] != "1")
    throw Error(ErrorKind::InvalidArgument, "worker arguments", "perturb", "must be 0 or 1");
  arguments.perturb = fields[3] == "1";
  arguments.nice = number<int>(fields, 4, "nice");
  arguments.witness_descriptor = fields[5];
  arguments.segment_descriptor = fields[6];
  arguments.harness_base = number<std::uintptr_t>(fields, 7, "harness base", 16);
  arguments.harness_size = number<std::size_t>(fields, 8, "harness size");
  return arguments;
}

}  // namespace shmutils::framework::detail
