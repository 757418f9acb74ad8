// shmutils::OpenMode — how a shared-memory object is opened, as explicit,
// validated options, with the seed's mode strings and raw O_* flags as two
// other spellings of the same thing.
//
//   mode string   access      disposition        O_* flags
//   "r"           read-only   OpenExisting       O_RDONLY
//   "r+"          read-write  OpenExisting       O_RDWR
//   "w", "w+"     read-write  CreateOrTruncate   O_RDWR|O_CREAT|O_TRUNC
//   "x", "x+"     read-write  CreateExclusive    O_RDWR|O_CREAT|O_EXCL
//   (none)        read-write  OpenOrCreate       O_RDWR|O_CREAT
//
// "w" and "x" are read-write: a shared-memory object cannot be mapped
// write-only. A 'b' may appear once and is ignored (shared memory is binary).
// 'a' is rejected: appending has no meaning for a fixed-size object.
// "x+" never attaches to an existing object: it fails with AlreadyExists.
#pragma once

#include <string>
#include <string_view>

namespace shmutils {

enum class Access { ReadOnly, ReadWrite };

enum class Disposition {
  OpenExisting,      // fail with NotFound when absent
  OpenOrCreate,      // create when absent, keep contents when present
  CreateExclusive,   // fail with AlreadyExists when present
  CreateOrTruncate,  // create when absent, empty it when present
};

struct OpenMode {
  Access access = Access::ReadWrite;
  Disposition disposition = Disposition::OpenExisting;

  bool writable() const noexcept { return access == Access::ReadWrite; }
  bool may_create() const noexcept { return disposition != Disposition::OpenExisting; }
  friend bool operator==(const OpenMode&, const OpenMode&) = default;
};

// Parses "r", "r+", "w", "w+", "x", "x+" (each optionally with one 'b').
// Throws Error(InvalidArgument) naming the bad string and why.
OpenMode from_mode(std::string_view mode);
// The canonical mode string ("r", "r+", "w+", "x+"); OpenOrCreate has no
// mode string and throws InvalidArgument.
std::string to_mode(OpenMode mode);

// O_* flags <-> OpenMode. from_flags rejects what shm_open cannot honour or
// what is ambiguous: O_WRONLY, O_EXCL without O_CREAT, O_TRUNC with O_RDONLY,
// creation with O_RDONLY, unknown bits.
OpenMode from_flags(int flags);
int to_flags(OpenMode mode) noexcept;

}  // namespace shmutils
