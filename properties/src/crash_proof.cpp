#include "shmutils/properties/crash_proof.hpp"

#include <rapidcheck.h>
#include <unistd.h>

#include "shmutils/fixtures/children.hpp"
#include "shmutils/shm/detail/sys.hpp"

namespace shmutils::properties {
namespace {

// A discarded case exits with this code (a distinct, otherwise unused value).
constexpr int kDiscardExitCode = 79;

}  // namespace

void run_case_in_child(const std::function<void()>& body, const CaseOptions& options) {
  fixtures::ChildrenOptions children;
  children.deadline = options.deadline;
  children.fail_test = false;
  fixtures::ChildrenReport report = fixtures::run_children(
      1,
      [&](fixtures::ChildContext&) {
        try {
          body();
        } catch (const rc::detail::CaseResult& result) {
          if (result.type == rc::detail::CaseResult::Type::Discard) sys::exit_now(kDiscardExitCode);
          if (result.type == rc::detail::CaseResult::Type::Failure)
            fixtures::report_child_failure(result.description);
        }
      },
      children);
  const fixtures::ChildOutcome& child = report.children.at(0);
  if (child.status.exited && child.status.exit_code == kDiscardExitCode && child.failures.empty())
    RC_DISCARD("the case discarded itself in the child");
  if (!child.ok()) RC_FAIL("in the case's child process:\n" + report.describe());
}

}  // namespace shmutils::properties
