// shmutils::sys — the one layer through which shmutils talks to the OS.
//
// Contract
//   Every system call shmutils (and its framework) makes goes through here:
//   EINTR is retried in one place (retry_eintr), errno is read right after
//   the call and turned into an Error naming the object and the operation
//   (throw_errno). Functions that can legitimately "fail" as part of normal
//   control flow (a name that may not exist, a lock that may be taken)
//   return a value instead of throwing; they say so in their names.
//   Lives: stateless free functions, thread-safe, async-signal-safe only where
//   noted.
#pragma once

#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <csignal>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shmutils/shm/error.hpp"
#include "shmutils/shm/exit_status.hpp"
#include "shmutils/shm/unique_fd.hpp"

namespace shmutils::sys {

// Calls f until it returns something other than -1 with errno == EINTR.
template <class F>
auto retry_eintr(F&& f) {
  for (;;) {
    auto result = f();
    if (!(result == -1 && errno == EINTR)) return result;
  }
}

// Calls f (returning -1 + errno on failure, like most syscalls) with EINTR
// retried; throws an Error naming object and operation on failure.
template <class F>
auto check(std::string_view object, std::string_view operation, F&& f) {
  auto result = retry_eintr(f);
  if (result == -1) throw_errno(object, operation, errno);
  return result;
}

// For calls that return an errno value (pthread_*, posix_fallocate).
inline void check_rc(std::string_view object, std::string_view operation, int rc) {
  if (rc != 0) throw_errno(object, operation, rc);
}

std::size_t page_size() noexcept;
std::size_t round_up_to_page(std::size_t size) noexcept;

// --- shared-memory objects -------------------------------------------------
UniqueFd shm_open(const std::string& name, int flags, mode_t mode);
// Opens without throwing: returns the errno on failure.
int try_shm_open(const std::string& name, int flags, mode_t mode, UniqueFd& out) noexcept;
void shm_unlink(const std::string& name);
// Returns false when the name did not exist.
bool shm_unlink_if_exists(const std::string& name);
UniqueFd memfd_create(const std::string& name, unsigned flags);

struct stat fstat(int fd, std::string_view object);
// stat(2) of a path, following links; nothing when it cannot be read.
std::optional<struct stat> stat_path(const std::string& path);
// isatty(3).
bool is_terminal(int fd) noexcept;
void ftruncate(int fd, std::uint64_t size, std::string_view object);
// posix_fallocate: reserves the pages so a full tmpfs fails here, not as SIGBUS later.
void fallocate(int fd, std::uint64_t offset, std::uint64_t length, std::string_view object);
void fchmod(int fd, mode_t mode, std::string_view object);
void fchown(int fd, uid_t uid, gid_t gid, std::string_view object);
// The lowest free fd number at or above `lowest`.
UniqueFd dup_cloexec(int fd, std::string_view object, int lowest = 0);
// Sets or clears FD_CLOEXEC.
void set_cloexec(int fd, bool on, std::string_view object);

// flock on the whole object. try_ variants return false when it is held elsewhere.
bool try_flock_exclusive(int fd, std::string_view object);
void flock_unlock(int fd, std::string_view object);

// Open file description (OFD) locks on one byte, at any offset (past the end
// of the file too). Such a lock belongs to the open file description, not to
// a process: the kernel drops it when the last fd on that description
// closes, which is at death for a description no other process shares.
// try_ofd_lock_shared_byte returns false when a conflicting lock is held.
bool try_ofd_lock_shared_byte(int fd, std::uint64_t offset, std::string_view object);
void ofd_unlock_byte(int fd, std::uint64_t offset, std::string_view object);
// True when some other open file description holds a lock on the byte.
// Needs no write access to the file.
bool ofd_byte_locked_elsewhere(int fd, std::uint64_t offset, std::string_view object);
// A new open file description of the file `fd` refers to (through
// /proc/self/fd), close-on-exec; its locks are independent of fd's.
UniqueFd reopen(int fd, int flags, std::string_view object);
// Points fd at /dev/null, keeping its number: drops this process's reference
// to the description it had (a forked child giving up its parent's locks).
// Async-signal-safe; errors ignored.
void detach_fd_quietly(int fd) noexcept;

// --- memory mappings -------------------------------------------------------
void* mmap(void* hint, std::size_t length, int prot, int flags, int fd, std::uint64_t offset,
           std::string_view object);
void munmap(void* address, std::size_t length, std::string_view object);
void mprotect(void* address, std::size_t length, int prot, std::string_view object);
void madvise(void* address, std::size_t length, int advice, std::string_view object);
void msync(void* address, std::size_t length, int flags, std::string_view object);
void mlock(const void* address, std::size_t length, std::string_view object);
void munlock(const void* address, std::size_t length, std::string_view object);
// Puts a private, read-only page of zeros over [page, page + length)
// (MAP_FIXED): a reader whose file shrank under it reads zeros there instead
// of faulting again. Async-signal-safe; false when the kernel refuses.
bool map_zeros_over(void* page, std::size_t length) noexcept;

// --- processes -------------------------------------------------------------
pid_t getpid() noexcept;
// getppid(2): 0 when the parent is outside this PID namespace.
pid_t getppid() noexcept;
// The path of this program (/proc/self/exe).
std::string self_executable();
// pthread_atfork(3); any handler may be nullptr.
void on_fork(void (*prepare)(), void (*parent)(), void (*child)()) noexcept;
pid_t gettid() noexcept;
// setpriority(2) of this process to `nice`; best effort (a refusal is ignored:
// only the scheduling changes).
void set_priority(int nice) noexcept;
uid_t geteuid() noexcept;
// The kernel's start time of a process (clock ticks since boot, /proc/PID/stat
// field 22): with the pid it names one process, even across pid reuse.
// nullopt when no such process exists (or it is a zombie already reaped).
std::optional<std::uint64_t> process_start_time(pid_t pid);
// True when pid names a process whose start time equals start_time.
bool process_alive(pid_t pid, std::uint64_t start_time);
enum class ProcessState { Running, Stopped, Gone };
// What /proc says of pid in this namespace: Stopped for a stopped or traced
// process, Gone when there is none (or only its zombie).
ProcessState process_state(pid_t pid);
// The number of the system call pid sleeps in (/proc/<pid>/syscall), or
// nullopt while it runs, when it is gone, or when /proc does not say.
std::optional<long> blocked_syscall(pid_t pid);
// This process's start time, read through /proc/self (right even when /proc
// was mounted for another PID namespace, where /proc/<getpid()> is not us).
std::optional<std::uint64_t> own_start_time();
// The identity of this process's PID namespace (the inode of
// /proc/self/ns/pid); 0 when it cannot be read. A pid means something only
// with its namespace: compare these before acting on a pid from a segment.
std::uint64_t pid_namespace_id() noexcept;
// False when /proc was mounted for another PID namespace (unshare --pid
// without --mount-proc): /proc/<pid> then names another process than our
// pid does, and process_start_time() cannot be used on our pids.
bool proc_shows_this_namespace() noexcept;
// unshare(CLONE_NEWPID) (with CLONE_NEWUSER and our ids mapped onto
// themselves when not root): this process's later children start a new PID
// namespace (the first is its init). With own_proc, a new mount namespace
// too, in which that init can mount a /proc of its own (mount_own_proc), as
// a container has. Returns 0, or the errno.
int unshare_pid_namespace(bool own_proc = false) noexcept;
// In the init of a PID namespace made with own_proc: mounts /proc for it
// (mounts made private first, so the parent's /proc is untouched).
// Returns 0, or the errno.
int mount_own_proc() noexcept;
std::uint64_t monotonic_ns() noexcept;
// A steady_clock deadline (CLOCK_MONOTONIC on Linux) as nanoseconds for the
// futex calls, where 0 means "no deadline": a deadline at or before the epoch
// becomes 1 ns, already past.
std::uint64_t deadline_ns(std::chrono::steady_clock::time_point deadline) noexcept;
std::uint64_t realtime_ns() noexcept;
void sleep_ns(std::uint64_t ns) noexcept;
// Fills buffer with bytes from getrandom(2).
void random_bytes(std::span<std::byte> buffer);

// How a child process ended (exit_status.hpp).
using shmutils::ExitStatus;
using shmutils::signal_name;
pid_t fork(std::string_view what);
// Counts the forks this process descends from (bumped in every forked child),
// so an object can tell it was inherited rather than made here.
std::uint64_t fork_generation() noexcept;
// sched_yield(2).
void yield() noexcept;
// Sends a signal; false when the process no longer exists.
bool kill(pid_t pid, int signal);
// Reaps pid if it ended; nullopt while it runs.
std::optional<ExitStatus> wait_nohang(pid_t pid);
ExitStatus wait(pid_t pid);
struct ChildStateChange {
  bool stopped = false;  // stopped by stop_signal; otherwise ended with status
  int stop_signal = 0;
  ExitStatus status;
};
// waitpid(WNOHANG | WUNTRACED): nullopt while it runs. A child already reaped
// elsewhere (ECHILD) reads as ended with signal 0 and exit code -1.
std::optional<ChildStateChange> wait_nohang_or_stopped(pid_t pid);
// posix_spawn of path with argv and envp (nullptr: this environment).
// `redirect` lists (fd in this process, fd number in the child) pairs, for
// example {pipe_write_end, 1}: dup2'ed in the child before exec.
pid_t spawn(const std::string& path, const std::vector<std::string>& argv,
            const std::vector<std::string>* envp = nullptr,
            const std::vector<std::pair<int, int>>& redirect = {});
// prctl(PR_SET_PDEATHSIG): the calling process gets `signal` when its parent dies.
void set_parent_death_signal(int signal);

// Pids whose parent is pid (scans /proc).
std::vector<pid_t> child_pids(pid_t parent);
// Names in /dev/shm ("/name" form), sorted.
std::vector<std::string> list_shm_names();

// --- process-shared robust pthread mutexes ---------------------------------
void robust_mutex_init(pthread_mutex_t* mutex, std::string_view object);
enum class RobustLockResult { Acquired, OwnerDied };
// Blocks; OwnerDied means the previous holder died holding it: the caller
// holds it now and must repair, then call robust_mutex_consistent.
RobustLockResult robust_mutex_lock(pthread_mutex_t* mutex, std::string_view object);
void robust_mutex_consistent(pthread_mutex_t* mutex, std::string_view object);
void robust_mutex_unlock(pthread_mutex_t* mutex, std::string_view object);

// --- futexes (process-shared: never FUTEX_PRIVATE_FLAG) ---------------------
enum class FutexWaitResult { Woken, ValueChanged, TimedOut };
// Sleeps while *word == expected, until woken or the CLOCK_MONOTONIC deadline
// (0: no deadline). EINTR counts as Woken (callers re-check their condition).
FutexWaitResult futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                           std::uint64_t deadline_ns) noexcept;
// Wakes up to `count` waiters; returns how many were woken.
int futex_wake(const std::atomic<std::uint32_t>& word, int count) noexcept;
// True when thread `tid` of process `pid` exists (tgkill with signal 0).
bool thread_alive(pid_t pid, pid_t tid) noexcept;
// Whether thread tid of process pid (in this namespace) no longer runs code:
// gone, a zombie, or exiting (the kernel walks a dying thread's robust list
// while it exits, before it is gone). Falls back to thread_alive when /proc
// does not show it.
bool thread_departed(pid_t pid, pid_t tid) noexcept;
// A cheap monotonic clock (CLOCK_MONOTONIC_COARSE, a few ms resolution) for
// records such as "held since", where precision is not worth a full clock read.
std::uint64_t coarse_monotonic_ns() noexcept;
// The calling thread's kernel robust-futex list head (get_robust_list).
void* robust_list_head();
// munmap for destructors and cleanup: a range this process mapped whole, so
// it cannot fail; nothing is thrown either way.
void munmap_quietly(void* address, std::size_t size) noexcept;
// Reads a word of this process's memory at an address that may be unmapped
// (process_vm_readv: EFAULT instead of a fault); false when it cannot.
bool read_own_word(std::uintptr_t address, std::uintptr_t& value) noexcept;

// --- passing descriptors over a Unix socket --------------------------------
// Sends `message` and, with it, `fd` as SCM_RIGHTS.
void send_with_fd(int socket, std::string_view message, int fd);
struct ReceivedFd {
  std::string message;
  UniqueFd fd;  // invalid when the sender attached none
};
// Receives one message of at most max_message bytes and the fd sent with it.
ReceivedFd receive_with_fd(int socket, std::size_t max_message = 4096);
// The same with up to 8 fds.
void send_with_fds(int socket, std::string_view message, const std::vector<int>& fds);
struct ReceivedFds {
  std::string message;
  std::vector<UniqueFd> fds;
};
ReceivedFds receive_with_fds(int socket, std::size_t max_message = 4096);
// A close-on-exec pipe: {read end, write end}; the read end non-blocking if asked.
std::pair<UniqueFd, UniqueFd> pipe(bool nonblocking_read = false);
// dup2 (close-on-exec cleared on the new fd, as dup2 does).
void dup2(int from, int to);
// Reads what is there without blocking (the fd must be O_NONBLOCK); appends
// at most `limit` bytes in all to `out`; false at end of file.
bool read_available(int fd, std::string& out, std::size_t limit);
// Writes all of data, retrying short writes and EINTR; false on any error.
// Async-signal-safe: crash handlers use it to report before they stop.
bool write_all(int fd, std::string_view data) noexcept;
// Reads exactly buffer.size() bytes (blocking, EINTR retried); false at end
// of file before that many arrived.
bool read_exact(int fd, std::span<std::byte> buffer);
// One read(2) (EINTR retried): the bytes read, 0 at the end.
std::size_t read_some(int fd, std::span<std::byte> buffer);
// pread(2) until `buffer` is full from `offset`: false when the file ends first.
bool read_exact_at(int fd, std::span<std::byte> buffer, std::uint64_t offset);
// One pread(2) at `offset` (EINTR retried): the bytes read, 0 at the end.
std::size_t read_at(int fd, std::span<std::byte> buffer, std::uint64_t offset);
// poll(2) for POLLIN (or hang-up) on fd: true when readable within timeout_ms.
bool wait_readable(int fd, int timeout_ms);
// shm_unlink for a signal handler: no allocation, no exception, errors ignored.
void shm_unlink_quietly(const char* name) noexcept;
// sigaction(2) with sa_handler = handler, sa_flags = flags and an empty mask;
// the action it replaces goes to *previous when given. Async-signal-safe.
void set_signal_handler(int signal, void (*handler)(int), int flags,
                        struct sigaction* previous = nullptr) noexcept;
// The same with sa_sigaction = handler (SA_SIGINFO added to flags): the
// handler learns the faulting address.
void set_signal_handler(int signal, void (*handler)(int, siginfo_t*, void*), int flags) noexcept;
// Puts back an action saved by set_signal_handler. Async-signal-safe.
void restore_signal_action(int signal, const struct sigaction& action) noexcept;
// _exit(2): ends this process now, without atexit handlers or destructors
// (a forked child must not run its parent's).
[[noreturn]] void exit_now(int status) noexcept;
// Raises `signal` in this process (kill(getpid())): async-signal-safe.
void raise_signal(int signal) noexcept;
// Tracing a thread to read its stack (ptrace(2)): seizes it and stops it;
// an empty result, or why not ("ptrace not permitted here", "it ended").
std::string ptrace_seize_and_stop(pid_t tid);
// Lets a seized thread go (a stopped one stays stopped).
void ptrace_detach(pid_t tid) noexcept;
// Threads of this process (/proc/self/task).
std::size_t thread_count();
// PR_SET_CHILD_SUBREAPER: orphaned descendants become this process's children.
void set_child_subreaper(bool on);
// A connected pair of Unix stream sockets, close-on-exec.
std::pair<UniqueFd, UniqueFd> socket_pair();

}  // namespace shmutils::sys
