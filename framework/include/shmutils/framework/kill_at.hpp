// shmutils::framework::KillAt — "die at the Nth hit of fault point P", the
// fault hook behind every planned death: of a harness worker, of a property
// worker, of a test's child.
//
// Contract
//   Counting:    hits of the point named `point` (of any point when it is
//                empty) are counted from construction; the nth one is due.
//                nth = 0 never comes.
//   Death:       Kill raises SIGKILL where the point is, so the process dies
//                inside the operation; Stop raises SIGSTOP instead, for a
//                supervisor that takes the stack first and kills after (the
//                harness: SupervisedChild sees it as Stopped).
//   Notice:      `before`, when given, runs just before the death with the
//                point reached (to tell a supervisor which point it was);
//                like any fault hook it must take no lock shmutils may hold.
//   ScopedKillAt installs a KillAt for its scope; a hook of its own (one
//   that counts too, as the harness's does) asks due() and calls die().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shmutils/shm/fault_point.hpp"

namespace shmutils::framework {

enum class Death { Kill, Stop };

class KillAt final : public FaultHook {
 public:
  using Notice = void (*)(const FaultPoint& point, void* context) noexcept;

  KillAt(std::string_view point, std::uint64_t nth, Death how = Death::Kill,
         Notice before = nullptr, void* context = nullptr)
      : point_(point), nth_(nth), how_(how), before_(before), context_(context) {}

  // Counts this hit; true when it is the planned one.
  bool due(const FaultPoint& point) noexcept;
  // Notices and dies (Stop: returns when the supervisor lets it go on).
  void die(const FaultPoint& point) noexcept;
  std::uint64_t hits() const noexcept { return hits_; }

  FaultAction on_reached(const FaultPoint& point, std::uint64_t hit_number) noexcept override;

 private:
  std::string point_;
  std::uint64_t nth_;
  Death how_;
  Notice before_;
  void* context_;
  std::uint64_t hits_ = 0;
};

class ScopedKillAt {
 public:
  explicit ScopedKillAt(std::string_view point, std::uint64_t nth = 1, Death how = Death::Kill,
                        KillAt::Notice before = nullptr, void* context = nullptr)
      : rule_(point, nth, how, before, context), installed_(rule_) {}
  const KillAt& rule() const noexcept { return rule_; }

 private:
  KillAt rule_;
  ScopedFaultHook installed_;
};

}  // namespace shmutils::framework
