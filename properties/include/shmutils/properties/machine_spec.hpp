// shmutils::properties::SharedMachineSpec — what a spec of a shared state
// machine provides (shared_machine.hpp runs it; models/ has complete ones),
// checked where a spec is first used, with the requirement it misses named.
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
#pragma once

#include <rapidcheck.h>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <ostream>
#include <type_traits>

#include "shmutils/shm/segment.hpp"

namespace shmutils::properties {

template <class T>
concept Printable = requires(std::ostream& out, const T& value) {
  out << value;
};

template <class Spec>
concept SharedMachineSpec = requires(const typename Spec::Op& op, unsigned worker,
                                     typename Spec::Model& model, Segment& segment) {
  requires std::copyable<typename Spec::Model> && std::equality_comparable<typename Spec::Model> &&
      Printable<typename Spec::Model>;
  requires std::copyable<typename Spec::Op> && Printable<typename Spec::Op>;
  // A result crosses a pipe from the worker that ran the operation.
  requires std::is_trivially_copyable_v<typename Spec::Result> &&
      std::equality_comparable<typename Spec::Result> && Printable<typename Spec::Result>;
  { Spec::initial_model() } -> std::same_as<typename Spec::Model>;
  { Spec::op(model) } -> std::same_as<rc::Gen<typename Spec::Op>>;
  { Spec::apply(op, worker, model) } -> std::same_as<typename Spec::Result>;
  { Spec::run(op, worker, segment) } -> std::same_as<typename Spec::Result>;
  {Spec::setup(segment)};
};

struct MachineOptions {
  unsigned max_workers = 3;
  unsigned max_kills = 2;     // kill commands per case
  std::uint64_t max_hit = 6;  // KillDuring dies at a fault point hit in [1, max_hit]
  int op_weight = 6;          // operations per kill command, roughly
  std::chrono::milliseconds task_deadline{5'000};
  std::chrono::milliseconds case_deadline{60'000};
};

}  // namespace shmutils::properties
