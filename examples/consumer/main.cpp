// Shares a counter with a forked child through an anonymous segment.
#include <cstdio>
#include <shmutils/framework/child_process.hpp>
#include <shmutils/shm/offset_ptr.hpp>
#include <shmutils/shm/segment.hpp>

int main() {
  auto segment = shmutils::Segment::create_anonymous(1 << 20);
  auto* value = reinterpret_cast<long*>(segment.user_area().data());
  shmutils::offset_ptr<long> link = value;
  auto child = shmutils::framework::ChildProcess::fork([&] {
    *link = 42;
    return 0;
  });
  auto status = child.wait_for(std::chrono::seconds(10));
  std::printf("child %s, value %ld\n", status ? status->to_string().c_str() : "hung", *value);
  return status && status->success() && *value == 42 ? 0 : 1;
}
