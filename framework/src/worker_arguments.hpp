// What a harness worker that does not inherit the harness's memory (spawned,
// or forked by the zygote) is told, and its one text form: a list of
// strings, the tail of a spawned worker's argv or a zygote request.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace shmutils::framework::detail {

struct WorkerArguments {
  std::string scenario;
  std::uint32_t incarnation = 0;
  std::uint64_t run_seed = 0;  // the run's; the worker derives its own
  bool perturb = true;
  int nice = 0;
  // Anonymous segments are named by fd; a zygote worker's fds arrive with
  // its request and replace these numbers.
  std::string witness_descriptor;
  std::string segment_descriptor;
  // Where the harness maps the segment: kept free (perturbed) or used (not).
  std::uintptr_t harness_base = 0;
  std::size_t harness_size = 0;

  std::vector<std::string> to_strings() const;
  // Throws InvalidArgument naming the field that is missing or malformed.
  static WorkerArguments from_strings(const std::vector<std::string>& fields);
};

}  // namespace shmutils::framework::detail
