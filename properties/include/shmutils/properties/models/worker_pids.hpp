// shmutils::properties::models::WorkerPids — which worker process is which:
// a spec's run() records its pid under its worker number, so observe() (in
// the controller) can name the worker a lock's holder pid belongs to.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>

namespace shmutils::properties::models {

struct WorkerPids {
  static constexpr int kNone = -1;
  std::array<std::atomic<pid_t>, 16> pids;

  // Records this process as worker `worker`.
  void record(unsigned worker) noexcept;
  // The worker whose process is pid, or kNone.
  int worker_of(pid_t pid) const noexcept {
    for (std::size_t i = 0; i < pids.size(); ++i)
      if (pid != 0 && pids[i].load(std::memory_order_relaxed) == pid) return static_cast<int>(i);
    return kNone;
  }
};

}  // namespace shmutils::properties::models
