// shmutils::properties::models lock results — what a lock operation of the
// lock models reports, as one printable value.
#pragma once

#include <cstdint>
#include <ostream>

namespace shmutils::properties::models {

enum class LockOutcome : std::uint8_t {
  Acquired,     // taken
  OwnerDied,    // taken from a holder that died; repaired and marked consistent
  Busy,         // held by another worker
  AlreadyHeld,  // this worker holds it already (not attempted)
  Released,     // given back
  StillHeld,    // a nested hold was given back; the lock is still held
  NotHeld,      // nothing to give back (not attempted)
};

inline std::ostream& operator<<(std::ostream& os, LockOutcome outcome) {
  constexpr const char* kNames[] = {"acquired", "owner died", "busy",    "already held",
                                    "released", "still held", "not held"};
  return os << kNames[static_cast<int>(outcome)];
}

}  // namespace shmutils::properties::models
