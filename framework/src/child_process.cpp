#include "shmutils/framework/child_process.hpp"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <exception>
#include <utility>

namespace shmutils::framework {

ChildProcess ChildProcess::fork(const std::function<int()>& body) {
  pid_t parent = sys::getpid();
  // Unflushed stdio buffers would otherwise be written twice: by the child too.
  (void)std::fflush(nullptr);
  pid_t pid = sys::fork("child process");
  if (pid == 0) {
    int code = 70;
    try {
      sys::set_parent_death_signal(SIGKILL);
      // The parent may have died before prctl took effect.
      if (::getppid() != parent) ::_exit(71);
      code = body();
    } catch (const std::exception& e) {
      (void)std::fprintf(stderr, "child %d: uncaught exception: %s\n",
                         static_cast<int>(sys::getpid()), e.what());
    } catch (...) {
      (void)std::fprintf(stderr, "child %d: uncaught non-standard exception\n",
                         static_cast<int>(sys::getpid()));
    }
    (void)std::fflush(stdout);
    (void)std::fflush(stderr);
    ::_exit(code);  // no atexit handlers or static destructors of the parent's image
  }
  return ChildProcess(pid);
}

ChildProcess ChildProcess::spawn(const std::string& path, const std::vector<std::string>& argv,
                                 const std::vector<std::string>* environment,
                                 const std::vector<std::pair<int, int>>& redirect) {
  return ChildProcess(sys::spawn(path, argv, environment, redirect));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), status_(other.status_) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (running()) {
      try {
        kill();
      } catch (...) {
      }
    }
    pid_ = std::exchange(other.pid_, -1);
    status_ = other.status_;
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (running()) {
    try {
      kill();
    } catch (...) {  // a destructor must not throw; the child is gone or unreapable
    }
  }
}

bool ChildProcess::signal(int signal) {
  if (!running()) return false;
  return sys::kill(pid_, signal);
}

std::optional<ExitStatus> ChildProcess::wait_for(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  std::uint64_t deadline =
      sys::monotonic_ns() + static_cast<std::uint64_t>(timeout.count()) * 1'000'000ULL;
  std::uint64_t pause_ns = 50'000;
  for (;;) {
    if (auto status = sys::wait_nohang(pid_)) {
      status_ = status;
      return status_;
    }
    std::uint64_t now = sys::monotonic_ns();
    if (now >= deadline) return std::nullopt;
    sys::sleep_ns(std::min(pause_ns, deadline - now));
    pause_ns = std::min<std::uint64_t>(pause_ns * 2, 10'000'000);
  }
}

ExitStatus ChildProcess::wait() {
  if (!status_) status_ = sys::wait(pid_);
  return *status_;
}

ChildProcess::State ChildProcess::poll(int* stop_signal) {
  if (status_) return State::Ended;
  auto state = sys::wait_nohang_or_stopped(pid_);
  if (!state) return State::Running;
  if (state->stopped) {
    if (stop_signal != nullptr) *stop_signal = state->stop_signal;
    return State::Stopped;
  }
  status_ = state->status;
  return State::Ended;
}

ExitStatus ChildProcess::kill() {
  if (status_) return *status_;
  sys::kill(pid_, SIGKILL);
  return wait();
}

}  // namespace shmutils::framework
