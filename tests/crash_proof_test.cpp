// The crash-proof runner: a property whose code under test crashes or hangs
// still yields a shrunk counterexample and a reproduce string that replays
// it. The misbehaving properties are disabled and run in a copy of this
// program, whose output is checked.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <regex>

#include "shmutils/properties/crash_proof.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "test_support.hpp"

namespace shmutils::properties {
namespace {

[[gnu::noinline]] void crash_on_three(const std::vector<int>& values) {
  if (values.size() >= 3) {
    auto* volatile nowhere =
        reinterpret_cast<volatile int*>(16);  // NOLINT(performance-no-int-to-ptr)
    *nowhere = 1;  // SIGSEGV on purpose (not null: UBSan would stop a null store itself)
  }
}

[[gnu::noinline]] void hang_above_five(const std::vector<int>& values) {
  for (int v : values)
    while (v > 5) sys::sleep_ns(1'000'000'000);  // NOLINT(bugprone-infinite-loop): the planted hang
}

RC_GTEST_PROP(CrashProofSelfTest, DISABLED_CrashesOnThreeValues, ()) {
  const auto values = *rc::gen::container<std::vector<int>>(rc::gen::inRange(0, 100));
  run_case_in_child([&] { crash_on_three(values); });
}

RC_GTEST_PROP(CrashProofSelfTest, DISABLED_HangsAboveFive, ()) {
  const auto values = *rc::gen::container<std::vector<int>>(rc::gen::inRange(0, 100));
  // The deadline that calls a case hung: long enough for a case that ends
  // (a fork and an exit) on a loaded, sanitized machine.
  run_case_in_child([&] { hang_above_five(values); }, CaseOptions{std::chrono::milliseconds(1500)});
}

std::string reproduce_string(const std::string& output) {
  std::smatch match;
  if (!std::regex_search(output, match, std::regex("RC_PARAMS=\"(reproduce=[^\"]+)\""))) return {};
  return match[1];
}

// Runs the disabled property, then again from the reproduce string it printed.
void expect_shrunk_and_replayable(const std::string& test, const std::string& counterexample,
                                  const std::string& symptom, const std::string& frame) {
  test::IsolatedRun run = test::run_alone(test, "", std::chrono::seconds(120));
  EXPECT_TRUE(run.failed) << run.output;
  EXPECT_NE(run.output.find(counterexample), std::string::npos)
      << "not shrunk to " << counterexample << ":\n"
      << run.output;
  EXPECT_NE(run.output.find(symptom), std::string::npos) << run.output;
  EXPECT_NE(run.output.find(frame), std::string::npos) << "no stack frame " << frame << run.output;
  std::string reproduce = reproduce_string(run.output);
  ASSERT_FALSE(reproduce.empty()) << "no reproduce string:\n" << run.output;

  test::IsolatedRun replay = test::run_alone(test, "RC_PARAMS='" + reproduce + "'");
  EXPECT_TRUE(replay.failed) << replay.output;
  EXPECT_NE(replay.output.find("Falsifiable after 1 tests"), std::string::npos) << replay.output;
  EXPECT_NE(replay.output.find(counterexample), std::string::npos) << replay.output;
}

TEST(CrashProofTest, ACrashIsAShrunkCounterexampleThatReplays) {
  expect_shrunk_and_replayable("CrashProofSelfTest.DISABLED_CrashesOnThreeValues", "[0, 0, 0]",
                               "crashed with SIGSEGV", "crash_on_three");
}

TEST(CrashProofTest, AHangIsAShrunkCounterexampleThatReplays) {
  expect_shrunk_and_replayable("CrashProofSelfTest.DISABLED_HangsAboveFive", "[6]",
                               "still running at the deadline", "hang_above_five");
}

}  // namespace
}  // namespace shmutils::properties
