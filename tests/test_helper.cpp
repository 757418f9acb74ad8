// shmutils_test_helper — exec'd by pass_to_process_test. Attaches to a
// segment from a typed handle given as text in argv, walks the list there and
// changes it. Before attaching it reserves the parent's address range, so the
// segment is certainly mapped somewhere else.
//
//   shmutils_test_helper HANDLE PARENT_BASE_HEX PARENT_SIZE
#include <cstdio>
#include <cstdlib>
#include <string>

#include "linked_list.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/mapping.hpp"
#include "shmutils/shm/segment_handle.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s HANDLE PARENT_BASE_HEX PARENT_SIZE\n", argv[0]);
    return 64;
  }
  try {
    auto handle = shmutils::PortableHandle<shmutils::test::ListRoot>::parse(argv[1]);
    // NOLINTNEXTLINE(performance-no-int-to-ptr): an address of the parent, kept free here
    void* parent_base = reinterpret_cast<void*>(std::strtoull(argv[2], nullptr, 16));
    std::size_t parent_size = std::strtoull(argv[3], nullptr, 10);
    shmutils::Mapping guard;
    try {
      guard = shmutils::Mapping::map(
          {.size = parent_size,
           .protection = shmutils::Protection::None,
           .flags = shmutils::MapFlags::Private | shmutils::MapFlags::FixedNoReplace,
           .hint = parent_base,
           .name = "parent's range"});
    } catch (const shmutils::Error&) {
      // Something of ours already sits there: the segment cannot land there either.
    }
    shmutils::Segment segment = shmutils::Segment::attach(handle.segment);
    if (segment.base() == parent_base) return 6;
    return shmutils::test::walk_and_change(segment, handle.resolve(segment), 0);
  } catch (const shmutils::Error& e) {
    std::fprintf(stderr, "helper: %s\n", e.what());
    return 2;
  }
}
