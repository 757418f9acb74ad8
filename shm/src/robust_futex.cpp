#include "shmutils/shm/robust_futex.hpp"

#include <linux/futex.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <optional>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/process_liveness.hpp"
#include "shmutils/shm/process_registry.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_lock_acquired, "lock.acquired");
SHMUTILS_FAULT_POINT(fp_lock_before_release, "lock.before_release");

namespace detail {

thread_local ThreadLockContext t_lock_context __attribute__((tls_model("initial-exec")));

static_assert(sizeof(ThreadLockContext::RobustListHead) == sizeof(robust_list_head));

namespace {
// glibc empties the child's robust list at fork; the child's ids differ too.
// (The held array's room is kept: it is this thread's own copy.)
void reset_after_fork() noexcept {
  ThreadLockContext fresh;
  fresh.held = t_lock_context.held;
  fresh.held_capacity = t_lock_context.held_capacity;
  t_lock_context = fresh;
}

// Frees a thread's held array when the thread ends.
struct HeldStorage {
  HeldStorage() = default;
  HeldStorage(const HeldStorage&) = delete;
  HeldStorage& operator=(const HeldStorage&) = delete;
  ~HeldStorage() {
    std::free(static_cast<void*>(t_lock_context.held));
    t_lock_context.held = nullptr;
    t_lock_context.held_count = 0;
    t_lock_context.held_capacity = 0;
  }
};
thread_local HeldStorage t_held_storage;

std::atomic<std::uint64_t> g_forged_links{0};
}  // namespace

void grow_held(ThreadLockContext& t) {
  (void)&t_held_storage;  // constructed, so the array is freed at thread exit
  const std::uint32_t capacity = t.held_capacity == 0 ? 8 : t.held_capacity * 2;
  // An array of pointers: sizeof a pointer is meant.
  void* grown =
      std::realloc(static_cast<void*>(t.held),
                   sizeof(RobustFutex*) * capacity);  // NOLINT(bugprone-sizeof-expression)
  if (grown == nullptr) throw std::bad_alloc();
  t.held = static_cast<RobustFutex**>(grown);
  t.held_capacity = capacity;
}

ThreadLockContext& init_lock_context() {
  static const bool registered = [] {
    sys::on_fork(nullptr, nullptr, &reset_after_fork);
    return true;
  }();
  (void)registered;
  check_robust_list_compatible();
  t_lock_context.head = static_cast<ThreadLockContext::RobustListHead*>(sys::robust_list_head());
  t_lock_context.tid = sys::gettid();
  t_lock_context.pid = sys::getpid();
  t_lock_context.pid_namespace = sys::pid_namespace_id();
  t_lock_context.start_time = sys::own_start_time().value_or(0);
  return t_lock_context;
}

void reach_lock_acquired_point() noexcept { fp_lock_acquired.reached(); }
void reach_lock_release_point() noexcept { fp_lock_before_release.reached(); }

}  // namespace detail

namespace {

// The offset the kernel adds to a list entry (&list_next) to find the word.
constexpr long kFutexOffset = static_cast<long>(offsetof(RobustFutex, word)) -
                              static_cast<long>(offsetof(RobustFutex, list_next));
static_assert(offsetof(RobustFutex, list_next) - offsetof(RobustFutex, list_prev) == sizeof(void*),
              "glibc finds an entry's prev link right before its next link");

// How long a waiter sleeps before checking that the holder still exists: the
// kernel normally wakes us on its death; this covers a holder whose robust
// list could not be walked (it unmapped the segment while holding, say).
constexpr std::uint64_t kLivenessCheckNs = 200'000'000;
// How long a waiter first sleeps on an owner-died mark whose recorded holder
// still lives (see "Kernel marks"): a holder that really died is gone within
// a few milliseconds of the mark (its files close just after its robust list
// is walked); one that lives will release it, perhaps much later: back off.
constexpr std::uint64_t kFirstMarkCheckNs = 1'000'000;
// How long an owner-died mark with no recorded holder must stay so before it
// is believed (see recorded_holder_gone): longer than any scheduling delay a
// live holder meets between taking the word and recording itself, save a stop.
constexpr std::uint64_t kUnrecordedGraceNs = 200'000'000;

detail::ThreadLockContext& context() {
  return detail::t_lock_context.head != nullptr ? detail::t_lock_context
                                                : detail::init_lock_context();
}

}  // namespace

void check_robust_list_compatible() {
  auto* head = static_cast<robust_list_head*>(sys::robust_list_head());
  if (head->futex_offset != kFutexOffset) {
    throw Error(ErrorKind::NotSupported, "robust futex", "check C library",
                "the C library's robust list uses futex_offset " +
                    std::to_string(head->futex_offset) + ", shmutils locks need " +
                    std::to_string(kFutexOffset) + " (glibc on Linux)");
  }
}

pid_t current_tid() noexcept {
  try {
    return context().tid;
  } catch (...) {
    return sys::gettid();
  }
}

pid_t current_pid() noexcept { return sys::getpid(); }

bool RobustFutex::held_by_this_thread() const noexcept {
  try {
    const detail::ThreadLockContext& t = context();
    std::uint32_t v = word.load(std::memory_order_relaxed);
    return held_by(t, v) || held_despite_mark(t, v);
  } catch (...) {
    return false;
  }
}

// From the thread's private record of what it linked: walking the list itself
// would follow links that live in shared memory (see "Forged links").
bool RobustFutex::linked_by(const detail::ThreadLockContext& t) const noexcept {
  for (std::uint32_t i = 0; i < t.held_count; ++i) {
    if (t.held[i] == this) return true;
  }
  return false;
}

namespace {

// Whether `node` (a list entry address: &entry->list_next, or the head) is
// one this thread may trust without reading through it: its head or a lock
// it linked.
bool known_node(const detail::ThreadLockContext& t, std::uintptr_t node) noexcept {
  if (node == reinterpret_cast<std::uintptr_t>(t.head)) return true;
  for (std::uint32_t i = 0; i < t.held_count; ++i) {
    if (node == reinterpret_cast<std::uintptr_t>(&t.held[i]->list_next)) return true;
  }
  return false;
}

// The word at `address`, read directly when the node is known, otherwise
// without faulting; false when it cannot be read.
bool read_link(const detail::ThreadLockContext& t, std::uintptr_t node, std::uintptr_t address,
               std::uintptr_t& value) noexcept {
  if (known_node(t, node)) {
    value = detail::link_word(address);
    return true;
  }
  return sys::read_own_word(address, value);
}

// Relinks the thread's list from its private record alone: every store goes
// to its head or to a lock it linked.
void rebuild_list(detail::ThreadLockContext& t) noexcept {
  const auto head = reinterpret_cast<std::uintptr_t>(t.head);
  t.head->list = head;
  detail::link_word(head - sizeof(void*)) = head;
  for (std::uint32_t i = 0; i < t.held_count; ++i) {
    RobustFutex* f = t.held[i];
    const auto node = reinterpret_cast<std::uintptr_t>(&f->list_next);
    const std::uintptr_t first = t.head->list;
    detail::link_word(first - sizeof(void*)) = node;
    f->list_next = first;
    f->list_prev = head;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    t.head->list = node;
  }
}

}  // namespace

void RobustFutex::unlink_checked(detail::ThreadLockContext& t) noexcept {
  const auto self = reinterpret_cast<std::uintptr_t>(&list_next);
  const std::uintptr_t next_link = list_next;  // each read once
  const std::uintptr_t prev_link = list_prev;
  const std::uintptr_t next = next_link & ~std::uintptr_t{1};
  const std::uintptr_t prev = prev_link & ~std::uintptr_t{1};
  std::uintptr_t prev_next = 0;
  std::uintptr_t next_prev = 0;
  const bool ours = detail::forget_held(t, this);
  const bool sound = ours && next != 0 && prev != 0 && read_link(t, prev, prev, prev_next) &&
                     (prev_next & ~std::uintptr_t{1}) == self &&
                     read_link(t, next, next - sizeof(void*), next_prev) &&
                     (next_prev & ~std::uintptr_t{1}) == self;
  if (sound) {
    detail::link_word(next - sizeof(void*)) = prev;
    detail::link_word(prev) = next_link;
    return;
  }
  rebuild_list(t);
  detail::g_forged_links.fetch_add(1, std::memory_order_relaxed);
  static std::atomic<bool> told{false};
  if (!told.exchange(true)) {
    static constexpr char kLine[] =
        "shmutils: a lock's robust-list links were changed by another process; they were not "
        "followed, and this thread's robust list was rebuilt from the locks it holds\n";
    (void)sys::write_all(STDERR_FILENO, kLine);
  }
}

std::uint64_t forged_robust_links() noexcept {
  return detail::g_forged_links.load(std::memory_order_relaxed);
}

bool RobustFutex::held_despite_mark(const detail::ThreadLockContext& t,
                                    std::uint32_t word_seen) const noexcept {
  return t.head != nullptr && (word_seen & kTidMask) == 0 && (word_seen & kOwnerDied) != 0 &&
         holder_pid.load(std::memory_order_acquire) == t.pid &&
         holder_thread.load(std::memory_order_relaxed) == t.tid &&
         holder_pid_namespace.load(std::memory_order_relaxed) ==
             static_cast<std::uint32_t>(t.pid_namespace) &&
         linked_by(t);
}

bool RobustFutex::recorded_holder_gone(const detail::ThreadLockContext& t) noexcept {
  const pid_t pid = holder_pid.load(std::memory_order_acquire);
  const pid_t tid = holder_thread.load(std::memory_order_relaxed);
  const std::uint32_t pid_namespace = holder_pid_namespace.load(std::memory_order_relaxed);
  const std::uint64_t start_time = holder_start_time.load(std::memory_order_relaxed);
  const bool our_namespace = pid_namespace == static_cast<std::uint32_t>(t.pid_namespace);
  // Our very ids (a dead holder in a recycled namespace has them too): ours
  // only if we linked it.
  if (pid > 0 && our_namespace && pid == t.pid && tid == t.tid) return !linked_by(t);
  // A wrong mark needs a thread of another PID namespace dying pending on
  // this lock. With nobody of another namespace attached (the usual world)
  // the mark is the death of the holder, or of one that died between taking
  // the word and recording itself: believed at once, without /proc.
  if (!detail::other_namespace_registered(this, t.pid_namespace)) return true;
  if (pid <= 0) {
    // No holder recorded: it died between taking the word and recording
    // itself, or while releasing (past or before its critical section) - or
    // it lives in that instant and the mark is another namespace's thread's.
    // A live holder records itself within microseconds, so the mark is
    // believed once no holder has appeared for kUnrecordedGraceNs since
    // someone first saw it so (held_since_ns, which holders clear when they
    // record themselves and when they release).
    note_holder_seen();
    const std::uint64_t since = held_since_ns.load(std::memory_order_relaxed);
    return since != 0 && sys::coarse_monotonic_ns() - since >= kUnrecordedGraceNs;
  }
  if (pid_namespace == 0) return true;  // nothing recorded to find it by
  if (our_namespace && sys::proc_shows_this_namespace()) {
    if (sys::thread_departed(pid, tid)) return true;
    if (start_time == 0) return false;
    std::optional<std::uint64_t> now = sys::process_start_time(pid);
    return !now.has_value() || *now != start_time;  // its pid went to another process
  }
  // Another namespace: only its registry slot can tell (process_liveness.hpp).
  return !record_owner_alive(this, {pid, pid_namespace, start_time});
}

void RobustFutex::note_holder_seen() noexcept {
  std::uint64_t unseen = 0;
  held_since_ns.compare_exchange_strong(unseen, sys::coarse_monotonic_ns(),
                                        std::memory_order_relaxed);
}

void RobustFutex::wake_one() noexcept { sys::futex_wake(word, 1); }

RobustFutex::Outcome RobustFutex::try_lock() noexcept {
  detail::ThreadLockContext* t = nullptr;
  try {
    t = &context();
    detail::ensure_held_room(*t);
  } catch (...) {
    return Outcome::Busy;
  }
  std::uint32_t v = word.load(std::memory_order_relaxed);
  for (;;) {
    if ((v & kTidMask) != 0) return Outcome::Busy;
    if ((v & kOwnerDied) != 0 && !recorded_holder_gone(*t)) return Outcome::Busy;
    // Free, possibly marked owner-died: keep the waiters bit, drop owner-died.
    std::uint32_t desired = static_cast<std::uint32_t>(t->tid) | (v & kWaiters);
    detail::set_pending(*t, this);  // only around the attempt: see lock_contended
    if (word.compare_exchange_weak(v, desired, std::memory_order_acquire,
                                   std::memory_order_relaxed)) {
      link(*t);
      detail::set_pending(*t, nullptr);
      record_holder(*t);
      fp_lock_acquired.reached();
      return (v & kOwnerDied) != 0 ? Outcome::OwnerDied : Outcome::Acquired;
    }
    detail::set_pending(*t, nullptr);
  }
}

RobustFutex::Outcome RobustFutex::lock_contended(std::uint32_t seen, std::uint64_t deadline_ns) {
  detail::ThreadLockContext& t = context();
  detail::ensure_held_room(t);
  // The kernel treats a dying thread's pending lock as held by it when the
  // word carries its tid; a tid is unique only within a PID namespace, so a
  // waiter killed with the pending mark set would release the lock of a
  // holder elsewhere that has the same tid. The mark is set only around each
  // attempt to take the word, never while waiting.
  detail::set_pending(t, nullptr);
  if (held_by(t, seen) || held_despite_mark(t, seen)) {
    throw Error(ErrorKind::InvalidArgument, "robust lock", "lock",
                "this thread already holds it (use RecursiveMutex to lock twice)");
  }
  // After sleeping, other waiters may exist that we cannot see: keep the bit.
  std::uint32_t assume_waiters = 0;
  std::uint64_t mark_check_ns = kFirstMarkCheckNs;
  std::uint32_t v = seen;
  for (;;) {
    // Owner-died with its recorded holder alive: a mark the kernel made for
    // another namespace's thread (see "Kernel marks"); the lock is still held.
    bool marked_but_held = false;
    if ((v & kTidMask) == 0) {
      if ((v & kOwnerDied) == 0 || recorded_holder_gone(t)) {
        std::uint32_t desired = static_cast<std::uint32_t>(t.tid) | (v & kWaiters) | assume_waiters;
        detail::set_pending(t, this);
        if (word.compare_exchange_weak(v, desired, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
          link(t);
          detail::set_pending(t, nullptr);
          record_holder(t);
          fp_lock_acquired.reached();
          return (v & kOwnerDied) != 0 ? Outcome::OwnerDied : Outcome::Acquired;
        }
        detail::set_pending(t, nullptr);
        continue;
      }
      marked_but_held = true;
    }
    if ((v & kWaiters) == 0) {
      if (!word.compare_exchange_weak(v, v | kWaiters, std::memory_order_relaxed)) continue;
      v |= kWaiters;
    }
    note_holder_seen();
    std::uint64_t now = sys::monotonic_ns();
    if (deadline_ns != 0 && now >= deadline_ns) return Outcome::TimedOut;
    std::uint64_t slice_end = now + (marked_but_held ? mark_check_ns : kLivenessCheckNs);
    if (marked_but_held) mark_check_ns = std::min(mark_check_ns * 2, kLivenessCheckNs);
    if (deadline_ns != 0 && deadline_ns < slice_end) slice_end = deadline_ns;
    if (sys::futex_wait(word, v, slice_end) == sys::FutexWaitResult::TimedOut && !marked_but_held) {
      // A holder the kernel did not release (see kLivenessCheckNs): release
      // it here. Its ids mean something only in its own PID namespace.
      auto holder = static_cast<pid_t>(v & kTidMask);
      pid_t holder_process = holder_pid.load(std::memory_order_acquire);
      std::uint32_t holder_namespace = holder_pid_namespace.load(std::memory_order_relaxed);
      bool dead = false;
      if (holder_process > 0 && t.pid_namespace != 0 &&
          holder_namespace == static_cast<std::uint32_t>(t.pid_namespace)) {
        dead = !sys::thread_alive(holder_process, holder);
      } else if (holder_process > 0 && holder_namespace != 0) {
        // Another namespace: only its registry slot can tell (process_liveness.hpp).
        dead = !record_owner_alive(this, {holder_process, holder_namespace, 0});
      }
      if (dead) {
        std::uint32_t stale = v;
        word.compare_exchange_strong(stale, (v & kWaiters) | kOwnerDied, std::memory_order_relaxed);
      }
    }
    assume_waiters = kWaiters;
    v = word.load(std::memory_order_relaxed);
  }
}

void RobustFutex::unlock_slow() {
  detail::ThreadLockContext& t = context();
  std::uint32_t v = word.load(std::memory_order_relaxed);
  if (!held_by(t, v) && !held_despite_mark(t, v)) {
    throw Error(ErrorKind::InvalidArgument, "robust lock", "unlock",
                "this thread does not hold it (holder tid " + std::to_string(v & kTidMask) + ")");
  }
  fp_lock_before_release.reached();
  holder_pid.store(0, std::memory_order_relaxed);
  held_since_ns.store(0, std::memory_order_relaxed);
  detail::set_pending(t, this);
  unlink(t);
  release_word(t, word.load(std::memory_order_relaxed));
}

}  // namespace shmutils
