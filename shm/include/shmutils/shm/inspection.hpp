// shmutils::inspect — what a segment holds, as a tool shows it: its locks and
// who holds them, its named objects with their types. Read without taking
// any lock, so an inspection never waits and never changes the segment.
//
// Contract
//   Locks:       "heap" and "names" always; "class N" (N: the class's object
//                size) only when held or left by a dead holder.
//   Objects:     every name of the directory, with the type its block was
//                allocated for ("" when none was recorded) and whether its
//                construction finished.
//   Hostile:     a segment without a heap has neither; every offset comes
//                from the validated layout of the attachment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shmutils/shm/lock_holder.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils {

struct InspectedLock {
  std::string name;
  LockHolder holder;
};

struct InspectedObject {
  std::string name;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::string type;
  bool ready = false;
};

struct SegmentInspection {
  std::vector<InspectedLock> locks;
  std::vector<InspectedObject> named_objects;
};

SegmentInspection inspect(const Segment& segment);
// The locks alone (cheap: no walk of the heap).
std::vector<InspectedLock> inspect_locks(const Segment& segment);

}  // namespace shmutils
