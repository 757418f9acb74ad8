// The initialization protocol of a segment: who formats a new one, and how
// the others wait for it, even when its creator dies half way.
#include <fcntl.h>

#include <chrono>
#include <cstdio>
#include <span>

#include "segment_init.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_init_after_create, "segment.init.after_create");
SHMUTILS_FAULT_POINT(fp_init_after_truncate, "segment.init.after_truncate");

namespace {

constexpr std::uint64_t kPollNs = 1'000'000;  // 1 ms between looks at an initializing segment
// An object that is uninitialized with nobody holding the init flock may be
// one whose creator has not yet reached flock: act on it only after this.
constexpr std::uint64_t kCreatorGraceNs = 100'000'000;

// What the header's first word says, read from the object without mapping it.
enum class InitState { Ready, NotYet, Foreign, Truncated };

InitState peek_state(int fd, std::uint64_t object_size) {
  if (object_size == 0) return InitState::NotYet;
  std::uint64_t magic = 0;
  const std::size_t n = sys::read_at(fd, std::as_writable_bytes(std::span(&magic, 1)), 0);
  // Bytes that are not our magic make it someone else's file, whatever its size.
  if (n == sizeof(magic) && magic != 0 && magic != kSegmentMagic) return InitState::Foreign;
  if (n > 0 && n < sizeof(magic)) return InitState::Foreign;
  // Initialization sizes the object in one step from 0: a segment that cannot
  // hold its header was cut down by someone else.
  if (object_size < sizeof(SegmentHeader)) {
    return magic == kSegmentMagic ? InitState::Truncated : InitState::Foreign;
  }
  if (magic == kSegmentMagic) return InitState::Ready;
  return InitState::NotYet;
}

// Group or other write access hands the segment to other users (see
// docs/security.md): said once per segment unless the caller said it is meant.
void warn_if_writable_by_others(const ShmObject& object, const SegmentOptions& options) {
  if (options.writable_by_others || object.anonymous()) return;
  const mode_t mode = object.stat().st_mode & 07777;
  if ((mode & 022) == 0) return;
  char octal[8];
  std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
  const std::string line = "shmutils: " + object.describe() + " was created with mode " + octal +
                           ": other users may write it, and so corrupt it, stall its locks and "
                           "forge its records (docs/security.md); "
                           "SegmentOptions::writable_by_others says this is meant\n";
  (void)sys::write_all(STDERR_FILENO, line);
}

}  // namespace

bool Segment::initialize_or_await(bool created, std::size_t create_size,
                                  const SegmentOptions& options) {
  const std::string described = object_.describe();
  const int fd = object_.fd();
  const bool can_initialize = create_size > 0 && object_.writable();
  const std::uint64_t start = sys::monotonic_ns();
  const auto timeout_ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(options.init_timeout).count());
  std::uint64_t unowned_since = 0;  // when "uninitialized, nobody initializing" was first seen

  // Initialization protocol: whoever holds the flock while the magic is not
  // published initializes. The creator takes it first; if it dies, the kernel
  // drops its flock and an opener that may create takes over.
  for (;;) {
    std::uint64_t object_size = object_.size();
    InitState state = peek_state(fd, object_size);
    if (state == InitState::Ready) return false;
    if (state == InitState::Foreign) {
      throw Error(ErrorKind::BadMagic, described, "open", "not a shmutils segment");
    }
    if (state == InitState::Truncated) {
      throw Error(ErrorKind::Truncated, described, "open",
                  std::to_string(object_size) + " bytes cannot hold a segment header");
    }
    if (sys::try_flock_exclusive(fd, described)) {
      object_size = object_.size();
      state = peek_state(fd, object_size);
      std::uint64_t now = sys::monotonic_ns();
      if (unowned_since == 0) unowned_since = now;
      bool creator_surely_gone = created || now - unowned_since >= kCreatorGraceNs;
      if (state == InitState::NotYet && can_initialize && creator_surely_gone) {
        try {
          if (created) fp_init_after_create.reached();
          object_.resize(0);  // drop whatever a dead initializer left
          object_.resize(create_size);
          fp_init_after_truncate.reached();
          map_whole(create_size, options.address_hint);
          detail::format_segment(base(), create_size, options);
        } catch (...) {
          sys::flock_unlock(fd, described);
          // A creator that cannot finish leaves no half-made name behind.
          if (created && !object_.anonymous()) {
            ShmObject::unlink_if_exists(object_.name());
          }
          throw;
        }
        sys::flock_unlock(fd, described);
        finish_attach(validate_header(header(), create_size, name()), options);
        if (created) warn_if_writable_by_others(object_, options);
        return true;
      }
      sys::flock_unlock(fd, described);
      if (state == InitState::Ready) return false;
      if (!can_initialize && creator_surely_gone) {
        if (object_size == 0) {
          throw Error(ErrorKind::NotInitialized, described, "open",
                      "empty (0 bytes) and nobody is initializing it: a creator that died at "
                      "once, or not a shmutils segment; unlink it");
        }
        throw Error(ErrorKind::NotInitialized, described, "open",
                    "its creator died before finishing initialization (" +
                        std::to_string(object_size) +
                        " bytes, no initializer alive); unlink it, or open it with "
                        "open_or_create to take over");
      }
    } else {
      unowned_since = 0;  // someone is initializing right now
    }
    if (sys::monotonic_ns() - start >= timeout_ns) {
      throw Error(ErrorKind::Timeout, described, "open",
                  "still not initialized after " + std::to_string(options.init_timeout.count()) +
                      " ms (another process holds the init lock)");
    }
    sys::sleep_ns(kPollNs);
  }
}

}  // namespace shmutils
