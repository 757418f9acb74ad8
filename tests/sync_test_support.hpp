// Scaffolding for the multi-process lock tests: a fresh anonymous segment per
// test (inherited by forked children, so nothing is ever left in /dev/shm),
// objects placed in it, and children that are waited for with a deadline and
// reported — with the lock holders — when they overrun.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <new>
#include <sstream>
#include <vector>

#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/event.hpp"
#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/segment.hpp"
#include "shmutils/shm/sys.hpp"

namespace shmutils::test {

class SyncTest : public ::testing::Test {
 protected:
  void SetUp() override { segment_ = Segment::create_anonymous(8 << 20); }

  // Constructs a T in the segment (each call gets fresh, 64-byte aligned space).
  template <class T, class... Args>
  T* make(Args&&... args) {
    std::byte* place = segment_.user_area().data() + used_;
    used_ += (sizeof(T) + 63) / 64 * 64;
    EXPECT_LE(used_, segment_.user_area().size());
    return new (place) T(std::forward<Args>(args)...);
  }

  // Describes who holds each watched lock, for deadline reports.
  void watch(std::string name, std::function<LockHolder()> holder) {
    watched_.emplace_back(std::move(name), std::move(holder));
  }
  std::string holders_report() const {
    std::ostringstream out;
    for (const auto& [name, holder] : watched_) {
      LockHolder h = holder();
      out << "  " << name << ": ";
      if (h.tid == 0) {
        out << "free";
      } else {
        out << "held by pid " << h.pid << " tid " << h.tid;
      }
      if (h.owner_died) out << " (owner died, repair pending)";
      out << "\n";
    }
    return out.str();
  }

  // Waits for a child; on overrun kills it and fails with the holders report.
  framework::ExitStatus finish(framework::ChildProcess& child,
                               std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
    auto status = child.wait_for(deadline);
    if (!status) {
      ADD_FAILURE() << "child " << child.pid() << " still running after " << deadline.count()
                    << " ms; lock holders:\n"
                    << holders_report();
      return child.kill();
    }
    return *status;
  }

  Segment segment_;
  std::size_t used_ = 0;
  std::vector<std::pair<std::string, std::function<LockHolder()>>> watched_;
};

// Waits for an event with a deadline; false (and a test failure) on timeout.
inline bool await(Event& event, std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  bool ok = event.wait_for(deadline);
  EXPECT_TRUE(ok) << "event not set within " << deadline.count() << " ms";
  return ok;
}

// Kills a child and reaps it.
inline void kill_now(framework::ChildProcess& child) {
  auto status = child.kill();
  EXPECT_EQ(status.signal, SIGKILL) << status.to_string();
}

}  // namespace shmutils::test
