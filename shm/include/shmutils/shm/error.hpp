// shmutils::Error — the one exception type every shmutils operation throws.
//
// Contract
//   Lives:       process-local value type.
//   Content:     what went wrong (ErrorKind), on which object (segment name, fd,
//                offset, ...), during which operation, and the errno if the OS
//                reported one. what() is a complete sentence a person can act on:
//                  shmutils: segment "/orders": open: not found: No such file or directory
//   Mapping:     errno values are translated to ErrorKind in exactly one place
//                (kind_from_errno), so callers switch on kinds, never on errno.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace shmutils {

enum class ErrorKind {
  NotFound,          // no such segment / object
  AlreadyExists,     // exclusive create of an existing name
  PermissionDenied,  // EACCES/EPERM, or a segment owned by another uid
  InvalidName,       // empty, "/", "." or ".." names, or a '/' after the first char
  NameTooLong,       // longer than NAME_MAX
  NoSpace,           // /dev/shm (tmpfs) is full
  OutOfMemory,       // no memory or address space left (mmap ENOMEM)
  TooSmall,          // a size below the minimum, or an object too small to be a segment
  Truncated,         // the object is smaller than its header says: another process shrank it
  BadMagic,          // not a shmutils segment
  VersionMismatch,   // a shmutils segment of a layout this build does not read
  CorruptHeader,     // checksum mismatch or an offset out of bounds
  NotInitialized,    // the creator died (or is stuck) before finishing initialization
  WrongSegment,      // a descriptor or handle names a different segment (uuid mismatch)
  Timeout,           // a bounded wait ran out
  InvalidArgument,   // a bad option, mode string, flag combination or descriptor text
  OutOfRange,        // an offset or address outside a mapping
  NotSupported,      // the kernel or file system does not offer the operation
  BadDescriptor,     // a closed or invalid file descriptor
  ProcessGone,       // ESRCH: the process does not exist
  NotRecoverable,    // a lock whose repair was abandoned (see Mutex::abandon_repair)
  DoubleFree,        // a heap block freed twice
  ForeignPointer,    // an offset or address that is not a block of this heap
  CorruptHeap,       // the allocator's structures are inconsistent (audit says where)
  TypeMismatch,      // a named object looked up as another type than it was made as
  System,            // any other errno
};

// Short lower-case name of a kind ("not found"), used in messages.
std::string_view to_string(ErrorKind kind) noexcept;

// The single errno -> ErrorKind translation.
ErrorKind kind_from_errno(int err) noexcept;

class Error : public std::runtime_error {
 public:
  // object: what was acted on, already quoted/described ("segment \"/a\"", "fd 7").
  // operation: the call or step ("open", "mmap", "validate header").
  // detail: extra cause text; errno text is appended when sys_errno != 0.
  Error(ErrorKind kind, std::string object, std::string operation, const std::string& detail,
        int sys_errno = 0);

  ErrorKind kind() const noexcept { return kind_; }
  const std::string& object() const noexcept { return object_; }
  const std::string& operation() const noexcept { return operation_; }
  int sys_errno() const noexcept { return sys_errno_; }

 private:
  ErrorKind kind_;
  std::string object_;
  std::string operation_;
  int sys_errno_;
};

// Throws an Error for an errno, with the kind from kind_from_errno and an
// explanation specific to the operation where one helps (mmap's EACCES, ...).
[[noreturn]] void throw_errno(std::string_view object, std::string_view operation, int err,
                              std::string_view detail = {});

}  // namespace shmutils
