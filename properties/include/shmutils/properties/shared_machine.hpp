// shmutils::properties shared state machines — rapidcheck's state API run
// against a structure in shared memory by several worker processes, with
// kill commands. You give the model and the operations; the machine gives
// the processes, the kills, the recovery and the oracle.
//
// What a spec provides (see models/ for complete examples):
//
//   struct RingSpec {
//     using Model = ...;   // a plain value: copyable, ==, operator<<
//     using Op = ...;      // one operation: copyable, operator<<
//     using Result = ...;  // what an operation returns: trivially copyable, ==, operator<<
//     static Model initial_model();
//     static rc::Gen<Op> op(const Model& model);      // operations to try
//     // The model's answer: applies op for `worker` and returns its result.
//     static Result apply(const Op& op, unsigned worker, Model& model);
//     // The real answer, in worker process `worker`, on its own mapping.
//     static Result run(const Op& op, unsigned worker, Segment& segment);
//     static void setup(Segment& segment);            // builds the structure
//     static Model observe(Segment& segment);         // reads it back (must not block;
//                                                     // optional: results alone then judge)
//     // Optional:
//     // When only part of the model can be read back: observe returns that
//     // part, and observed(model) extracts it from a model state.
//     static Observed observed(const Model& model);
//     static void on_kill(unsigned worker, Model& model);   // what a death does to the model
//     // States an operation killed part-way may leave besides "not at all"
//     // and "entirely" (a multi-step operation whose middle is visible).
//     static std::vector<Model> partial(const Op& op, unsigned worker, const Model& model);
//     static void recover(Segment& segment);                // repair after a death
//     static std::vector<std::string> check(Segment& s);    // extra invariants (audits)
//     static std::size_t segment_size();  static SegmentOptions segment_options();
//   };
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

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "shmutils/properties/crash_proof.hpp"
#include "shmutils/properties/generators.hpp"
#include "shmutils/properties/worker_pool.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::properties {

struct MachineOptions {
  unsigned max_workers = 3;
  unsigned max_kills = 2;     // kill commands per case
  std::uint64_t max_hit = 6;  // KillDuring dies at a fault point hit in [1, max_hit]
  int op_weight = 6;          // operations per kill command, roughly
  std::chrono::milliseconds task_deadline{5'000};
  std::chrono::milliseconds case_deadline{60'000};
};

template <class Spec>
struct MachineState {
  std::vector<typename Spec::Model> possible;  // every state the structure may be in
  unsigned kills = 0;
};

template <class Spec>
class Machine;

template <class Spec>
using MachineCommand = rc::state::Command<MachineState<Spec>, Machine<Spec>>;

namespace detail {

template <class T>
void add_unique(std::vector<T>& states, T state) {
  if (std::find(states.begin(), states.end(), state) == states.end())
    states.push_back(std::move(state));
}

template <class Spec>
void apply_to_all(MachineState<Spec>& state, const typename Spec::Op& op, unsigned worker) {
  std::vector<typename Spec::Model> next;
  for (typename Spec::Model model : state.possible) {
    (void)Spec::apply(op, worker, model);
    add_unique(next, std::move(model));
  }
  state.possible = std::move(next);
}

template <class Spec>
void kill_in_all(std::vector<typename Spec::Model>& states, unsigned worker) {
  if constexpr (requires(typename Spec::Model & m) { Spec::on_kill(worker, m); }) {
    std::vector<typename Spec::Model> next;
    for (typename Spec::Model model : states) {
      Spec::on_kill(worker, model);
      add_unique(next, std::move(model));
    }
    states = std::move(next);
  }
}

// Adds what `op` killed part-way may leave: before, after and any partial state.
template <class Spec>
void add_killed_outcomes(std::vector<typename Spec::Model>& states, const typename Spec::Op& op,
                         unsigned worker) {
  std::vector<typename Spec::Model> outcomes = states;
  for (const typename Spec::Model& before : states) {
    typename Spec::Model after = before;
    (void)Spec::apply(op, worker, after);
    add_unique(outcomes, std::move(after));
    if constexpr (requires { Spec::partial(op, worker, before); }) {
      for (typename Spec::Model& middle : Spec::partial(op, worker, before))
        add_unique(outcomes, std::move(middle));
    }
  }
  states = std::move(outcomes);
}

template <class T>
std::string show_all(const std::vector<T>& values) {
  std::ostringstream out;
  for (std::size_t i = 0; i < values.size(); ++i) out << (i == 0 ? "" : " or ") << values[i];
  return out.str();
}

}  // namespace detail

// Worker w runs op.
template <class Spec>
class OpCommand : public MachineCommand<Spec>, public RemoteTask {
 public:
  using Op = typename Spec::Op;
  using Result = typename Spec::Result;
  static_assert(std::is_trivially_copyable_v<Result>,
                "Spec::Result crosses a pipe: make it trivially copyable");

  OpCommand(unsigned worker, Op op) : worker_(worker), op_(std::move(op)) {}
  unsigned worker() const { return worker_; }
  const Op& op() const { return op_; }

  void apply(MachineState<Spec>& state) const override {
    detail::apply_to_all(state, op_, worker_);
  }
  void run(const MachineState<Spec>&, Machine<Spec>& machine) const override {
    machine.run_op(*this);
  }
  void show(std::ostream& os) const override { os << "worker " << worker_ << ": " << op_; }

  std::string execute(Segment& segment, unsigned worker) const override {
    Result result = Spec::run(op_, worker, segment);
    std::string bytes(sizeof result, '\0');
    std::memcpy(bytes.data(), &result, sizeof result);
    return bytes;
  }

 private:
  unsigned worker_;
  Op op_;
};

// Worker w runs op and is killed at its hit-th fault point.
template <class Spec>
class KillDuringCommand : public OpCommand<Spec> {
 public:
  KillDuringCommand(unsigned worker, typename Spec::Op op, std::uint64_t hit)
      : OpCommand<Spec>(worker, std::move(op)), hit_(hit) {}
  std::uint64_t hit() const { return hit_; }

  void checkPreconditions(const MachineState<Spec>& state) const override {
    RC_PRE(state.kills < Machine<Spec>::options().max_kills);
  }
  void apply(MachineState<Spec>& state) const override {
    detail::add_killed_outcomes<Spec>(state.possible, this->op(), this->worker());
    detail::kill_in_all<Spec>(state.possible, this->worker());
    ++state.kills;
  }
  void run(const MachineState<Spec>&, Machine<Spec>& machine) const override {
    machine.run_kill_during(*this);
  }
  void show(std::ostream& os) const override {
    os << "worker " << this->worker() << ": " << this->op() << ", killed at fault point hit "
       << hit_;
  }

 private:
  std::uint64_t hit_;
};

// Idle worker w is killed.
template <class Spec>
class KillCommand : public MachineCommand<Spec> {
 public:
  explicit KillCommand(unsigned worker) : worker_(worker) {}
  void checkPreconditions(const MachineState<Spec>& state) const override {
    RC_PRE(state.kills < Machine<Spec>::options().max_kills);
  }
  void apply(MachineState<Spec>& state) const override {
    detail::kill_in_all<Spec>(state.possible, worker_);
    ++state.kills;
  }
  void run(const MachineState<Spec>&, Machine<Spec>& machine) const override {
    machine.run_kill(worker_);
  }
  void show(std::ostream& os) const override { os << "kill idle worker " << worker_; }

 private:
  unsigned worker_;
};

// The system under test: the segment, the workers and what the structure
// may hold now. Lives in the case's child process.
template <class Spec>
class Machine {
 public:
  using Model = typename Spec::Model;
  using Result = typename Spec::Result;

  Machine(Segment& segment, std::uint64_t seed)
      : segment_(segment),
        pool_(segment, seed, options().task_deadline),
        possible_{Spec::initial_model()} {}

  // The options of the running check (one check at a time per process).
  static MachineOptions& options() {
    static MachineOptions current;
    return current;
  }

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
                std::to_string(options().task_deadline.count()) + " ms; its stack:\n" +
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
  WorkerPool pool_;
  std::vector<Model> possible_;
};

template <class Spec>
using MachineCommands = rc::state::Commands<MachineCommand<Spec>>;

// The generator of command sequences for Spec. One generator makes every
// kind of command, so rapidcheck can shrink a kill into the plain operation
// (the kind shrinks towards "no kill") as well as drop it.
template <class Spec>
rc::Gen<MachineCommands<Spec>> machine_commands(const MachineOptions& options = {}) {
  enum class Kind { Operation, KillDuring, KillIdle };
  std::vector<Kind> kinds(static_cast<std::size_t>(std::max(options.op_weight, 1)),
                          Kind::Operation);
  kinds.push_back(Kind::KillDuring);
  kinds.push_back(Kind::KillIdle);
  MachineState<Spec> initial{{Spec::initial_model()}, 0};
  return rc::state::gen::commands(initial, [options, kinds](const MachineState<Spec>& state) {
    using Pointer = std::shared_ptr<const MachineCommand<Spec>>;
    const bool may_kill = state.kills < options.max_kills;
    auto kind = may_kill ? element_towards_first(kinds) : rc::gen::just(Kind::Operation);
    return rc::gen::map(rc::gen::tuple(kind, rc::gen::inRange<unsigned>(0, options.max_workers),
                                       Spec::op(state.possible.front()),
                                       uniform_in_range<std::uint64_t>(1, options.max_hit + 1)),
                        [](const auto& args) -> Pointer {
                          const auto& [k, worker, op, hit] = args;
                          switch (k) {
                            case Kind::KillDuring:
                              return std::make_shared<KillDuringCommand<Spec>>(worker, op, hit);
                            case Kind::KillIdle: return std::make_shared<KillCommand<Spec>>(worker);
                            case Kind::Operation: break;
                          }
                          return std::make_shared<OpCommand<Spec>>(worker, op);
                        });
  });
}

template <class Spec>
Segment make_machine_segment() {
  std::size_t size = 1 << 20;
  SegmentOptions segment_options;
  if constexpr (requires { Spec::segment_size(); }) size = Spec::segment_size();
  if constexpr (requires { Spec::segment_options(); }) segment_options = Spec::segment_options();
  return Segment::create_anonymous(size, segment_options);
}

// Runs one generated case: call inside a rapidcheck property.
template <class Spec>
void run_shared_machine(const MachineCommands<Spec>& commands, const MachineOptions& options = {}) {
  Machine<Spec>::options() = options;
  const std::uint64_t seed = *rc::gen::arbitrary<std::uint64_t>().as("address seed");
  run_case_in_child(
      [&] {
        Machine<Spec>::options() = options;
        Segment segment = make_machine_segment<Spec>();
        Spec::setup(segment);
        Machine<Spec> machine(segment, seed);
        MachineState<Spec> state{{Spec::initial_model()}, 0};
        rc::state::runAll(commands, state, machine);
        machine.finish();
      },
      CaseOptions{options.case_deadline});
}

// How many commands of a sequence are kills (for rapidcheck's tag summary).
template <class Spec>
std::size_t count_kills(const MachineCommands<Spec>& commands) {
  return static_cast<std::size_t>(
      std::count_if(commands.begin(), commands.end(), [](const auto& c) {
        return dynamic_cast<const KillDuringCommand<Spec>*>(c.get()) != nullptr ||
               dynamic_cast<const KillCommand<Spec>*>(c.get()) != nullptr;
      }));
}

// The whole property body: generates a command sequence and runs it. The
// summary rapidcheck prints after a passing run tells how many cases had
// how many kills.
template <class Spec>
void check_shared_machine(const MachineOptions& options = {}) {
  Machine<Spec>::options() = options;
  const auto commands = *machine_commands<Spec>(options).as("commands");
  RC_TAG(std::to_string(count_kills<Spec>(commands)) + " kills");
  run_shared_machine<Spec>(commands, options);
}

}  // namespace shmutils::properties
