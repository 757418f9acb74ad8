#include "shmutils/shm/shm_object.hpp"

#include <fcntl.h>
#include <sys/mman.h>

#include <climits>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"

namespace shmutils {

std::string normalize_segment_name(std::string_view name) {
  std::string quoted = "segment \"" + std::string(name) + "\"";
  auto invalid = [&](std::string_view why) {
    throw Error(ErrorKind::InvalidName, quoted, "check name", std::string(why));
  };
  std::string_view bare = name;
  if (!bare.empty() && bare.front() == '/') bare.remove_prefix(1);
  if (bare.empty()) invalid("the name is empty");
  if (bare.find('/') != std::string_view::npos) invalid("a '/' may only lead the name");
  if (bare.find('\0') != std::string_view::npos) invalid("the name contains a NUL byte");
  if (bare == "." || bare == "..") invalid("\".\" and \"..\" are not names");
  if (bare.size() > NAME_MAX) {
    throw Error(ErrorKind::NameTooLong, quoted, "check name",
                std::to_string(bare.size()) + " bytes, at most " + std::to_string(NAME_MAX));
  }
  return "/" + std::string(bare);
}

ShmObject ShmObject::open(std::string_view name, OpenMode mode, mode_t permissions) {
  std::string normalized = normalize_segment_name(name);
  if (mode.may_create() && !mode.writable()) {
    throw Error(ErrorKind::InvalidArgument, "segment \"" + normalized + "\"", "open",
                "creating a shared-memory object needs read-write access");
  }
  if ((permissions & ~static_cast<mode_t>(07777)) != 0) {
    throw Error(ErrorKind::InvalidArgument, "segment \"" + normalized + "\"", "open",
                "permissions must be within 07777");
  }
  UniqueFd fd = sys::shm_open(normalized, to_flags(mode), permissions);
  return ShmObject(std::move(fd), std::move(normalized), false, mode.writable());
}

ShmObject ShmObject::open(std::string_view name, std::string_view mode, mode_t permissions) {
  return open(name, from_mode(mode), permissions);
}

ShmObject ShmObject::create_anonymous(std::string_view debug_name) {
  std::string name(debug_name);
  UniqueFd fd = sys::memfd_create(name, 0);
  return ShmObject(std::move(fd), std::move(name), true, true);
}

ShmObject ShmObject::adopt(UniqueFd fd, std::string name, bool anonymous, bool writable) {
  if (!fd.valid()) {
    throw Error(ErrorKind::BadDescriptor, "segment \"" + name + "\"", "adopt", "invalid fd");
  }
  return ShmObject(std::move(fd), std::move(name), anonymous, writable);
}

void ShmObject::unlink(std::string_view name) { sys::shm_unlink(normalize_segment_name(name)); }

bool ShmObject::unlink_if_exists(std::string_view name) {
  return sys::shm_unlink_if_exists(normalize_segment_name(name));
}

void ShmObject::unlink() const {
  if (anonymous_) {
    throw Error(ErrorKind::InvalidArgument, describe(), "unlink",
                "an anonymous object has no name");
  }
  sys::shm_unlink(name_);
}

void ShmObject::close() { fd_.close(); }

std::string ShmObject::describe() const {
  return (anonymous_ ? "memfd \"" : "segment \"") + name_ + "\"";
}

std::uint64_t ShmObject::size() const { return static_cast<std::uint64_t>(stat().st_size); }

void ShmObject::resize(std::uint64_t new_size) {
  std::string object = describe();
  if (!writable_) throw Error(ErrorKind::PermissionDenied, object, "resize", "opened read-only");
  std::uint64_t old_size = size();
  sys::ftruncate(fd(), new_size, object);
  if (new_size > old_size) {
    try {
      sys::fallocate(fd(), old_size, new_size - old_size, object);
    } catch (...) {
      // Give back what could not be backed, so no later write hits a hole.
      sys::ftruncate(fd(), old_size, object);
      throw;
    }
  }
}

struct stat ShmObject::stat() const {
  if (!fd_.valid()) throw Error(ErrorKind::BadDescriptor, describe(), "stat", "closed");
  return sys::fstat(fd(), describe());
}

}  // namespace shmutils
