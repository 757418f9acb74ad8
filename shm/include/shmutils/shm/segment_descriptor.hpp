// shmutils::SegmentDescriptor — what another process needs to attach to a
// segment, with a stable one-line text form for argv, the environment or a
// pipe:
//
//   shmutils-segment:1;name=/orders;size=1048576;uuid=<32 hex digits>
//   shmutils-segment:1;memfd=shmutils;fd=7;size=1048576;uuid=<32 hex digits>
//
// Names are percent-encoded where they hold ';', '=', '%', spaces or bytes
// outside printable ASCII. The uuid names one creation: attaching to a name
// that was re-created since the descriptor was made fails with WrongSegment.
// An anonymous (memfd) segment travels as an fd: inherited across exec (see
// Segment::inheritable_descriptor) or sent over a Unix socket with
// send_segment / receive_segment (SCM_RIGHTS).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shmutils/shm/uuid.hpp"

namespace shmutils {

struct SegmentDescriptor {
  bool anonymous = false;
  std::string name;  // "/name" for named segments, the memfd debug name otherwise
  int fd = -1;       // anonymous only: the fd number in the receiving process
  std::uint64_t size = 0;
  Uuid uuid;

  std::string to_string() const;
  // Throws InvalidArgument naming what is wrong with the text.
  static SegmentDescriptor parse(std::string_view text);
  friend bool operator==(const SegmentDescriptor&, const SegmentDescriptor&) = default;
};

}  // namespace shmutils
