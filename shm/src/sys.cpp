#include "shmutils/shm/detail/sys.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdio>
#include <cstring>

namespace shmutils {

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0 && fd_ != fd) ::close(fd_);  // Linux frees the fd even when close fails.
  fd_ = fd;
}

void UniqueFd::close() {
  int fd = release();
  if (fd < 0) return;
  // Not retried on EINTR: on Linux the fd is released before close can be interrupted.
  if (::close(fd) == -1 && errno != EINTR) throw_errno("fd " + std::to_string(fd), "close", errno);
}

namespace sys {

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

std::size_t round_up_to_page(std::size_t size) noexcept {
  std::size_t page = page_size();
  return (size + page - 1) / page * page;
}

namespace {
const char* file_type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}
}  // namespace

UniqueFd shm_open(const std::string& name, int flags, mode_t mode) {
  UniqueFd fd;
  if (int err = try_shm_open(name, flags, mode, fd); err != 0) {
    throw_errno("segment \"" + name + "\"", "shm_open", err);
  }
  // Only a regular file can be a segment; anything else in /dev/shm is
  // refused here, before anyone reads, maps or waits on it.
  struct stat st = fstat(fd.get(), "segment \"" + name + "\"");
  if (!S_ISREG(st.st_mode)) {
    throw Error(ErrorKind::BadMagic, "segment \"" + name + "\"", "open",
                std::string("not a shmutils segment: ") + file_type_name(st.st_mode));
  }
  return fd;
}

int try_shm_open(const std::string& name, int flags, mode_t mode, UniqueFd& out) noexcept {
  // O_NONBLOCK: opening a FIFO someone left in /dev/shm would otherwise wait
  // for a writer; on a regular file it changes nothing.
  int fd =
      retry_eintr([&] { return ::shm_open(name.c_str(), flags | O_CLOEXEC | O_NONBLOCK, mode); });
  if (fd == -1) return errno;
  out.reset(fd);
  return 0;
}

void shm_unlink(const std::string& name) {
  check("segment \"" + name + "\"", "shm_unlink", [&] { return ::shm_unlink(name.c_str()); });
}

bool shm_unlink_if_exists(const std::string& name) {
  if (::shm_unlink(name.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw_errno("segment \"" + name + "\"", "shm_unlink", errno);
}

UniqueFd memfd_create(const std::string& name, unsigned flags) {
  return UniqueFd(check("memfd \"" + name + "\"", "memfd_create",
                        [&] { return ::memfd_create(name.c_str(), flags | MFD_CLOEXEC); }));
}

struct stat fstat(int fd, std::string_view object) {
  struct stat st {};
  check(object, "fstat", [&] { return ::fstat(fd, &st); });
  return st;
}

void ftruncate(int fd, std::uint64_t size, std::string_view object) {
  check(object, "ftruncate", [&] { return ::ftruncate(fd, static_cast<off_t>(size)); });
}

void fallocate(int fd, std::uint64_t offset, std::uint64_t length, std::string_view object) {
  int rc;
  do {
    rc = ::posix_fallocate(fd, static_cast<off_t>(offset), static_cast<off_t>(length));
  } while (rc == EINTR);
  check_rc(object, "posix_fallocate", rc);
}

void fchmod(int fd, mode_t mode, std::string_view object) {
  check(object, "fchmod", [&] { return ::fchmod(fd, mode); });
}

void fchown(int fd, uid_t uid, gid_t gid, std::string_view object) {
  check(object, "fchown", [&] { return ::fchown(fd, uid, gid); });
}

UniqueFd dup_cloexec(int fd, std::string_view object, int lowest) {
  return UniqueFd(check(object, "dup", [&] { return ::fcntl(fd, F_DUPFD_CLOEXEC, lowest); }));
}

void set_cloexec(int fd, bool on, std::string_view object) {
  int flags = check(object, "fcntl(F_GETFD)", [&] { return ::fcntl(fd, F_GETFD); });
  flags = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  check(object, "fcntl(F_SETFD)", [&] { return ::fcntl(fd, F_SETFD, flags); });
}

bool try_flock_exclusive(int fd, std::string_view object) {
  int rc = retry_eintr([&] { return ::flock(fd, LOCK_EX | LOCK_NB); });
  if (rc == 0) return true;
  if (errno == EWOULDBLOCK) return false;
  throw_errno(object, "flock", errno);
}

void flock_unlock(int fd, std::string_view object) {
  check(object, "flock(unlock)", [&] { return ::flock(fd, LOCK_UN); });
}

namespace {
struct flock one_byte(short type, std::uint64_t offset) {
  struct flock lock {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = static_cast<off_t>(offset);
  lock.l_len = 1;
  return lock;
}
}  // namespace

bool try_ofd_lock_shared_byte(int fd, std::uint64_t offset, std::string_view object) {
  struct flock lock = one_byte(F_RDLCK, offset);
  int rc = retry_eintr([&] { return ::fcntl(fd, F_OFD_SETLK, &lock); });
  if (rc == 0) return true;
  if (errno == EAGAIN || errno == EACCES) return false;
  throw_errno(object, "fcntl(F_OFD_SETLK)", errno);
}

void ofd_unlock_byte(int fd, std::uint64_t offset, std::string_view object) {
  struct flock lock = one_byte(F_UNLCK, offset);
  check(object, "fcntl(F_OFD_SETLK, unlock)", [&] { return ::fcntl(fd, F_OFD_SETLK, &lock); });
}

bool ofd_byte_locked_elsewhere(int fd, std::uint64_t offset, std::string_view object) {
  // Asking whether a write lock could be placed finds any holder, shared or not.
  struct flock lock = one_byte(F_WRLCK, offset);
  check(object, "fcntl(F_OFD_GETLK)", [&] { return ::fcntl(fd, F_OFD_GETLK, &lock); });
  return lock.l_type != F_UNLCK;
}

UniqueFd reopen(int fd, int flags, std::string_view object) {
  std::array<char, 64> path{};
  (void)std::snprintf(path.data(), path.size(), "/proc/self/fd/%d", fd);
  int reopened =
      check(object, "open(/proc/self/fd)", [&] { return ::open(path.data(), flags | O_CLOEXEC); });
  UniqueFd owner(reopened);
  struct stat original = fstat(fd, object);
  struct stat again = fstat(reopened, object);
  if (original.st_dev != again.st_dev || original.st_ino != again.st_ino) {
    throw Error(ErrorKind::System, std::string(object), "reopen",
                "/proc/self/fd/" + std::to_string(fd) + " names another file");
  }
  return owner;
}

void detach_fd_quietly(int fd) noexcept {
  int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0) return;
  (void)::dup3(null, fd, O_CLOEXEC);
  (void)::close(null);
}

void* mmap(void* hint, std::size_t length, int prot, int flags, int fd, std::uint64_t offset,
           std::string_view object) {
  void* address = ::mmap(hint, length, prot, flags, fd, static_cast<off_t>(offset));
  if (address == MAP_FAILED) throw_errno(object, "mmap", errno);
  return address;
}

bool map_zeros_over(void* page, std::size_t length) noexcept {
  return ::mmap(page, length, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) !=
         MAP_FAILED;
}

void munmap(void* address, std::size_t length, std::string_view object) {
  check(object, "munmap", [&] { return ::munmap(address, length); });
}

void mprotect(void* address, std::size_t length, int prot, std::string_view object) {
  check(object, "mprotect", [&] { return ::mprotect(address, length, prot); });
}

void madvise(void* address, std::size_t length, int advice, std::string_view object) {
  check(object, "madvise", [&] { return ::madvise(address, length, advice); });
}

void msync(void* address, std::size_t length, int flags, std::string_view object) {
  check(object, "msync", [&] { return ::msync(address, length, flags); });
}

void mlock(const void* address, std::size_t length, std::string_view object) {
  check(object, "mlock", [&] { return ::mlock(address, length); });
}

void munlock(const void* address, std::size_t length, std::string_view object) {
  check(object, "munlock", [&] { return ::munlock(address, length); });
}

pid_t getpid() noexcept { return ::getpid(); }
pid_t getppid() noexcept { return ::getppid(); }

std::optional<struct stat> stat_path(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return st;
}

bool is_terminal(int fd) noexcept { return ::isatty(fd) != 0; }

std::string self_executable() {
  char path[4096];
  ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) throw_errno("/proc/self/exe", "readlink", errno);
  return std::string(path, static_cast<std::size_t>(n));
}

void on_fork(void (*prepare)(), void (*parent)(), void (*child)()) noexcept {
  (void)::pthread_atfork(prepare, parent, child);
}

void munmap_quietly(void* address, std::size_t size) noexcept { (void)::munmap(address, size); }

namespace {
std::optional<std::string> stat_fields(const char* path);
// The state letter /proc gives a process ('R', 'S', 'T', 't', 'Z', ...);
// nullopt when there is no such process.
std::optional<char> process_state_letter(pid_t pid) {
  std::array<char, 64> path{};
  (void)std::snprintf(path.data(), path.size(), "/proc/%d/stat", static_cast<int>(pid));
  std::optional<std::string> fields = stat_fields(path.data());
  if (!fields || fields->empty()) return std::nullopt;
  return (*fields)[0];
}
}  // namespace

std::string ptrace_seize_and_stop(pid_t tid) {
  if (::ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) == -1) {
    return std::string("ptrace(PTRACE_SEIZE) refused: ") + ::strerrordesc_np(errno) +
           " (ptrace not permitted here; stacks are not captured)";
  }
  if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) == -1) {
    std::string why = std::string("ptrace(PTRACE_INTERRUPT): ") + ::strerrordesc_np(errno);
    (void)::ptrace(PTRACE_DETACH, tid, nullptr, nullptr);
    return why;
  }
  // Wait for the stop, boundedly: another thread of this process may wait
  // for the same child and take the stop's notification first (a test's
  // deadline thread captures while the test waits); /proc still shows the
  // tracing stop then.
  const std::uint64_t deadline = monotonic_ns() + 5'000'000'000ULL;
  for (;;) {
    int status = 0;
    pid_t r = retry_eintr([&] { return ::waitpid(tid, &status, __WALL | WNOHANG); });
    if (r == tid && WIFSTOPPED(status)) return {};
    if (r == tid || (r == -1 && errno != ECHILD)) {
      (void)::ptrace(PTRACE_DETACH, tid, nullptr, nullptr);
      return "the process ended before its stack could be read";
    }
    std::optional<char> state = process_state_letter(tid);
    if (state == 't') return {};
    if (!state || *state == 'Z' || *state == 'X' || monotonic_ns() > deadline) {
      (void)::ptrace(PTRACE_DETACH, tid, nullptr, nullptr);
      return state ? "the process did not stop for tracing within 5 s"
                   : "the process ended before its stack could be read";
    }
    sleep_ns(100'000);
  }
}

void ptrace_detach(pid_t tid) noexcept { (void)::ptrace(PTRACE_DETACH, tid, nullptr, nullptr); }
void set_priority(int nice) noexcept { (void)::setpriority(PRIO_PROCESS, 0, nice); }

pid_t gettid() noexcept { return static_cast<pid_t>(::syscall(SYS_gettid)); }
uid_t geteuid() noexcept { return ::geteuid(); }

namespace {
// The fields of a /proc/.../stat file after the command name (which may hold
// spaces and ')'), from field 3 (state) on; nullopt when there is no such
// process.
std::optional<std::string> stat_fields(const char* path) {
  int fd = retry_eintr([&] { return ::open(path, O_RDONLY | O_CLOEXEC); });
  if (fd == -1) {
    if (errno == ENOENT || errno == ESRCH) return std::nullopt;
    throw_errno(path, "open", errno);
  }
  UniqueFd owner(fd);
  std::array<char, 1024> buffer{};
  ssize_t n = retry_eintr([&] { return ::read(fd, buffer.data(), buffer.size() - 1); });
  if (n <= 0) return std::nullopt;  // ESRCH while the process exits
  buffer[static_cast<std::size_t>(n)] = '\0';
  const char* p = std::strrchr(buffer.data(), ')');
  if (p == nullptr || p[1] != ' ') return std::nullopt;
  return std::string(p + 2);
}

// Field 22 (starttime) of a stat file; nullopt for a zombie.
std::optional<std::uint64_t> start_time_from_stat(const char* path) {
  std::optional<std::string> fields = stat_fields(path);
  if (!fields) return std::nullopt;
  const char* p = fields->c_str();
  // A zombie has exited: for liveness it is dead, its slot may be reaped.
  if (*p == 'Z' || *p == 'X') return std::nullopt;
  for (int field = 3; field < 22; ++field) {
    while (*p != ' ' && *p != '\0') ++p;
    while (*p == ' ') ++p;
  }
  if (*p == '\0') return std::nullopt;
  return std::strtoull(p, nullptr, 10);
}
}  // namespace

std::optional<std::uint64_t> process_start_time(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::array<char, 64> path{};
  (void)std::snprintf(path.data(), path.size(), "/proc/%d/stat", static_cast<int>(pid));
  return start_time_from_stat(path.data());
}

ProcessState process_state(pid_t pid) {
  if (pid <= 0) return ProcessState::Gone;
  std::optional<char> letter = process_state_letter(pid);
  if (!letter) return ProcessState::Gone;
  switch (*letter) {
    case 'T':
    case 't': return ProcessState::Stopped;
    case 'Z':
    case 'X': return ProcessState::Gone;
    default: return ProcessState::Running;
  }
}

std::optional<long> blocked_syscall(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::array<char, 64> path{};
  (void)std::snprintf(path.data(), path.size(), "/proc/%d/syscall", static_cast<int>(pid));
  int fd = retry_eintr([&] { return ::open(path.data(), O_RDONLY | O_CLOEXEC); });
  if (fd == -1) return std::nullopt;  // gone, or /proc refuses (another user's process)
  UniqueFd owner(fd);
  std::array<char, 32> buffer{};
  ssize_t n = retry_eintr([&] { return ::read(fd, buffer.data(), buffer.size() - 1); });
  // "running", or the number of the call it sleeps in followed by its arguments.
  if (n <= 0 || buffer[0] < '0' || buffer[0] > '9') return std::nullopt;
  return std::strtol(buffer.data(), nullptr, 10);
}

std::optional<std::uint64_t> own_start_time() { return start_time_from_stat("/proc/self/stat"); }

std::uint64_t pid_namespace_id() noexcept {
  // Only setns changes a process's own namespace (unshare changes its
  // children's), and shmutils never calls it: cache per process.
  static std::atomic<std::uint64_t> cached_id{0};
  static std::atomic<pid_t> cached_for{0};
  pid_t self = ::getpid();
  if (cached_for.load(std::memory_order_acquire) == self) {
    return cached_id.load(std::memory_order_relaxed);
  }
  struct stat st {};
  std::uint64_t id = ::stat("/proc/self/ns/pid", &st) == 0 ? st.st_ino : 0;
  cached_id.store(id, std::memory_order_relaxed);
  cached_for.store(self, std::memory_order_release);
  return id;
}

bool proc_shows_this_namespace() noexcept {
  static std::atomic<int> cached{-1};
  static std::atomic<pid_t> cached_for{0};
  pid_t self = ::getpid();
  if (cached_for.load(std::memory_order_acquire) == self) {
    return cached.load(std::memory_order_relaxed) == 1;
  }
  std::array<char, 32> link{};
  ssize_t n = ::readlink("/proc/self", link.data(), link.size() - 1);
  bool ours = n > 0 && std::strtol(link.data(), nullptr, 10) == self;
  cached.store(ours ? 1 : 0, std::memory_order_relaxed);
  cached_for.store(self, std::memory_order_release);
  return ours;
}

namespace {
// Writes text to a /proc file; 0 or the errno.
int write_proc_file(const char* path, const std::string& text) noexcept {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd == -1) return errno;
  bool ok = write_all(fd, text);
  int err = ok ? 0 : errno;
  (void)::close(fd);
  return err;
}
}  // namespace

int unshare_pid_namespace(bool own_proc) noexcept {
  int flags = CLONE_NEWPID | (own_proc ? CLONE_NEWNS : 0);
  const uid_t uid = ::geteuid();
  const gid_t gid = ::getegid();
  // Without root, a user namespace of our own grants the right; mapping our
  // ids onto themselves keeps the files we own ours inside it.
  if (uid != 0) flags |= CLONE_NEWUSER;
  if (::unshare(flags) != 0) return errno;
  if (uid == 0) return 0;
  try {
    if (int err = write_proc_file("/proc/self/setgroups", "deny"); err != 0 && err != ENOENT) {
      return err;
    }
    if (int err = write_proc_file("/proc/self/uid_map",
                                  std::to_string(uid) + " " + std::to_string(uid) + " 1");
        err != 0) {
      return err;
    }
    return write_proc_file("/proc/self/gid_map",
                           std::to_string(gid) + " " + std::to_string(gid) + " 1");
  } catch (...) {  // std::to_string's allocation
    return ENOMEM;
  }
}

int mount_own_proc() noexcept {
  if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return errno;
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    return errno;
  }
  return 0;
}

bool process_alive(pid_t pid, std::uint64_t start_time) {
  auto actual = process_start_time(pid);
  return actual.has_value() && *actual == start_time;
}

std::uint64_t monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t deadline_ns(std::chrono::steady_clock::time_point deadline) noexcept {
  auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
  return ns <= 0 ? 1 : static_cast<std::uint64_t>(ns);
}

std::uint64_t realtime_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

void sleep_ns(std::uint64_t ns) noexcept {
  timespec ts{static_cast<time_t>(ns / 1'000'000'000ULL), static_cast<long>(ns % 1'000'000'000ULL)};
  while (::nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

void random_bytes(std::span<std::byte> buffer) {
  std::size_t done = 0;
  while (done < buffer.size()) {
    ssize_t n = check("getrandom", "getrandom",
                      [&] { return ::getrandom(buffer.data() + done, buffer.size() - done, 0); });
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace sys

std::string signal_name(int signal) {
  const char* name = ::sigabbrev_np(signal);
  return name != nullptr ? std::string("SIG") + name : "signal " + std::to_string(signal);
}

std::string ExitStatus::to_string() const {
  if (exited) return "exit code " + std::to_string(exit_code);
  return "killed by " + signal_name(signal);
}

namespace sys {

namespace {
std::atomic<std::uint64_t> g_fork_generation{0};
void count_fork_in_child() noexcept { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }
// Registered before main: every fork (ours or anyone's) is counted.
const int g_fork_counter_registered = ::pthread_atfork(nullptr, nullptr, &count_fork_in_child);
}  // namespace

std::uint64_t fork_generation() noexcept {
  (void)g_fork_counter_registered;
  return g_fork_generation.load(std::memory_order_relaxed);
}

void yield() noexcept { ::sched_yield(); }

pid_t fork(std::string_view what) {
  pid_t pid = ::fork();
  if (pid == -1) throw_errno(what, "fork", errno);
  return pid;
}

bool kill(pid_t pid, int signal) {
  if (pid <= 0)
    throw Error(ErrorKind::InvalidArgument, "pid " + std::to_string(pid), "kill",
                "not a single process");
  if (::kill(pid, signal) == 0) return true;
  if (errno == ESRCH) return false;
  throw_errno("pid " + std::to_string(pid), "kill", errno);
}

namespace {
ExitStatus decode(int status) {
  ExitStatus result;
  if (WIFEXITED(status)) {
    result.exited = true;
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}
}  // namespace

std::optional<ExitStatus> wait_nohang(pid_t pid) {
  int status = 0;
  pid_t r = check("pid " + std::to_string(pid), "waitpid",
                  [&] { return ::waitpid(pid, &status, WNOHANG); });
  if (r == 0) return std::nullopt;
  return decode(status);
}

std::optional<ChildStateChange> wait_nohang_or_stopped(pid_t pid) {
  int status = 0;
  pid_t r = retry_eintr([&] { return ::waitpid(pid, &status, WNOHANG | WUNTRACED); });
  if (r == -1) {
    if (errno != ECHILD) throw_errno("pid " + std::to_string(pid), "waitpid", errno);
    ChildStateChange gone;
    gone.status.exited = true;
    gone.status.exit_code = -1;
    return gone;
  }
  if (r == 0) return std::nullopt;
  ChildStateChange change;
  if (WIFSTOPPED(status)) {
    change.stopped = true;
    change.stop_signal = WSTOPSIG(status);
  } else {
    change.status = decode(status);
  }
  return change;
}

ExitStatus wait(pid_t pid) {
  int status = 0;
  check("pid " + std::to_string(pid), "waitpid", [&] { return ::waitpid(pid, &status, 0); });
  return decode(status);
}

pid_t spawn(const std::string& path, const std::vector<std::string>& argv,
            const std::vector<std::string>* envp,
            const std::vector<std::pair<int, int>>& redirect) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> env;
  if (envp != nullptr) {
    for (const auto& e : *envp) env.push_back(const_cast<char*>(e.c_str()));
    env.push_back(nullptr);
  }
  posix_spawn_file_actions_t actions;
  check_rc("program \"" + path + "\"", "posix_spawn_file_actions_init",
           ::posix_spawn_file_actions_init(&actions));
  int rc = 0;
  for (const auto& [from, to] : redirect) {
    if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(&actions, from, to);
  }
  pid_t pid = 0;
  if (rc == 0) {
    rc = ::posix_spawn(&pid, path.c_str(), &actions, nullptr, args.data(),
                       envp != nullptr ? env.data() : environ);
  }
  ::posix_spawn_file_actions_destroy(&actions);
  check_rc("program \"" + path + "\"", "posix_spawn", rc);
  return pid;
}

void set_parent_death_signal(int signal) {
  check("this process", "prctl(PR_SET_PDEATHSIG)",
        [&] { return ::prctl(PR_SET_PDEATHSIG, signal); });
}

namespace {
template <class F>
void for_each_dir_entry(const char* path, F&& f) {
  DIR* dir = ::opendir(path);
  if (dir == nullptr) throw_errno(path, "opendir", errno);
  while (dirent* entry = ::readdir(dir)) {  // NOLINT(concurrency-mt-unsafe): dir is ours alone
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") f(name);
  }
  ::closedir(dir);
}
}  // namespace

std::vector<pid_t> child_pids(pid_t parent) {
  std::vector<pid_t> children;
  for_each_dir_entry("/proc", [&](std::string_view name) {
    if (name.find_first_not_of("0123456789") != std::string_view::npos) return;
    std::string path = "/proc/" + std::string(name) + "/stat";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd == -1) return;  // exited meanwhile
    UniqueFd owner(fd);
    std::array<char, 512> buffer{};
    ssize_t n = retry_eintr([&] { return ::read(fd, buffer.data(), buffer.size() - 1); });
    if (n <= 0) return;
    const char* p = std::strrchr(buffer.data(), ')');
    if (p == nullptr) return;
    // After ")": " S PPID ..." (state, then the parent's pid).
    char* end = nullptr;
    long ppid = (p[1] != '\0' && p[2] != '\0') ? std::strtol(p + 3, &end, 10) : -1;
    if (end != nullptr && end != p + 3 && ppid == parent) {
      children.push_back(static_cast<pid_t>(std::strtol(std::string(name).c_str(), nullptr, 10)));
    }
  });
  return children;
}

std::vector<std::string> list_shm_names() {
  std::vector<std::string> names;
  for_each_dir_entry("/dev/shm",
                     [&](std::string_view name) { names.push_back("/" + std::string(name)); });
  std::sort(names.begin(), names.end());
  return names;
}

FutexWaitResult futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                           std::uint64_t deadline_ns) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  timespec deadline{static_cast<time_t>(deadline_ns / 1'000'000'000ULL),
                    static_cast<long>(deadline_ns % 1'000'000'000ULL)};
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so repeated
  // waits after spurious wake-ups never stretch the caller's bound.
  long rc = ::syscall(SYS_futex, &word, FUTEX_WAIT_BITSET, expected,
                      deadline_ns != 0 ? &deadline : nullptr, nullptr, FUTEX_BITSET_MATCH_ANY);
  if (rc == 0) return FutexWaitResult::Woken;
  if (errno == ETIMEDOUT) return FutexWaitResult::TimedOut;
  if (errno == EAGAIN) return FutexWaitResult::ValueChanged;
  return FutexWaitResult::Woken;  // EINTR: the caller re-checks
}

int futex_wake(const std::atomic<std::uint32_t>& word, int count) noexcept {
  long rc = ::syscall(SYS_futex, &word, FUTEX_WAKE, count, nullptr, nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

bool thread_alive(pid_t pid, pid_t tid) noexcept {
  if (pid <= 0 || tid <= 0) return false;
  return ::syscall(SYS_tgkill, pid, tid, 0) == 0 || errno == EPERM;
}

bool thread_departed(pid_t pid, pid_t tid) noexcept {
  if (pid <= 0 || tid <= 0) return true;
  std::array<char, 64> path{};
  (void)std::snprintf(path.data(), path.size(), "/proc/%d/task/%d/stat", static_cast<int>(pid),
                      static_cast<int>(tid));
  std::optional<std::string> fields;
  try {
    fields = stat_fields(path.data());
  } catch (const Error&) {  // /proc hides it from us (hidepid)
    return !thread_alive(pid, tid);
  }
  if (!fields || fields->empty()) return !thread_alive(pid, tid);
  const char* p = fields->c_str();
  if (*p == 'Z' || *p == 'X' || *p == 'x') return true;
  // After the state: ppid pgrp session tty_nr tpgid, then flags (field 9).
  for (int field = 3; field < 9; ++field) {
    while (*p != ' ' && *p != '\0') ++p;
    while (*p == ' ') ++p;
  }
  if (*p == '\0') return false;
  constexpr unsigned long kExiting = 0x00000004;  // PF_EXITING
  return (std::strtoul(p, nullptr, 10) & kExiting) != 0;
}

std::uint64_t coarse_monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

bool read_own_word(std::uintptr_t address, std::uintptr_t& value) noexcept {
  struct iovec local {
    &value, sizeof value
  };
  struct iovec remote {
    reinterpret_cast<void*>(address),  // NOLINT(performance-no-int-to-ptr): the point of it
        sizeof value
  };
  return ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0) ==
         static_cast<ssize_t>(sizeof value);
}

void* robust_list_head() {
  struct robust_list_head* head = nullptr;
  std::size_t length = 0;
  check("this thread", "get_robust_list",
        [&] { return ::syscall(SYS_get_robust_list, 0, &head, &length); });
  if (head == nullptr || length != sizeof(struct robust_list_head)) {
    throw Error(ErrorKind::NotSupported, "this thread", "get_robust_list",
                "no robust-futex list registered by the C library");
  }
  return head;
}

void robust_mutex_init(pthread_mutex_t* mutex, std::string_view object) {
  pthread_mutexattr_t attr;
  check_rc(object, "pthread_mutexattr_init", ::pthread_mutexattr_init(&attr));
  int rc = ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = ::pthread_mutex_init(mutex, &attr);
  ::pthread_mutexattr_destroy(&attr);
  check_rc(object, "pthread_mutex_init", rc);
}

RobustLockResult robust_mutex_lock(pthread_mutex_t* mutex, std::string_view object) {
  int rc = ::pthread_mutex_lock(mutex);
  if (rc == EOWNERDEAD) return RobustLockResult::OwnerDied;
  check_rc(object, "pthread_mutex_lock", rc);
  return RobustLockResult::Acquired;
}

void robust_mutex_consistent(pthread_mutex_t* mutex, std::string_view object) {
  check_rc(object, "pthread_mutex_consistent", ::pthread_mutex_consistent(mutex));
}

void robust_mutex_unlock(pthread_mutex_t* mutex, std::string_view object) {
  check_rc(object, "pthread_mutex_unlock", ::pthread_mutex_unlock(mutex));
}

namespace {
constexpr std::size_t kMaxFds = 8;
}

void send_with_fds(int socket, std::string_view message, const std::vector<int>& fds) {
  std::string object = "socket " + std::to_string(socket);
  if (message.empty()) throw Error(ErrorKind::InvalidArgument, object, "sendmsg", "empty message");
  if (fds.size() > kMaxFds)
    throw Error(ErrorKind::InvalidArgument, object, "sendmsg", "too many fds");
  iovec iov{const_cast<char*>(message.data()), message.size()};  // NOLINT: sendmsg does not write
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxFds)> control{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t sent = check(object, "sendmsg", [&] { return ::sendmsg(socket, &msg, MSG_NOSIGNAL); });
  if (static_cast<std::size_t>(sent) != message.size()) {
    throw Error(ErrorKind::System, object, "sendmsg", "short write of a descriptor message");
  }
}

ReceivedFds receive_with_fds(int socket, std::size_t max_message) {
  std::string object = "socket " + std::to_string(socket);
  ReceivedFds result;
  result.message.resize(max_message);
  iovec iov{result.message.data(), result.message.size()};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxFds)> control{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n = check(object, "recvmsg", [&] { return ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC); });
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
      std::size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
        result.fds.emplace_back(fd);
      }
    }
  }
  if (n == 0) throw Error(ErrorKind::NotFound, object, "recvmsg", "peer closed the socket");
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    throw Error(ErrorKind::InvalidArgument, object, "recvmsg", "message or descriptors truncated");
  }
  result.message.resize(static_cast<std::size_t>(n));
  return result;
}

void send_with_fd(int socket, std::string_view message, int fd) {
  send_with_fds(socket, message, fd >= 0 ? std::vector<int>{fd} : std::vector<int>{});
}

ReceivedFd receive_with_fd(int socket, std::size_t max_message) {
  ReceivedFds received = receive_with_fds(socket, max_message);
  ReceivedFd result;
  result.message = std::move(received.message);
  if (!received.fds.empty()) result.fd = std::move(received.fds.front());
  return result;
}

std::pair<UniqueFd, UniqueFd> pipe(bool nonblocking_read) {
  std::array<int, 2> fds{-1, -1};
  check("pipe", "pipe2", [&] { return ::pipe2(fds.data(), O_CLOEXEC); });
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  if (nonblocking_read) {
    check("pipe", "fcntl(O_NONBLOCK)", [&] { return ::fcntl(fds[0], F_SETFL, O_NONBLOCK); });
  }
  return {std::move(read_end), std::move(write_end)};
}

void dup2(int from, int to) {
  check("fd " + std::to_string(from), "dup2", [&] { return ::dup2(from, to); });
}

bool read_available(int fd, std::string& out, std::size_t limit) {
  std::array<char, 4096> buffer{};
  for (;;) {
    ssize_t n = retry_eintr([&] { return ::read(fd, buffer.data(), buffer.size()); });
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EAGAIN) return true;
      throw_errno("fd " + std::to_string(fd), "read", errno);
    }
    std::size_t room = out.size() < limit ? limit - out.size() : 0;
    out.append(buffer.data(), std::min(room, static_cast<std::size_t>(n)));
  }
}

bool write_all(int fd, std::string_view data) noexcept {
  while (!data.empty()) {
    ssize_t n = retry_eintr([&] { return ::write(fd, data.data(), data.size()); });
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool read_exact(int fd, std::span<std::byte> buffer) {
  while (!buffer.empty()) {
    ssize_t n = retry_eintr([&] { return ::read(fd, buffer.data(), buffer.size()); });
    if (n == 0) return false;
    if (n < 0) throw_errno("fd " + std::to_string(fd), "read", errno);
    buffer = buffer.subspan(static_cast<std::size_t>(n));
  }
  return true;
}

bool read_exact_at(int fd, std::span<std::byte> buffer, std::uint64_t offset) {
  while (!buffer.empty()) {
    ssize_t n = retry_eintr(
        [&] { return ::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(offset)); });
    if (n == 0) return false;
    if (n < 0) throw_errno("fd " + std::to_string(fd), "pread", errno);
    buffer = buffer.subspan(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
  return true;
}

std::size_t read_some(int fd, std::span<std::byte> buffer) {
  ssize_t n = retry_eintr([&] { return ::read(fd, buffer.data(), buffer.size()); });
  if (n < 0) throw_errno("fd " + std::to_string(fd), "read", errno);
  return static_cast<std::size_t>(n);
}

std::size_t read_at(int fd, std::span<std::byte> buffer, std::uint64_t offset) {
  ssize_t n = retry_eintr(
      [&] { return ::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(offset)); });
  if (n < 0) throw_errno("fd " + std::to_string(fd), "pread", errno);
  return static_cast<std::size_t>(n);
}

bool wait_readable(int fd, int timeout_ms) {
  pollfd entry{fd, POLLIN, 0};
  int n = retry_eintr([&] { return ::poll(&entry, 1, timeout_ms); });
  if (n < 0) throw_errno("fd " + std::to_string(fd), "poll", errno);
  return n > 0;
}

void shm_unlink_quietly(const char* name) noexcept { (void)::shm_unlink(name); }

void raise_signal(int signal) noexcept { (void)::raise(signal); }

void set_signal_handler(int signal, void (*handler)(int), int flags,
                        struct sigaction* previous) noexcept {
  struct sigaction action {};
  action.sa_handler = handler;
  action.sa_flags = flags;
  sigemptyset(&action.sa_mask);
  (void)::sigaction(signal, &action, previous);
}

void set_signal_handler(int signal, void (*handler)(int, siginfo_t*, void*), int flags) noexcept {
  struct sigaction action {};
  action.sa_sigaction = handler;
  action.sa_flags = flags | SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  (void)::sigaction(signal, &action, nullptr);
}

void restore_signal_action(int signal, const struct sigaction& action) noexcept {
  (void)::sigaction(signal, &action, nullptr);
}

void exit_now(int status) noexcept { ::_exit(status); }

std::size_t thread_count() {
  std::size_t count = 0;
  for_each_dir_entry("/proc/self/task", [&](std::string_view) { ++count; });
  return count;
}

void set_child_subreaper(bool on) {
  check("this process", "prctl(PR_SET_CHILD_SUBREAPER)",
        [&] { return ::prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0); });
}

std::pair<UniqueFd, UniqueFd> socket_pair() {
  std::array<int, 2> fds{-1, -1};
  check("socketpair", "socketpair",
        [&] { return ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.data()); });
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace sys
}  // namespace shmutils
