#include "worker_main.hpp"

#include <array>
#include <csignal>
#include <cstdio>
#include <random>

#include "shmutils/framework/address_perturbation.hpp"
#include "shmutils/framework/kill_at.hpp"
#include "shmutils/framework/supervised_child.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"

namespace shmutils::framework {
namespace detail {
namespace {

// Counts every hit of the run's points in the witness, and stops the worker
// at its planned one (the harness takes the stack there, then kills).
class WorkerFaultHook final : public FaultHook {
 public:
  WorkerFaultHook(Witness& witness, WorkerRecord& record)
      : witness_(witness),
        record_(record),
        planned_(planned_point_name(witness, record), planned_hit(record), Death::Stop,
                 &record_stop, this) {
    for (std::uint32_t i = 0; i < witness.point_count(); ++i) {
      FaultPoint* point = find_fault_point(witness.point_name(static_cast<std::int32_t>(i)));
      if (point != nullptr) point->reset_hits();
      points_[i] = point;
    }
  }

  FaultAction on_reached(const FaultPoint& point, std::uint64_t /*hit*/) noexcept override {
    for (std::uint32_t i = 0; i < witness_.point_count(); ++i) {
      if (points_[i] != &point) continue;
      witness_.hits(static_cast<std::int32_t>(i)).fetch_add(1, std::memory_order_relaxed);
      if (static_cast<std::int32_t>(i) == record_.planned_point.load(std::memory_order_relaxed) &&
          planned_.due(point)) {
        stopped_at_ = static_cast<std::int32_t>(i);
        planned_.die(point);
      }
      break;
    }
    return FaultAction::Continue;
  }

 private:
  static std::string_view planned_point_name(Witness& witness, const WorkerRecord& record) {
    std::int32_t point = record.planned_point.load();
    return point >= 0 ? witness.point_name(point) : std::string_view();
  }
  static std::uint64_t planned_hit(const WorkerRecord& record) {
    return record.planned_point.load() >= 0 ? record.planned_hit.load() : 0;  // 0: never
  }
  static void record_stop(const FaultPoint& /*point*/, void* self) noexcept {
    auto* hook = static_cast<WorkerFaultHook*>(self);
    hook->record_.stopped_at_point.store(hook->stopped_at_, std::memory_order_relaxed);
    hook->record_.state.store(static_cast<std::uint32_t>(WorkerState::StoppedAtFaultPoint),
                              std::memory_order_release);
  }

  Witness& witness_;
  WorkerRecord& record_;
  KillAt planned_;
  std::int32_t stopped_at_ = -1;
  std::array<const FaultPoint*, Witness::kMaxPoints> points_{};
};

// Everything a worker does once its segment is attached, in either mode.
int run_worker(Scenario& scenario, Segment& segment, Witness& witness, std::uint32_t incarnation,
               std::uint64_t seed, int nice) {
  // Workers run at a lower priority than the harness: with more busy workers
  // than cores, the harness would otherwise wait a scheduler slice for every
  // kill, reap and check, and the kill rate would be the scheduler's.
  sys::set_priority(nice);
  WorkerRecord& record = witness.worker(incarnation);
  record.mapped_base.store(reinterpret_cast<std::uintptr_t>(segment.base()));
  record.pid_namespace.store(sys::pid_namespace_id(), std::memory_order_relaxed);
  record.own_pid.store(sys::getpid(), std::memory_order_release);
  WorkerFaultHook hook(witness, record);
  record.state.store(static_cast<std::uint32_t>(WorkerState::Running), std::memory_order_release);
  {
    ScopedFaultHook installed(hook);
    WorkerContext context(segment, witness, incarnation, seed);
    scenario.work(context);
  }
  record.state.store(static_cast<std::uint32_t>(WorkerState::Finished), std::memory_order_release);
  return 0;
}

// Maps the segment at a random base, with the harness's range kept free: a
// pointer valid only there faults here.
int run_perturbed(Scenario& scenario, const SegmentDescriptor& descriptor, Witness& witness,
                  const WorkerArguments& arguments, std::uint64_t seed) {
  void* harness_base =
      reinterpret_cast<void*>(arguments.harness_base);  // NOLINT(performance-no-int-to-ptr)
  Mapping guard;
  try {
    guard = Mapping::map({.size = arguments.harness_size,
                          .protection = Protection::None,
                          .flags = MapFlags::Private | MapFlags::FixedNoReplace,
                          .hint = harness_base,
                          .name = "harness range guard"});
  } catch (const Error&) {  // something already lives there: nothing can map over it either
  }
  std::mt19937_64 random(seed);
  Segment segment = attach_at_random_base(
      random, [&](const SegmentOptions& options) { return Segment::attach(descriptor, options); });
  return run_worker(scenario, segment, witness, arguments.incarnation, seed, arguments.nice);
}

}  // namespace

int run_forked_worker(Scenario& scenario, Segment& inherited, Witness& witness,
                      std::uint32_t incarnation, const RunOptions& options, int output_fd) {
  sys::dup2(output_fd, 1);
  sys::dup2(output_fd, 2);
  std::uint64_t seed = derive_seed(options.seed, incarnation);
  if (!options.perturb)
    return run_worker(scenario, inherited, witness, incarnation, seed, options.worker_nice);
  std::mt19937_64 random(seed);
  Segment perturbed = attach_perturbed(inherited, random);
  return run_worker(scenario, perturbed, witness, incarnation, seed, options.worker_nice);
}

int run_worker_from_arguments(const WorkerArguments& arguments, const ScenarioFactory& make,
                              int witness_fd, int segment_fd) {
  try {
    std::unique_ptr<Scenario> scenario = make ? make(arguments.scenario) : nullptr;
    if (!scenario) {
      // Workers rebuild the scenario by name: a program without a factory
      // that knows it cannot be a worker for it.
      std::fprintf(stderr,
                   "shmutils worker: cannot build scenario \"%s\": %s; pass a ScenarioFactory "
                   "that builds it by name to test_main (SHMUTILS_TEST_MAIN(factory)) or to "
                   "run_spawned_worker\n",
                   arguments.scenario.c_str(),
                   make ? "this program's ScenarioFactory does not know it"
                        : "this program was given no ScenarioFactory");
      return 64;
    }
    std::uint64_t seed = derive_seed(arguments.run_seed, arguments.incarnation);
    SegmentDescriptor witness_descriptor = SegmentDescriptor::parse(arguments.witness_descriptor);
    SegmentDescriptor descriptor = SegmentDescriptor::parse(arguments.segment_descriptor);
    if (witness_fd >= 0) witness_descriptor.fd = witness_fd;
    if (segment_fd >= 0) descriptor.fd = segment_fd;
    Segment witness_segment = Segment::attach(witness_descriptor, {.register_process = false});
    auto* witness = reinterpret_cast<Witness*>(witness_segment.user_area().data());
    if (arguments.perturb) return run_perturbed(*scenario, descriptor, *witness, arguments, seed);
    // Where the harness has it, as a forked worker would (else anywhere).
    void* harness_base =
        reinterpret_cast<void*>(arguments.harness_base);  // NOLINT(performance-no-int-to-ptr)
    try {
      Segment segment = Segment::attach(descriptor, {.address_hint = harness_base});
      return run_worker(*scenario, segment, *witness, arguments.incarnation, seed, arguments.nice);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::AlreadyExists) throw;
    }
    Segment segment = Segment::attach(descriptor);
    return run_worker(*scenario, segment, *witness, arguments.incarnation, seed, arguments.nice);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shmutils worker: %s\n", e.what());
    return 70;
  }
}

}  // namespace detail

int run_spawned_worker(int argc, char** argv, const ScenarioFactory& make) {
  if (argc < 2 || argv[1] != detail::kWorkerFlag) return -1;
  detail::WorkerArguments arguments;
  try {
    sys::set_parent_death_signal(SIGKILL);  // posix_spawn could not set it for us
    (void)supervise_spawned_process();
    arguments =
        detail::WorkerArguments::from_strings(std::vector<std::string>(argv + 2, argv + argc));
  } catch (const Error& e) {
    std::fprintf(stderr, "shmutils worker: %s\n", e.what());
    return e.kind() == ErrorKind::InvalidArgument ? 64 : 70;
  }
  return detail::run_worker_from_arguments(arguments, make, -1, -1);
}

}  // namespace shmutils::framework
