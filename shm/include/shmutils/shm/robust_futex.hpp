// shmutils::RobustFutex — the lock word under every shmutils lock: a futex
// the kernel releases for us when its holder dies.
//
// Contract
//   Lives:       inside a segment; 64 bytes, standard layout, zero-filled =
//                unlocked. Position independent for every field another process
//                reads.
//   Protocol:    Linux robust futexes. The word holds the holder's thread id;
//                while held, the futex is linked into the holding thread's
//                robust list (the one the C library registered with
//                set_robust_list), so when the thread dies — SIGKILL at any
//                instruction included — the kernel sets OWNER_DIED, clears the
//                tid and wakes one waiter. The next acquirer sees it.
//   Layout:      list_prev/list_next sit where glibc's pthread_mutex_t keeps its
//                robust-list links (offsets 24 and 32 from the word), so our
//                entries and glibc's share one list. They hold addresses of the
//                holding thread only: no other process ever reads them.
//                check_robust_list_compatible() verifies the C library agrees
//                (futex_offset == -32) before the first lock.
//   Holder:      holder_tid (in the word), holder_pid and holder_pid_namespace
//                are readable by anyone (tools, the harness) without locking.
//                The ids are the holder's own, in its PID namespace: they name
//                a process only for an observer in that same namespace
//                (sys::pid_namespace_id()). held_since_ns is the
//                CLOCK_MONOTONIC_COARSE time at which the current holder was
//                first seen holding it: by the first waiter that had to wait, or
//                by note_holder_seen() (tools). The holder itself only clears it:
//                a clock read on every acquisition would cost a quarter of an
//                uncontended lock, and nobody needs the time of an uncontested hold.
//   Ownership:   a tid names a thread only in its namespace, and containers
//                all number from 1: "this thread holds it" means the word's
//                tid, holder_pid and holder_pid_namespace are all ours. (The
//                holder writes those two after taking the word and clears the
//                pid before releasing it, so they never read as ours for
//                another holder.)
//   Liveness:    the kernel releases a dead holder's lock, in any namespace.
//                A waiter also checks, every 200 ms, that a holder in its own
//                PID namespace still exists (for holders whose robust list the
//                kernel could not walk); a holder in another namespace, or one
//                whose namespace is unknown, is never declared dead by a pid.
//   Kernel marks: a dying thread's pending lock is released by the kernel when
//                the word carries the dying thread's tid, and tids repeat
//                across PID namespaces: a thread killed in the instant around
//                an attempt on (or the release of) a lock that a thread with
//                the same tid elsewhere holds makes the kernel mark that
//                holder's lock owner-died. So owner-died is believed only when
//                the holder recorded in the record (pid, tid, namespace) is
//                gone (sys::thread_departed in our namespace, its registry slot
//                elsewhere), or no holder has been recorded for 200 ms (it
//                died taking or releasing the word: a live one records itself
//                at once); otherwise the lock is still held and the
//                waiter keeps checking, 1 ms at first, backing off. The holder
//                knows the lock is still its own by finding it in its robust
//                list, and releases it as usual.
//   Forged links: list_prev/list_next sit in shared memory, where any process
//                that may write the segment can change them while we hold the
//                lock. A thread stores through them only after checking that
//                the neighbour they name is its list head, a lock it linked
//                itself (it keeps their addresses, privately), or a node whose
//                back link names this lock (read without faulting). A forged
//                link is never followed: the thread rebuilds its robust list
//                from the locks it holds (robust pthread mutexes held at that
//                moment lose the kernel's owner-death cover) and reports it
//                (forged_robust_links(), one line on stderr).
//   Errors:      lock/unlock never throw on the fast path; misuse (unlocking a
//                lock this thread does not hold) throws InvalidArgument.
//   Threads:     any thread of any process; not reentrant (see RecursiveMutex).
//   Fork:        a forked child holds none of its parent's locks.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "shmutils/shm/fault_point.hpp"

namespace shmutils {

namespace detail {
struct ThreadLockContext;
}

struct RobustFutex {
  static constexpr std::uint32_t kWaiters = 0x80000000U;    // FUTEX_WAITERS
  static constexpr std::uint32_t kOwnerDied = 0x40000000U;  // FUTEX_OWNER_DIED
  static constexpr std::uint32_t kTidMask = 0x3fffffffU;    // FUTEX_TID_MASK

  std::atomic<std::uint32_t> word;           // 0: holder tid | kWaiters | kOwnerDied
  std::atomic<std::int32_t> holder_pid;      // 4: the holding process (0 when free)
  std::atomic<std::uint64_t> held_since_ns;  // 8: see "Holder" above; 0 = not yet observed
  std::atomic<std::uint32_t> state;          // 16: owner of the lock type (Mutex: repair state)
  std::atomic<std::uint32_t> depth;          // 20: owner of the lock type (recursion depth)
  std::uintptr_t list_prev;                  // 24: holding thread's robust list (its addresses)
  std::uintptr_t list_next;                  // 32: idem; the kernel finds `word` at list_next - 32
  // The holder's sys::pid_namespace_id() (an inode number: 32 bits), tid and
  // process start time, written before holder_pid and kept when the kernel
  // clears the word: they tell a live holder from a dead one with the same ids.
  std::atomic<std::uint32_t> holder_pid_namespace;  // 40
  std::atomic<std::int32_t> holder_thread;          // 44
  std::atomic<std::uint64_t> holder_start_time;     // 48
  std::uint64_t reserved;                           // 56: zero

  enum class Outcome { Acquired, OwnerDied, Busy, TimedOut };

  // Blocks until held or the CLOCK_MONOTONIC deadline passes (0: none).
  Outcome lock(std::uint64_t deadline_ns = 0);
  Outcome try_lock() noexcept;
  void unlock();

 private:
  Outcome lock_contended(std::uint32_t seen, std::uint64_t deadline_ns);
  void unlock_slow();
  void wake_one() noexcept;
  void link(detail::ThreadLockContext& t) noexcept;
  void unlink(detail::ThreadLockContext& t) noexcept;
  void unlink_checked(detail::ThreadLockContext& t) noexcept;
  void record_holder(const detail::ThreadLockContext& t) noexcept;
  void release_word(detail::ThreadLockContext& t, std::uint32_t seen) noexcept;
  bool linked_by(const detail::ThreadLockContext& t) const noexcept;
  bool recorded_holder_gone(const detail::ThreadLockContext& t) noexcept;

 public:
  // Records "seen held now" if no earlier sighting of this holder is recorded.
  void note_holder_seen() noexcept;

  pid_t holder_tid() const noexcept {
    return static_cast<pid_t>(word.load(std::memory_order_relaxed) & kTidMask);
  }
  bool held_by_this_thread() const noexcept;
  // Whether the holder fields name the thread of `t` (see "Ownership").
  bool held_by(const detail::ThreadLockContext& t, std::uint32_t word_seen) const noexcept;
  // Whether `t` holds it although the kernel marked the word owner-died (see
  // "Kernel marks"): the record names `t` and `t`'s robust list links it.
  bool held_despite_mark(const detail::ThreadLockContext& t,
                         std::uint32_t word_seen) const noexcept;
};

static_assert(std::is_standard_layout_v<RobustFutex>);
static_assert(sizeof(RobustFutex) == 64);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

namespace detail {
// This thread's ids and kernel robust-list head, filled on first use.
struct ThreadLockContext {
  pid_t tid = 0;
  pid_t pid = 0;
  std::uint64_t pid_namespace = 0;
  std::uint64_t start_time = 0;  // the process's, as /proc shows it (0: unknown)
  struct RobustListHead {
    std::uintptr_t list;  // first entry (&entry->list_next) or this head
    long futex_offset;
    std::uintptr_t list_op_pending;
  }* head = nullptr;
  // The futexes this thread linked and still holds, in private memory: the
  // links it may store through (see "Forged links"). Room is made before a
  // lock is taken, so taking it never allocates.
  RobustFutex** held = nullptr;
  std::uint32_t held_count = 0;
  std::uint32_t held_capacity = 0;
};
// initial-exec: the default TLS model of -fPIC code calls __tls_get_addr on
// every access, which would cost more than the lock itself.
extern thread_local ThreadLockContext t_lock_context __attribute__((tls_model("initial-exec")));
ThreadLockContext& init_lock_context();
void reach_lock_acquired_point() noexcept;
void reach_lock_release_point() noexcept;
// Makes room in t.held for one more futex; throws std::bad_alloc.
void grow_held(ThreadLockContext& t);
inline void ensure_held_room(ThreadLockContext& t) {
  if (t.held_count == t.held_capacity) [[unlikely]]
    grow_held(t);
}
// Drops f from t.held (the most recent first); false when it is not there.
inline bool forget_held(ThreadLockContext& t, const RobustFutex* f) noexcept {
  for (std::uint32_t i = t.held_count; i-- > 0;) {
    if (t.held[i] == f) {
      t.held[i] = t.held[--t.held_count];
      return true;
    }
  }
  return false;
}

// The robust-list link stored at `address`; glibc may set an address's low
// bit as a flag, so it is masked off.
inline std::uintptr_t& link_word(std::uintptr_t address) noexcept {
  return *reinterpret_cast<std::uintptr_t*>(  // NOLINT(performance-no-int-to-ptr): list links
      address & ~std::uintptr_t{1});
}

inline void set_pending(ThreadLockContext& t, RobustFutex* f) noexcept {
  t.head->list_op_pending = f != nullptr ? reinterpret_cast<std::uintptr_t>(&f->list_next) : 0;
  std::atomic_signal_fence(std::memory_order_seq_cst);  // program order, for the kernel
}
}  // namespace detail

// Links this futex at the head of the thread's robust list, exactly as glibc
// links its own robust mutexes, so both kinds can be unlinked in any order.
inline void RobustFutex::link(detail::ThreadLockContext& t) noexcept {
  std::uintptr_t first = t.head->list;
  detail::link_word((first & ~std::uintptr_t{1}) - sizeof(void*)) =
      reinterpret_cast<std::uintptr_t>(&list_next);
  list_next = first;
  list_prev = reinterpret_cast<std::uintptr_t>(t.head);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t.head->list = reinterpret_cast<std::uintptr_t>(&list_next);
  t.held[t.held_count++] = this;  // room made before the word was taken
}

// The usual cases checked inline: this lock alone in the list, or the most
// recent of this thread's locks with an earlier one of them behind it (both
// neighbours known, their back links naming us). Anything else is checked
// node by node (see "Forged links").
inline void RobustFutex::unlink(detail::ThreadLockContext& t) noexcept {
  const auto self = reinterpret_cast<std::uintptr_t>(&list_next);
  const auto head = reinterpret_cast<std::uintptr_t>(t.head);
  const std::uintptr_t next = list_next & ~std::uintptr_t{1};
  const std::uintptr_t prev = list_prev & ~std::uintptr_t{1};
  bool known = prev == head && (t.head->list & ~std::uintptr_t{1}) == self;
  if (known && next == head) {
    known = detail::link_word(head - sizeof(void*)) == self;
  } else if (known) {
    known = t.held_count >= 2 &&
            next == reinterpret_cast<std::uintptr_t>(&t.held[t.held_count - 2]->list_next) &&
            t.held[t.held_count - 1] == this &&
            (detail::link_word(next - sizeof(void*)) & ~std::uintptr_t{1}) == self;
  }
  if (!known || !detail::forget_held(t, this)) [[unlikely]] {
    unlink_checked(t);
    return;
  }
  detail::link_word(next - sizeof(void*)) = prev;
  detail::link_word(prev) = list_next;
}

// The namespace before the pid (release): whoever reads a holder's pid
// (acquire) reads that holder's namespace with it, never a predecessor's.
inline void RobustFutex::record_holder(const detail::ThreadLockContext& t) noexcept {
  holder_pid_namespace.store(static_cast<std::uint32_t>(t.pid_namespace),
                             std::memory_order_relaxed);
  holder_thread.store(t.tid, std::memory_order_relaxed);
  holder_start_time.store(t.start_time, std::memory_order_relaxed);
  holder_pid.store(t.pid, std::memory_order_release);
  held_since_ns.store(0, std::memory_order_relaxed);
}

inline RobustFutex::Outcome RobustFutex::lock(std::uint64_t deadline_ns) {
  detail::ThreadLockContext& t =
      detail::t_lock_context.head != nullptr ? detail::t_lock_context : detail::init_lock_context();
  detail::ensure_held_room(t);
  detail::set_pending(t, this);
  std::uint32_t seen = 0;
  if (word.compare_exchange_strong(seen, static_cast<std::uint32_t>(t.tid),
                                   std::memory_order_acquire, std::memory_order_relaxed))
      [[likely]] {
    link(t);
    detail::set_pending(t, nullptr);
    record_holder(t);
    if (detail::g_fault_hook.load(std::memory_order_relaxed) != nullptr) [[unlikely]] {
      detail::reach_lock_acquired_point();
    }
    return Outcome::Acquired;
  }
  return lock_contended(seen, deadline_ns);
}

inline bool RobustFutex::held_by(const detail::ThreadLockContext& t,
                                 std::uint32_t word_seen) const noexcept {
  return (word_seen & kTidMask) == static_cast<std::uint32_t>(t.tid) &&
         holder_pid.load(std::memory_order_relaxed) == t.pid &&
         holder_pid_namespace.load(std::memory_order_relaxed) ==
             static_cast<std::uint32_t>(t.pid_namespace);
}

// Frees the word this thread holds (its record already cleared, its pending
// mark set). The word may carry the kernel's owner-died mark instead of our
// tid (see "Kernel marks"): still ours. Another tid: a waiter took it after our
// record was cleared, as if we had released it a moment earlier.
inline void RobustFutex::release_word(detail::ThreadLockContext& t, std::uint32_t seen) noexcept {
  std::uint32_t v = seen;
  bool freed = false;
  for (;;) {
    const std::uint32_t tid = v & kTidMask;
    if (tid != static_cast<std::uint32_t>(t.tid) && !(tid == 0 && (v & kOwnerDied) != 0)) break;
    if (word.compare_exchange_weak(v, 0, std::memory_order_release, std::memory_order_relaxed)) {
      freed = true;
      break;
    }
  }
  // Cleared before the wake-up: once the word is free, another namespace's
  // thread with our tid may take it, and the kernel would release its lock
  // if we died still marked pending. (Dying before the wake-up costs a
  // waiter one liveness slice, not the lock.)
  detail::set_pending(t, nullptr);
  if (freed && (v & kWaiters) != 0) [[unlikely]]
    wake_one();
}

inline void RobustFutex::unlock() {
  detail::ThreadLockContext& t = detail::t_lock_context;
  if (t.head == nullptr || !held_by(t, word.load(std::memory_order_relaxed)) ||
      detail::g_fault_hook.load(std::memory_order_relaxed) != nullptr) [[unlikely]] {
    unlock_slow();
    return;
  }
  holder_pid.store(0, std::memory_order_relaxed);
  held_since_ns.store(0, std::memory_order_relaxed);
  detail::set_pending(t, this);
  unlink(t);
  release_word(t, word.load(std::memory_order_relaxed));
}

// Throws NotSupported when the C library's robust list is not laid out as
// RobustFutex expects. Called once per thread before its first lock.
void check_robust_list_compatible();

// How many forged robust-list links this process has met (see "Forged links").
std::uint64_t forged_robust_links() noexcept;

// This thread's cached ids (refreshed in a forked child).
pid_t current_tid() noexcept;
pid_t current_pid() noexcept;

}  // namespace shmutils
