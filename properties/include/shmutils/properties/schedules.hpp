// shmutils::properties schedules — rapidcheck generators for what a
// multi-process test does: allocation scripts, lock schedules and kill
// schedules.
//
// Contract
//   Shrinking goes towards smaller failures: fewer steps (rapidcheck drops
//   elements of the containers), fewer workers (the worker count shrinks to
//   1 and every worker number towards 0), fewer kills, and earlier kills
//   (a kill's step and fault-point hit shrink towards the first).
//   Every value prints (operator<<), so a counterexample reads as a script.
#pragma once

#include <rapidcheck.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <utility>
#include <vector>

#include "shmutils/properties/generators.hpp"

namespace shmutils::properties {

// --- allocation scripts --------------------------------------------------------

struct AllocationStep {
  enum class Kind : std::uint8_t { Allocate, Reserve, Publish, Cancel, Free };
  Kind kind = Kind::Allocate;
  std::size_t size = 16;
  std::size_t alignment = 16;
  std::size_t pick = 0;  // which live block or pending reservation (modulo their count)
  friend std::ostream& operator<<(std::ostream& os, const AllocationStep& s) {
    constexpr const char* kNames[] = {"allocate", "reserve", "publish", "cancel", "free"};
    os << kNames[static_cast<int>(s.kind)];
    if (s.kind == Kind::Allocate || s.kind == Kind::Reserve)
      return os << " " << s.size << " B align " << s.alignment;
    return os << " #" << s.pick;
  }
};
using AllocationScript = std::vector<AllocationStep>;

inline rc::Gen<AllocationStep> allocation_step(std::size_t max_size = 200'000) {
  using Kind = AllocationStep::Kind;
  return rc::gen::build<AllocationStep>(
      rc::gen::set(&AllocationStep::kind,
                   // Repeats weigh the choice; shrinking goes towards the first.
                   element_towards_first({Kind::Allocate, Kind::Allocate, Kind::Allocate,
                                          Kind::Allocate, Kind::Reserve, Kind::Publish,
                                          Kind::Cancel, Kind::Free, Kind::Free, Kind::Free})),
      rc::gen::set(&AllocationStep::size,
                   rc::gen::oneOf(rc::gen::inRange<std::size_t>(1, 4097),
                                  rc::gen::inRange<std::size_t>(4097, max_size + 1))),
      rc::gen::set(&AllocationStep::alignment,
                   element_towards_first<std::size_t>({16, 16, 16, 16, 16, 16, 64, 4096})),
      rc::gen::set(&AllocationStep::pick, rc::gen::inRange<std::size_t>(0, 1024)));
}

inline rc::Gen<AllocationScript> allocation_script(std::size_t max_size = 200'000) {
  return rc::gen::container<AllocationScript>(allocation_step(max_size));
}

// --- lock schedules ------------------------------------------------------------

struct LockStep {
  enum class Action : std::uint8_t { Acquire, Release, TryAcquire, AcquireShared, ReleaseShared };
  unsigned worker = 0;
  Action action = Action::Acquire;
  friend std::ostream& operator<<(std::ostream& os, const LockStep& s) {
    constexpr const char* kNames[] = {"acquire", "release", "try_acquire", "acquire_shared",
                                      "release_shared"};
    return os << "worker " << s.worker << " " << kNames[static_cast<int>(s.action)];
  }
};

struct LockSchedule {
  unsigned workers = 1;
  std::vector<LockStep> steps;
  friend std::ostream& operator<<(std::ostream& os, const LockSchedule& s) {
    os << s.workers << " workers:";
    for (const LockStep& step : s.steps) os << " [" << step << "]";
    return os;
  }
};

// Steps over 1..max_workers workers; `shared` adds the shared actions.
inline rc::Gen<LockSchedule> lock_schedule(unsigned max_workers = 4, bool shared = false) {
  using Action = LockStep::Action;
  std::vector<Action> actions{Action::Acquire, Action::Release, Action::TryAcquire};
  if (shared) {
    actions.push_back(Action::AcquireShared);
    actions.push_back(Action::ReleaseShared);
  }
  // The worker count and the steps shrink independently (a count drawn first
  // and steps drawn for it would be drawn anew, and lost, whenever the count
  // shrinks): the schedule has as many workers as the count or its steps need.
  auto step = rc::gen::build<LockStep>(
      rc::gen::set(&LockStep::worker, rc::gen::inRange<unsigned>(0, max_workers)),
      rc::gen::set(&LockStep::action, element_towards_first(actions)));
  return rc::gen::map(rc::gen::pair(rc::gen::inRange<unsigned>(1, max_workers + 1),
                                    rc::gen::container<std::vector<LockStep>>(step)),
                      [](std::pair<unsigned, std::vector<LockStep>> drawn) {
                        unsigned workers = drawn.first;
                        for (const LockStep& s : drawn.second)
                          workers = std::max(workers, s.worker + 1);
                        return LockSchedule{workers, std::move(drawn.second)};
                      });
}

// --- kill schedules ------------------------------------------------------------

struct Kill {
  std::size_t at_step = 0;  // dies during this step of its script
  unsigned worker = 0;
  std::uint64_t hit = 1;  // at the hit-th fault point of that step (past its last: after it)
  friend std::ostream& operator<<(std::ostream& os, const Kill& k) {
    return os << "kill worker " << k.worker << " at step " << k.at_step << ", fault point hit "
              << k.hit;
  }
};

struct KillSchedule {
  std::vector<Kill> kills;  // ordered by step
  friend std::ostream& operator<<(std::ostream& os, const KillSchedule& s) {
    if (s.kills.empty()) return os << "no kills";
    for (std::size_t i = 0; i < s.kills.size(); ++i) os << (i == 0 ? "" : "; ") << s.kills[i];
    return os;
  }
};

// At most max_kills kills of workers [0, workers) during steps [0, steps).
inline rc::Gen<KillSchedule> kill_schedule(std::size_t steps, unsigned workers,
                                           std::size_t max_kills = 3, std::uint64_t max_hit = 16) {
  if (steps == 0 || workers == 0) return rc::gen::just(KillSchedule{});
  auto kill = rc::gen::build<Kill>(
      rc::gen::set(&Kill::at_step, rc::gen::inRange<std::size_t>(0, steps)),
      rc::gen::set(&Kill::worker, rc::gen::inRange<unsigned>(0, workers)),
      rc::gen::set(&Kill::hit, uniform_in_range<std::uint64_t>(1, max_hit + 1)));
  // max_kills places, each a kill or none: shrinking empties places (fewer
  // kills) before it makes a kill earlier.
  auto places = rc::gen::container<std::vector<rc::Maybe<Kill>>>(max_kills, rc::gen::maybe(kill));
  return rc::gen::map(places, [](const std::vector<rc::Maybe<Kill>>& chosen) {
    KillSchedule schedule;
    for (const rc::Maybe<Kill>& k : chosen)
      if (k) schedule.kills.push_back(*k);
    std::stable_sort(schedule.kills.begin(), schedule.kills.end(),
                     [](const Kill& a, const Kill& b) { return a.at_step < b.at_step; });
    return schedule;
  });
}

}  // namespace shmutils::properties
