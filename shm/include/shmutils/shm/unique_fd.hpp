// shmutils::UniqueFd — the one owner of a file descriptor.
//
// Contract
//   Lives:       process-local. Move-only; the destructor closes.
//   Errors:      close errors are ignored in the destructor (the fd is gone
//                either way on Linux); call close() to see them.
//   Fork:        a forked child holds a copy of the fd table; each process's
//                UniqueFd closes its own copy.
#pragma once

#include <utility>

namespace shmutils {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }

  // Gives up ownership without closing.
  int release() noexcept { return std::exchange(fd_, -1); }
  // Closes the current fd (ignoring errors) and takes `fd`.
  void reset(int fd = -1) noexcept;
  // Closes and reports a close error as an Error.
  void close();

 private:
  int fd_ = -1;
};

}  // namespace shmutils
