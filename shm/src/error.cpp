#include "shmutils/shm/error.hpp"

#include <cerrno>
#include <cstring>

namespace shmutils {

std::string_view to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::NotFound: return "not found";
    case ErrorKind::AlreadyExists: return "already exists";
    case ErrorKind::PermissionDenied: return "permission denied";
    case ErrorKind::InvalidName: return "invalid name";
    case ErrorKind::NameTooLong: return "name too long";
    case ErrorKind::NoSpace: return "no space left";
    case ErrorKind::OutOfMemory: return "out of memory";
    case ErrorKind::TooSmall: return "too small";
    case ErrorKind::Truncated: return "truncated by another process";
    case ErrorKind::BadMagic: return "bad magic (not a shmutils segment)";
    case ErrorKind::VersionMismatch: return "layout version mismatch";
    case ErrorKind::CorruptHeader: return "corrupt header";
    case ErrorKind::NotInitialized: return "not initialized";
    case ErrorKind::WrongSegment: return "wrong segment";
    case ErrorKind::Timeout: return "timed out";
    case ErrorKind::InvalidArgument: return "invalid argument";
    case ErrorKind::OutOfRange: return "out of range";
    case ErrorKind::NotSupported: return "not supported";
    case ErrorKind::BadDescriptor: return "bad file descriptor";
    case ErrorKind::ProcessGone: return "no such process";
    case ErrorKind::NotRecoverable: return "not recoverable";
    case ErrorKind::DoubleFree: return "double free";
    case ErrorKind::ForeignPointer: return "foreign pointer";
    case ErrorKind::CorruptHeap: return "corrupt heap";
    case ErrorKind::TypeMismatch: return "type mismatch";
    case ErrorKind::System: return "system error";
  }
  return "unknown error";
}

ErrorKind kind_from_errno(int err) noexcept {
  switch (err) {
    case ENOENT: return ErrorKind::NotFound;
    case EEXIST: return ErrorKind::AlreadyExists;
    case EACCES:
    case EPERM: return ErrorKind::PermissionDenied;
    case ENAMETOOLONG: return ErrorKind::NameTooLong;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return ErrorKind::NoSpace;
    case ENOMEM: return ErrorKind::OutOfMemory;
    case EINVAL: return ErrorKind::InvalidArgument;
    case EOVERFLOW:
    case ERANGE: return ErrorKind::OutOfRange;
    case ENOTSUP:
    case ENODEV:
    case ENOSYS:
    case ENXIO: return ErrorKind::NotSupported;
    case EBADF: return ErrorKind::BadDescriptor;
    case ETIMEDOUT: return ErrorKind::Timeout;
    case ESRCH: return ErrorKind::ProcessGone;
    case ENOTRECOVERABLE: return ErrorKind::NotRecoverable;
    default: return ErrorKind::System;
  }
}

namespace {

std::string compose(ErrorKind kind, const std::string& object, const std::string& operation,
                    const std::string& detail, int sys_errno) {
  std::string text = "shmutils: ";
  if (!object.empty()) text += object + ": ";
  if (!operation.empty()) text += operation + ": ";
  text += to_string(kind);
  if (!detail.empty()) text += ": " + detail;
  if (sys_errno != 0) {
    text += " (";
    // strerrordesc_np: glibc's thread-safe errno text; null for unknown values.
    const char* description = ::strerrordesc_np(sys_errno);
    text += description != nullptr ? description : "errno " + std::to_string(sys_errno);
    text += ")";
  }
  return text;
}

// Explanations the bare errno text does not give, keyed by the operation.
std::string_view explain(std::string_view operation, int err) {
  if (operation == "mmap") {
    switch (err) {
      case EACCES:
        return "the descriptor is not open for reading, or a shared writable mapping was "
               "asked of a descriptor not open for writing";
      case EINVAL: return "length is 0, or the address or offset is not page aligned, or bad flags";
      case ENOMEM: return "no memory or address space for the mapping, or the range is in use";
      case ENODEV: return "the file system of the descriptor does not support mapping";
      case EOVERFLOW: return "offset + length overflows the file offset type";
      case EEXIST: return "the fixed-noreplace range is already mapped";
      case EAGAIN: return "locked memory limit reached (populate/mlock)";
      default: break;
    }
  }
  if (operation == "shm_open" && err == EINVAL) return "the name is not a valid shared-memory name";
  if (operation == "posix_fallocate" && err == ENOSPC) return "/dev/shm is full";
  return {};
}

}  // namespace

Error::Error(ErrorKind kind, std::string object, std::string operation, const std::string& detail,
             int sys_errno)
    : std::runtime_error(compose(kind, object, operation, detail, sys_errno)),
      kind_(kind),
      object_(std::move(object)),
      operation_(std::move(operation)),
      sys_errno_(sys_errno) {}

void throw_errno(std::string_view object, std::string_view operation, int err,
                 std::string_view detail) {
  std::string full_detail(detail);
  if (std::string_view why = explain(operation, err); !why.empty()) {
    if (!full_detail.empty()) full_detail += "; ";
    full_detail += why;
  }
  throw Error(kind_from_errno(err), std::string(object), std::string(operation), full_detail, err);
}

}  // namespace shmutils
