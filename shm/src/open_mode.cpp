#include "shmutils/shm/open_mode.hpp"

#include <fcntl.h>

#include "shmutils/shm/error.hpp"

namespace shmutils {

namespace {

[[noreturn]] void bad_mode(std::string_view mode, std::string_view why) {
  throw Error(ErrorKind::InvalidArgument, "mode \"" + std::string(mode) + "\"", "parse mode",
              std::string(why));
}

}  // namespace

OpenMode from_mode(std::string_view mode) {
  std::string core;
  bool seen_binary = false;
  for (char c : mode) {
    if (c == 'b') {
      if (seen_binary) bad_mode(mode, "'b' given twice");
      seen_binary = true;
    } else {
      core += c;
    }
  }
  if (core == "r") return {Access::ReadOnly, Disposition::OpenExisting};
  if (core == "r+") return {Access::ReadWrite, Disposition::OpenExisting};
  if (core == "w" || core == "w+") return {Access::ReadWrite, Disposition::CreateOrTruncate};
  if (core == "x" || core == "x+") return {Access::ReadWrite, Disposition::CreateExclusive};
  if (core.find('a') != std::string::npos) {
    bad_mode(mode, "append ('a') has no meaning for shared memory");
  }
  bad_mode(mode, "expected one of r, r+, w, w+, x, x+ (optionally with b)");
}

std::string to_mode(OpenMode mode) {
  switch (mode.disposition) {
    case Disposition::OpenExisting: return mode.writable() ? "r+" : "r";
    case Disposition::CreateOrTruncate: return "w+";
    case Disposition::CreateExclusive: return "x+";
    case Disposition::OpenOrCreate: break;
  }
  throw Error(ErrorKind::InvalidArgument, "open mode", "to_mode",
              "open-or-create (O_CREAT without O_EXCL or O_TRUNC) has no mode string");
}

OpenMode from_flags(int flags) {
  auto bad = [&](std::string_view why) -> OpenMode {
    throw Error(ErrorKind::InvalidArgument, "flags " + std::to_string(flags), "from_flags",
                std::string(why));
  };
  constexpr int known = O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC;
  if ((flags & ~known) != 0) return bad("unknown bits for a shared-memory object");
  int access = flags & O_ACCMODE;
  if (access == O_WRONLY) return bad("O_WRONLY: shared memory cannot be mapped write-only");
  if (access != O_RDONLY && access != O_RDWR) return bad("bad access mode");
  bool create = (flags & O_CREAT) != 0;
  bool exclusive = (flags & O_EXCL) != 0;
  bool truncate = (flags & O_TRUNC) != 0;
  if (exclusive && !create) return bad("O_EXCL without O_CREAT");
  if (access == O_RDONLY && (create || truncate)) {
    return bad("creating or truncating needs O_RDWR");
  }
  if (exclusive && truncate)
    return bad("O_EXCL with O_TRUNC: an exclusive create is already empty");
  OpenMode mode;
  mode.access = access == O_RDWR ? Access::ReadWrite : Access::ReadOnly;
  if (exclusive) {
    mode.disposition = Disposition::CreateExclusive;
  } else if (create && truncate) {
    mode.disposition = Disposition::CreateOrTruncate;
  } else if (create) {
    mode.disposition = Disposition::OpenOrCreate;
  } else if (truncate) {
    return bad("O_TRUNC without O_CREAT is not supported: use CreateOrTruncate");
  } else {
    mode.disposition = Disposition::OpenExisting;
  }
  return mode;
}

int to_flags(OpenMode mode) noexcept {
  int flags = mode.writable() ? O_RDWR : O_RDONLY;
  switch (mode.disposition) {
    case Disposition::OpenExisting: break;
    case Disposition::OpenOrCreate: flags |= O_CREAT; break;
    case Disposition::CreateExclusive: flags |= O_CREAT | O_EXCL; break;
    case Disposition::CreateOrTruncate: flags |= O_CREAT | O_TRUNC; break;
  }
  return flags;
}

}  // namespace shmutils
