// shmutils::properties::MachineState — every state a shared structure may be
// in after the commands so far (a kill makes the model uncertain), and the
// case's kill budget, which the commands' preconditions read.
#pragma once

#include <algorithm>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "shmutils/properties/machine_spec.hpp"

namespace shmutils::properties {

template <SharedMachineSpec Spec>
struct MachineState {
  std::vector<typename Spec::Model> possible;  // every state the structure may be in
  unsigned kills = 0;
  unsigned max_kills = 0;  // the case's budget (MachineOptions::max_kills)
};

namespace detail {

template <class T>
void add_unique(std::vector<T>& states, T state) {
  if (std::find(states.begin(), states.end(), state) == states.end())
    states.push_back(std::move(state));
}

template <SharedMachineSpec Spec>
void apply_to_all(MachineState<Spec>& state, const typename Spec::Op& op, unsigned worker) {
  std::vector<typename Spec::Model> next;
  for (typename Spec::Model model : state.possible) {
    (void)Spec::apply(op, worker, model);
    add_unique(next, std::move(model));
  }
  state.possible = std::move(next);
}

template <SharedMachineSpec Spec>
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
template <SharedMachineSpec Spec>
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

}  // namespace shmutils::properties
