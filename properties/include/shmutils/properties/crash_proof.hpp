// shmutils::properties::run_case_in_child — the crash-proof runner: one
// property case runs in a child process, so a crash or a hang of the code
// under test is a failed case that rapidcheck shrinks and reports with its
// RC_PARAMS reproduce string, instead of taking the test program down with
// the counterexample unprinted.
//
// Contract
//   Call inside a rapidcheck property, after generating every value in the
//   parent (`*gen` must not run in the child: rapidcheck records the
//   counterexample in the parent). The body runs in a forked child with a
//   deadline. In the child, RC_ASSERT / RC_FAIL failures, GoogleTest
//   failures and escaping exceptions are reported back; RC_PRE / RC_DISCARD
//   discard the case. In the parent, any failure, crash (signal and stack)
//   or hang (stack) becomes RC_FAIL with that description; a discard becomes
//   RC_DISCARD.
#pragma once

#include <chrono>
#include <functional>

namespace shmutils::properties {

struct CaseOptions {
  std::chrono::milliseconds deadline{30'000};
};

void run_case_in_child(const std::function<void()>& body, const CaseOptions& options = {});

}  // namespace shmutils::properties
