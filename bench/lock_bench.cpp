// Lock benchmarks: our robust Mutex against glibc's robust pthread mutex,
// Boost.Interprocess's interprocess_mutex (not robust) and a spinlock (the
// floor), all placed in one shared anonymous segment as real users would.
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <csignal>
#include <new>
#include <thread>
#include <vector>

#include "comparison.hpp"
#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/event.hpp"
#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::bench {
namespace {

struct OursLock {
  Mutex mutex;
  void lock() {
    if (mutex.acquire() == LockResult::OwnerDied) mutex.mark_consistent();
  }
  void unlock() { mutex.release(); }
};

struct PthreadRobustLock {
  pthread_mutex_t mutex;
  PthreadRobustLock() { sys::robust_mutex_init(&mutex, "bench"); }
  void lock() {
    if (sys::robust_mutex_lock(&mutex, "bench") == sys::RobustLockResult::OwnerDied) {
      sys::robust_mutex_consistent(&mutex, "bench");
    }
  }
  void unlock() { sys::robust_mutex_unlock(&mutex, "bench"); }
};

struct BoostLock {
  boost::interprocess::interprocess_mutex mutex;
  void lock() { mutex.lock(); }
  void unlock() { mutex.unlock(); }
};

struct SpinLock {
  std::atomic<std::uint32_t> flag{0};
  void lock() {
    while (flag.exchange(1, std::memory_order_acquire) != 0) {
      while (flag.load(std::memory_order_relaxed) != 0) __builtin_ia32_pause();
    }
  }
  void unlock() { flag.store(0, std::memory_order_release); }
};

// One shared segment for every benchmark, carved per use.
template <class T>
T* place_shared() {
  static Segment segment = Segment::create_anonymous(16 << 20);
  static std::size_t used = 0;
  std::byte* at = segment.user_area().data() + used;
  used += (sizeof(T) + 127) / 128 * 128;
  return new (at) T();
}

template <class Lock>
void uncontended(benchmark::State& state) {
  Lock* lock = place_shared<Lock>();
  for (auto _ : state) {
    lock->lock();
    lock->unlock();
  }
}

template <class Lock>
struct CounterUnderLock {
  Lock lock;
  std::uint64_t value = 0;
};

// Two processes each add `per_process` to a counter under the lock.
template <class Lock>
void contended_two_processes(benchmark::State& state) {
  auto* shared = place_shared<CounterUnderLock<Lock>>();
  const auto per_process = static_cast<std::uint64_t>(state.range(0));
  double seconds = 0;
  std::uint64_t increments = 0;
  for (auto _ : state) {
    shared->value = 0;
    std::uint64_t start = sys::monotonic_ns();
    std::vector<framework::ChildProcess> children;
    for (int p = 0; p < 2; ++p) {
      children.push_back(framework::ChildProcess::fork([shared, per_process] {
        for (std::uint64_t i = 0; i < per_process; ++i) {
          shared->lock.lock();
          ++shared->value;
          shared->lock.unlock();
        }
        return 0;
      }));
    }
    for (auto& child : children) child.wait();
    double took = static_cast<double>(sys::monotonic_ns() - start) / 1e9;
    state.SetIterationTime(took);
    if (shared->value != 2 * per_process) {
      state.SkipWithError("the counter is wrong: mutual exclusion failed");
      return;
    }
    seconds += took;
    increments += 2 * per_process;
  }
  state.counters["value"] = static_cast<double>(increments) / seconds / 1e6;
}

template <class Lock>
struct Victim {
  Lock lock;
  Event holding;
};

// Kill the holder while a waiter is blocked on the lock; time from kill() to
// the waiter holding the lock (with owner death reported).
template <class Lock>
void kill_to_next_acquire(benchmark::State& state) {
  auto* shared = place_shared<Victim<Lock>>();
  std::vector<double> samples_us;
  for (auto _ : state) {
    shared->holding.reset();
    auto holder = framework::ChildProcess::fork([shared] {
      shared->lock.lock();
      shared->holding.set();
      ::pause();
      return 0;
    });
    shared->holding.wait();
    std::atomic<std::uint64_t> acquired_at{0};
    std::thread waiter([&] {
      shared->lock.lock();  // blocks until the holder dies; repairs owner death
      acquired_at.store(sys::monotonic_ns());
      shared->lock.unlock();
    });
    sys::sleep_ns(1'000'000);  // let the waiter block in the kernel
    std::uint64_t killed_at = sys::monotonic_ns();
    sys::kill(holder.pid(), SIGKILL);
    waiter.join();
    holder.wait();
    double us = static_cast<double>(acquired_at.load() - killed_at) / 1e3;
    state.SetIterationTime(us / 1e6);
    samples_us.push_back(us);
  }
  std::sort(samples_us.begin(), samples_us.end());
  auto at = [&](double q) {
    return samples_us[std::min(
        samples_us.size() - 1,
        static_cast<std::size_t>(q * static_cast<double>(samples_us.size())))];
  };
  state.counters["median_us"] = at(0.5);
  state.counters["p99_us"] = at(0.99);
}

}  // namespace

void register_lock_benchmarks(bool quick) {
  const int repetitions = quick ? 1 : 5;
  const std::int64_t per_process = quick ? 200'000 : 1'000'000;
  const std::int64_t samples = quick ? 100 : 400;
  auto add_uncontended = [&](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)->Repetitions(repetitions)->MinTime(quick ? 0.05 : 0.2);
  };
  add_uncontended("uncontended/shmutils", &uncontended<OursLock>);
  add_uncontended("uncontended/pthread_robust", &uncontended<PthreadRobustLock>);
  add_uncontended("uncontended/boost", &uncontended<BoostLock>);
  add_uncontended("uncontended/spinlock", &uncontended<SpinLock>);
  auto add_contended = [&](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)
        ->Arg(per_process)
        ->UseManualTime()
        ->Iterations(quick ? 3 : 5)
        ->Repetitions(repetitions);
  };
  add_contended("contended_2proc/shmutils", &contended_two_processes<OursLock>);
  add_contended("contended_2proc/pthread_robust", &contended_two_processes<PthreadRobustLock>);
  add_contended("contended_2proc/boost", &contended_two_processes<BoostLock>);
  add_contended("contended_2proc/spinlock", &contended_two_processes<SpinLock>);
  benchmark::RegisterBenchmark("kill_recovery/shmutils", &kill_to_next_acquire<OursLock>)
      ->UseManualTime()
      ->Iterations(samples);
  benchmark::RegisterBenchmark("kill_recovery/pthread_robust",
                               &kill_to_next_acquire<PthreadRobustLock>)
      ->UseManualTime()
      ->Iterations(samples);
}

std::vector<RowSpec> lock_rows() {
  const std::optional<double> none;
  return {
      {"uncontended lock+unlock", "ns", "uncontended/shmutils", "boost interprocess_mutex",
       "uncontended/boost", false, 0.83},
      {"uncontended lock+unlock", "ns", "uncontended/shmutils", "pthread robust mutex",
       "uncontended/pthread_robust", false, none},
      {"uncontended lock+unlock", "ns", "uncontended/shmutils", "atomic spinlock (floor)",
       "uncontended/spinlock", false, none},
      {"2-process contended counter", "M/s", "contended_2proc/shmutils:value",
       "boost interprocess_mutex", "contended_2proc/boost:value", true, 1.0},
      {"2-process contended counter", "M/s", "contended_2proc/shmutils:value",
       "pthread robust mutex", "contended_2proc/pthread_robust:value", true, none},
      {"2-process contended counter", "M/s", "contended_2proc/shmutils:value",
       "atomic spinlock (floor)", "contended_2proc/spinlock:value", true, none},
      {"kill -> next acquire (owner died), median", "us", "kill_recovery/shmutils:median_us",
       "pthread robust mutex", "kill_recovery/pthread_robust:median_us", false, 0.5},
      {"kill -> next acquire (owner died), p99", "us", "kill_recovery/shmutils:p99_us",
       "pthread robust mutex", "kill_recovery/pthread_robust:p99_us", false, 0.5},
  };
}

}  // namespace shmutils::bench
