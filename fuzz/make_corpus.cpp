// Writes seed inputs for the segment fuzzer: small but real segments (with a
// heap holding blocks, spans, cached objects, a named object, a dead process's
// slot), so the fuzzer starts from deep, valid states and mutates from there.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/segment.hpp"

using namespace shmutils;

namespace {

void save(const Segment& segment, const std::string& path) {
  FILE* out = std::fopen(path.c_str(), "wb");
  if (out == nullptr || std::fwrite(segment.base(), 1, segment.size(), out) != segment.size()) {
    std::fprintf(stderr, "make_corpus: cannot write %s\n", path.c_str());
    std::exit(1);
  }
  std::fclose(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  SegmentOptions plain;
  plain.max_processes = 2;
  save(Segment::create_anonymous(8192, plain), dir + "/plain");

  SegmentOptions small;
  small.heap = true;
  small.max_processes = 2;
  small.max_names = 4;
  small.user_size = 64;
  Segment empty = Segment::create_anonymous(256 * 1024, small);
  save(empty, dir + "/heap-empty");

  Segment used = Segment::create_anonymous(256 * 1024, small);
  Heap& heap = used.heap();
  for (std::size_t size : {24, 40, 100, 24, 3000, 40, 24, 700}) (void)heap.allocate(size);
  std::uint64_t big = heap.allocate(20'000);
  (void)heap.allocate(9'000, 256);
  heap.free(big);
  (void)used.names().construct<std::uint64_t>("answer", 42U);
  save(used, dir + "/heap-used");
  return 0;
}
