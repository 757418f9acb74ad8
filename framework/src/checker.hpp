// The scenario's checks, run in a process of their own: forked from the
// harness once per run (after setup), asked to check after each kill and at
// the end, and waited for within a bound. A check that blocks (on a lock a
// stopped or dead worker holds, or a lock that is not robust), crashes or
// throws is reported as such, and the harness stays in control of the run.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "shmutils/framework/scenario.hpp"
#include "shmutils/framework/supervised_child.hpp"
#include "shmutils/shm/unique_fd.hpp"

namespace shmutils::framework::detail {

class Checker {
 public:
  enum class Outcome {
    Done,     // violations (and, for the final check, leaked bytes) in the result
    Blocked,  // still running at the bound: stack() says where; killed
    Crashed,  // crashed or ended: stack() and ending() say how
  };
  struct Result {
    std::vector<std::string> violations;
    std::uint64_t leaked_bytes = 0;
  };

  Checker(Scenario& scenario, Segment& segment, Witness& witness);
  Checker(Checker&&) = default;
  Checker& operator=(Checker&&) = default;
  ~Checker();

  // Scenario::check(final) and, when final, Scenario::leaked_bytes. A check
  // that ended otherwise than Done leaves no checker: make a new one.
  // `meanwhile` runs between waits of 10 ms: the harness ends stalls and
  // kills workers at their points while it waits (a check may wait for them).
  Outcome check(bool final, std::chrono::milliseconds bound, Result& result,
                const std::function<void()>& meanwhile);
  pid_t pid() const noexcept { return process_.pid(); }
  const std::string& stack() const noexcept { return process_.stack(); }
  // How a checker that was not Done ended ("signal SIGSEGV", "exit code 1").
  std::string ending() const;

 private:
  SupervisedChild process_;
  UniqueFd requests_;  // harness → checker: one byte per check (1: final)
  UniqueFd replies_;   // checker → harness: the encoded Result
};

}  // namespace shmutils::framework::detail
