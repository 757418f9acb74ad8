// shmutils::properties machine commands — what a shared state machine case
// is made of (an operation of a worker, an operation killed at a fault point
// hit, an idle worker killed), and the generator of their sequences.
#pragma once

#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "shmutils/properties/generators.hpp"
#include "shmutils/properties/machine_state.hpp"
#include "shmutils/properties/worker_pool.hpp"

namespace shmutils::properties {

template <SharedMachineSpec Spec>
class Machine;

template <SharedMachineSpec Spec>
using MachineCommand = rc::state::Command<MachineState<Spec>, Machine<Spec>>;

// Worker w runs op.
template <SharedMachineSpec Spec>
class OpCommand : public MachineCommand<Spec>, public RemoteTask {
 public:
  using Op = typename Spec::Op;
  using Result = typename Spec::Result;

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
template <SharedMachineSpec Spec>
class KillDuringCommand : public OpCommand<Spec> {
 public:
  KillDuringCommand(unsigned worker, typename Spec::Op op, std::uint64_t hit)
      : OpCommand<Spec>(worker, std::move(op)), hit_(hit) {}
  std::uint64_t hit() const { return hit_; }

  void checkPreconditions(const MachineState<Spec>& state) const override {
    RC_PRE(state.kills < state.max_kills);
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
template <SharedMachineSpec Spec>
class KillCommand : public MachineCommand<Spec> {
 public:
  explicit KillCommand(unsigned worker) : worker_(worker) {}
  void checkPreconditions(const MachineState<Spec>& state) const override {
    RC_PRE(state.kills < state.max_kills);
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

template <SharedMachineSpec Spec>
using MachineCommands = rc::state::Commands<MachineCommand<Spec>>;

// The generator of command sequences for Spec. One generator makes every
// kind of command, so rapidcheck can shrink a kill into the plain operation
// (the kind shrinks towards "no kill") as well as drop it.
template <SharedMachineSpec Spec>
rc::Gen<MachineCommands<Spec>> machine_commands(const MachineOptions& options = {}) {
  enum class Kind { Operation, KillDuring, KillIdle };
  std::vector<Kind> kinds(static_cast<std::size_t>(std::max(options.op_weight, 1)),
                          Kind::Operation);
  kinds.push_back(Kind::KillDuring);
  kinds.push_back(Kind::KillIdle);
  MachineState<Spec> initial{{Spec::initial_model()}, 0, options.max_kills};
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

// How many commands of a sequence are kills (for rapidcheck's tag summary).
template <SharedMachineSpec Spec>
std::size_t count_kills(const MachineCommands<Spec>& commands) {
  return static_cast<std::size_t>(
      std::count_if(commands.begin(), commands.end(), [](const auto& c) {
        return dynamic_cast<const KillDuringCommand<Spec>*>(c.get()) != nullptr ||
               dynamic_cast<const KillCommand<Spec>*>(c.get()) != nullptr;
      }));
}

}  // namespace shmutils::properties
