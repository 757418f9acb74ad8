// shmutils::ShmObject — a raw shared-memory object: a named POSIX object
// (/dev/shm/NAME) or an anonymous memfd, and the fd that refers to it.
//
// Contract
//   Lives:       process-local, move-only; the one owner of its fd.
//   Lifetime:    closing the fd (close(), destructor) and removing the name
//                (unlink()) are separate, explicit steps. Nothing is unlinked
//                behind the caller's back: a name lives until someone unlinks it.
//   Names:       "/name" or "name" (a leading '/' is added); at most NAME_MAX
//                bytes after the '/'; no further '/', not "." or "..", no NUL.
//   Creation:    mode 0600 unless told otherwise, close-on-exec always.
//   Errors:      Error with the object's name, the operation and the cause.
//   This is the seed's shm_open layer. A formatted, validated segment with a
//   header, registry and user area is a Segment (segment.hpp).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "shmutils/shm/open_mode.hpp"
#include "shmutils/shm/unique_fd.hpp"

namespace shmutils {

// Returns the name with its leading '/', or throws InvalidName / NameTooLong.
std::string normalize_segment_name(std::string_view name);

class ShmObject {
 public:
  static constexpr mode_t kDefaultPermissions = 0600;

  // Opens or creates a named object. CreateOrTruncate empties an existing one.
  static ShmObject open(std::string_view name, OpenMode mode,
                        mode_t permissions = kDefaultPermissions);
  // The same with the seed's mode strings ("r", "r+", "w", "w+", "x", "x+").
  static ShmObject open(std::string_view name, std::string_view mode,
                        mode_t permissions = kDefaultPermissions);
  // A new anonymous object (memfd). debug_name shows in /proc/PID/fd only.
  static ShmObject create_anonymous(std::string_view debug_name = "shmutils");
  // Adopts an fd received from elsewhere (SCM_RIGHTS, inheritance).
  static ShmObject adopt(UniqueFd fd, std::string name, bool anonymous, bool writable);

  // Removes a name. Throws NotFound when it does not exist.
  static void unlink(std::string_view name);
  // Removes a name; false when it did not exist.
  static bool unlink_if_exists(std::string_view name);

  ShmObject() = default;
  ShmObject(ShmObject&&) noexcept = default;
  ShmObject& operator=(ShmObject&&) noexcept = default;

  // Removes this object's name (the fd stays open and usable).
  void unlink() const;
  // Closes the fd; the name (if any) stays.
  void close();

  std::uint64_t size() const;
  // ftruncate, then posix_fallocate of any growth, so a full /dev/shm fails
  // here with NoSpace instead of a SIGBUS at a later write.
  void resize(std::uint64_t new_size);
  struct stat stat() const;

  bool valid() const noexcept { return fd_.valid(); }
  int fd() const noexcept { return fd_.get(); }
  const std::string& name() const noexcept { return name_; }
  bool anonymous() const noexcept { return anonymous_; }
  bool writable() const noexcept { return writable_; }
  // "segment \"/name\"" or "memfd \"name\"": the object text used in errors.
  std::string describe() const;

 private:
  ShmObject(UniqueFd fd, std::string name, bool anonymous, bool writable)
      : fd_(std::move(fd)), name_(std::move(name)), anonymous_(anonymous), writable_(writable) {}

  UniqueFd fd_;
  std::string name_;
  bool anonymous_ = false;
  bool writable_ = false;
};

}  // namespace shmutils
