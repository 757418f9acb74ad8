// shmutils::properties shared state machines — rapidcheck's state API run
// against a structure in shared memory by several worker processes, with
// kill commands. You give the model and the operations; the machine gives
// the processes, the kills, the recovery and the oracle.
//
// The spec: machine_spec.hpp (SharedMachineSpec); the states the structure
// may be in: machine_state.hpp; the commands and their generator:
// machine_commands.hpp.
//
// Contract
//   Operations must be valid in every state (they report what happened:
//   "empty", "busy") — a kill makes the model uncertain, so the machine
//   keeps every state the model may be in and never relies on one.
//   Commands:   Op (worker w runs op), KillDuring (worker w runs op and is
//               SIGKILLed at its k-th fault point; a shorter op completes and
//               its worker is killed right after), Kill (idle worker w dies).
//   Shrinking:  rapidcheck removes commands (fewer operations, fewer kills),
//               moves work to lower worker numbers (fewer processes) and
//               lowers k (earlier kills).
//   Oracle:     every result must be the model's result in some state the
//               structure may be in. After every command the controller
//               reaps dead workers, calls recover, observes the structure
//               and keeps only the model states equal to what it observed:
//               none left is a failure (an operation killed half-way must
//               appear to have happened entirely or not at all). check()
//               runs at the end.
//   Crashes:    check_shared_machine runs the whole case in a child
//               (run_case_in_child): a crash or hang anywhere is a shrunk,
//               reproducible counterexample.
#pragma once

#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "shmutils/properties/crash_proof.hpp"
#include "shmutils/properties/machine_commands.hpp"
#include "shmutils/properties/machine_spec.hpp"
#include "shmutils/properties/machine_state.hpp"
#include "shmutils/properties/worker_pool.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::properties {

// The system under test: the segment, the workers and what the structure
// may hold now. Lives in the case's child process.
template <SharedMachineSpec Spec>
class Machine {
 public:
  using Model = typename Spec::Model;
  using Result = typename Spec::Result;

  Machine(Segment& segment, std::uint64_t seed, const MachineOptions& options)
      : segment_(segment),
        options_(options),
        pool_(segment, seed, options.task_deadline),
        possible_{Spec::initial_model()} {}

  void run_op(const OpCommand<Spec>& command) {
    TaskOutcome outcome = pool_.run(command.worker(), command);
    expect_done(outcome, command);
    narrow_by_result(command, result_of(outcome));
    observe("after " + describe(command));
  }

  void run_kill_during(const KillDuringCommand<Spec>& command) {
    TaskOutcome outcome = pool_.run(command.worker(), command, command.hit());
    std::string what = describe(command);
    if (outcome.kind == TaskOutcome::Kind::Killed) {
      detail::add_killed_outcomes<Spec>(possible_, command.op(), command.worker());
      what = "worker " + std::to_string(command.worker()) + " killed at " + outcome.point +
             " during " + show_op(command.op());
    } else {
      expect_done(outcome, command);
      narrow_by_result(command, result_of(outcome));
      pool_.kill(command.worker());
      what = "worker " + std::to_string(command.worker()) + " killed right after " +
             show_op(command.op()) + " (it reached fewer than " + std::to_string(command.hit()) +
             " fault points)";
    }
    detail::kill_in_all<Spec>(possible_, command.worker());
    recover_and_observe(what);
  }

  void run_kill(unsigned worker) {
    pool_.kill(worker);
    detail::kill_in_all<Spec>(possible_, worker);
    recover_and_observe("idle worker " + std::to_string(worker) + " killed");
  }

  void finish() {
    if constexpr (requires { Spec::check(segment_); }) {
      std::vector<std::string> problems = Spec::check(segment_);
      if (!problems.empty()) {
        std::string text;
        for (const std::string& p : problems) text += "\n  " + p;
        RC_FAIL("the structure's own check failed at the end:" + text);
      }
    }
  }

 private:
  static std::string show_op(const typename Spec::Op& op) {
    std::ostringstream out;
    out << op;
    return out.str();
  }
  static std::string describe(const OpCommand<Spec>& command) {
    return "worker " + std::to_string(command.worker()) + ": " + show_op(command.op());
  }

  static Result result_of(const TaskOutcome& outcome) {
    Result result{};
    std::memcpy(&result, outcome.reply.data(), sizeof result);
    return result;
  }

  void expect_done(const TaskOutcome& outcome, const OpCommand<Spec>& command) {
    switch (outcome.kind) {
      case TaskOutcome::Kind::Done: return;
      case TaskOutcome::Kind::Failed: RC_FAIL(describe(command) + " failed: " + outcome.reply);
      case TaskOutcome::Kind::Killed:
        RC_FAIL(describe(command) + " died at " + outcome.point + " without a planned kill");
      case TaskOutcome::Kind::Crashed:
        RC_FAIL(describe(command) + " crashed with signal " + std::to_string(outcome.signal) +
                "; its stack:\n" + outcome.stack);
      case TaskOutcome::Kind::Hung:
        RC_FAIL(describe(command) + " did not finish within " +
                std::to_string(options_.task_deadline.count()) + " ms; its stack:\n" +
                outcome.stack);
    }
  }

  void narrow_by_result(const OpCommand<Spec>& command, const Result& actual) {
    std::vector<Model> next;
    std::vector<Result> expected;
    for (Model model : possible_) {
      Result answer = Spec::apply(command.op(), command.worker(), model);
      if (answer == actual) detail::add_unique(next, std::move(model));
      detail::add_unique(expected, answer);
    }
    if (next.empty()) {
      std::ostringstream out;
      out << describe(command) << " returned " << actual << "; the model expected "
          << detail::show_all(expected) << " (from " << detail::show_all(possible_) << ")";
      RC_FAIL(out.str());
    }
    possible_ = std::move(next);
  }

  void recover_and_observe(const std::string& what) {
    segment_.reap_dead();
    if constexpr (requires { Spec::recover(segment_); }) Spec::recover(segment_);
    observe(what + ", then recovery");
  }

  // The part of a model state observe() can read back.
  static auto visible(const Model& model) {
    if constexpr (requires { Spec::observed(model); }) {
      return Spec::observed(model);
    } else {
      return model;
    }
  }

  void observe(const std::string& when) {
    if constexpr (requires { Spec::observe(segment_); }) {
      auto seen = Spec::observe(segment_);
      std::vector<Model> next;
      std::vector<decltype(seen)> allowed;
      for (const Model& model : possible_) {
        if (visible(model) == seen) detail::add_unique(next, model);
        detail::add_unique(allowed, visible(model));
      }
      if (next.empty()) {
        std::ostringstream out;
        out << when << ": the structure holds " << seen << ", but the model allows only "
            << detail::show_all(allowed);
        RC_FAIL(out.str());
      }
      possible_ = std::move(next);
    }
  }

  Segment& segment_;
  MachineOptions options_;
  WorkerPool pool_;
  std::vector<Model> possible_;
};

template <SharedMachineSpec Spec>
Segment make_machine_segment() {
  std::size_t size = 1 << 20;
  SegmentOptions segment_options;
  if constexpr (requires { Spec::segment_size(); }) size = Spec::segment_size();
  if constexpr (requires { Spec::segment_options(); }) segment_options = Spec::segment_options();
  return Segment::create_anonymous(size, segment_options);
}

// Runs one generated case: call inside a rapidcheck property.
template <SharedMachineSpec Spec>
void run_shared_machine(const MachineCommands<Spec>& commands, const MachineOptions& options = {}) {
  const std::uint64_t seed = *rc::gen::arbitrary<std::uint64_t>().as("address seed");
  run_case_in_child(
      [&] {
        Segment segment = make_machine_segment<Spec>();
        Spec::setup(segment);
        Machine<Spec> machine(segment, seed, options);
        MachineState<Spec> state{{Spec::initial_model()}, 0, options.max_kills};
        rc::state::runAll(commands, state, machine);
        machine.finish();
      },
      CaseOptions{options.case_deadline});
}

// The whole property body: generates a command sequence and runs it. The
// summary rapidcheck prints after a passing run tells how many cases had
// how many kills.
template <SharedMachineSpec Spec>
void check_shared_machine(const MachineOptions& options = {}) {
  const auto commands = *machine_commands<Spec>(options).as("commands");
  RC_TAG(std::to_string(count_kills<Spec>(commands)) + " kills");
  run_shared_machine<Spec>(commands, options);
}

}  // namespace shmutils::properties
