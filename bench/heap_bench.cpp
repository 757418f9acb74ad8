// Allocator benchmarks: our heap against Boost.Interprocess's
// managed_shared_memory (the shared-memory peer), glibc malloc (the limit:
// process-private, no crash safety) and Boost's node_allocator for fixed-size
// nodes; and our offset_ptr walking a linked list against a raw pointer and
// boost::interprocess::offset_ptr.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/interprocess/allocators/node_allocator.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/offset_ptr.hpp>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "comparison.hpp"
#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/offset_ptr.hpp"
#include "shmutils/shm/segment.hpp"

namespace shmutils::bench {
namespace {

namespace bip = boost::interprocess;

constexpr std::size_t kLive = 10'000;
constexpr std::size_t kScript = 1 << 16;  // pre-drawn (index, size) pairs

struct Script {
  std::vector<std::uint32_t> index;
  std::vector<std::uint32_t> size;
  explicit Script(std::uint32_t min_size, std::uint32_t max_size) {
    std::mt19937 random(7);
    std::uniform_int_distribution<std::uint32_t> pick(0, kLive - 1);
    std::uniform_int_distribution<std::uint32_t> bytes(min_size, max_size);
    for (std::size_t i = 0; i < kScript; ++i) {
      index.push_back(pick(random));
      size.push_back(bytes(random));
    }
  }
};

// --- the allocators, behind one shape: allocate(size) -> handle, release ---

struct OursHeap {
  Segment segment;
  explicit OursHeap(Segment attached) : segment(std::move(attached)) {}
  std::uint64_t allocate(std::size_t size) { return segment.heap().allocate(size); }
  void release(std::uint64_t block) { segment.heap().free(block); }
};

struct BoostManaged {
  bip::managed_shared_memory* memory;
  void* allocate(std::size_t size) { return memory->allocate(size); }
  void release(void* block) { memory->deallocate(block); }
};

struct Malloc {
  void* allocate(std::size_t size) { return std::malloc(size); }
  void release(void* block) { std::free(block); }
};

using BoostNodeAllocator =
    bip::node_allocator<std::array<std::byte, 64>, bip::managed_shared_memory::segment_manager>;
struct BoostNodes {
  BoostNodeAllocator* nodes;
  BoostNodeAllocator::pointer allocate(std::size_t) { return nodes->allocate(1); }
  void release(const BoostNodeAllocator::pointer& block) { nodes->deallocate(block, 1); }
};

// Replaces a random one of kLive live blocks, `steps` times; returns the ns
// the replacing took (filling and emptying are not timed, for anyone).
template <class Allocator>
std::uint64_t churn(Allocator& allocator, const Script& script, std::uint64_t steps) {
  using Handle = decltype(allocator.allocate(16));
  std::vector<Handle> live(kLive);
  for (std::size_t i = 0; i < kLive; ++i) live[i] = allocator.allocate(script.size[i % kScript]);
  std::uint64_t start = sys::monotonic_ns();
  for (std::uint64_t s = 0; s < steps; ++s) {
    std::size_t at = s % kScript;
    Handle& slot = live[script.index[at]];
    allocator.release(slot);
    slot = allocator.allocate(script.size[at]);
    benchmark::DoNotOptimize(slot);
  }
  std::uint64_t took = sys::monotonic_ns() - start;
  for (Handle& block : live) allocator.release(block);
  return took;
}

// Shared state every benchmark here uses: our heap segment and Boost's.
struct Arena {
  Segment ours;
  std::string boost_name = "/shmutils-bench-boost-" + std::to_string(sys::getpid());
  bip::managed_shared_memory boost;
  BoostNodeAllocator nodes;
  // Per-process loop times of the multi-process runs.
  Mapping results = Mapping::map({.size = 4096,
                                  .protection = Protection::ReadWrite,
                                  .flags = MapFlags::Shared | MapFlags::Anonymous});
  Arena()
      : ours(Segment::create_anonymous(256 << 20, {.heap = true})),
        boost(fresh(boost_name), boost_name.c_str() + 1, 256 << 20),
        nodes(boost.get_segment_manager()) {}
  ~Arena() { bip::shared_memory_object::remove(boost_name.c_str() + 1); }
  static bip::create_only_t fresh(const std::string& name) {
    bip::shared_memory_object::remove(name.c_str() + 1);  // a crashed earlier run's
    return bip::create_only;
  }
  std::atomic<std::uint64_t>* loop_ns() {
    return reinterpret_cast<std::atomic<std::uint64_t>*>(results.data());
  }
};
Arena& arena() {
  static Arena instance;
  return instance;
}

const Script& random_sizes() {
  static const Script script(16, 4096);
  return script;
}
const Script& fixed_64() {
  static const Script script(64, 64);
  return script;
}

// Pairs of free + allocate per second (millions), `processes` at once, each
// with its own kLive blocks.
template <class MakeAllocator>
void pairs_per_second(benchmark::State& state, unsigned processes, const Script& script,
                      MakeAllocator make) {
  const auto steps = static_cast<std::uint64_t>(state.range(0));
  double rate_sum = 0;  // M pairs/s, summed over the processes, per iteration
  for (auto _ : state) {
    std::atomic<std::uint64_t>* loop_ns = arena().loop_ns();
    if (processes == 1) {
      auto allocator = make();
      loop_ns[0] = churn(allocator, script, steps);
    } else {
      std::vector<framework::ChildProcess> children;
      for (unsigned p = 0; p < processes; ++p) {
        children.push_back(framework::ChildProcess::fork([&, p] {
          auto allocator = make();
          loop_ns[p] = churn(allocator, script, steps);
          return 0;
        }));
      }
      for (auto& child : children) {
        if (!child.wait().success()) state.SkipWithError("a benchmark child failed");
      }
    }
    std::uint64_t longest = 0;
    for (unsigned p = 0; p < processes; ++p) {
      rate_sum += static_cast<double>(steps) / static_cast<double>(loop_ns[p]) * 1e3;
      longest = std::max<std::uint64_t>(longest, loop_ns[p]);
    }
    state.SetIterationTime(static_cast<double>(longest) / 1e9);
  }
  state.counters["value"] = rate_sum / static_cast<double>(state.iterations());
}

// In a forked child, our heap needs the child's own attachment.
OursHeap ours_here() { return OursHeap(Segment::attach(arena().ours.descriptor())); }

void random_ours_1(benchmark::State& s) { pairs_per_second(s, 1, random_sizes(), ours_here); }
void random_ours_2(benchmark::State& s) { pairs_per_second(s, 2, random_sizes(), ours_here); }
void random_boost_1(benchmark::State& s) {
  pairs_per_second(s, 1, random_sizes(), [] { return BoostManaged{&arena().boost}; });
}
void random_boost_2(benchmark::State& s) {
  pairs_per_second(s, 2, random_sizes(), [] { return BoostManaged{&arena().boost}; });
}
void random_malloc_1(benchmark::State& s) {
  pairs_per_second(s, 1, random_sizes(), [] { return Malloc{}; });
}
void random_malloc_2(benchmark::State& s) {
  pairs_per_second(s, 2, random_sizes(), [] { return Malloc{}; });
}
void fixed_ours(benchmark::State& s) { pairs_per_second(s, 1, fixed_64(), ours_here); }
void fixed_boost_nodes(benchmark::State& s) {
  pairs_per_second(s, 1, fixed_64(), [] { return BoostNodes{&arena().nodes}; });
}

// --- linked-list walks ------------------------------------------------------

constexpr std::size_t kNodes = 4096;  // 64 KiB of nodes: in cache

struct OursNode {
  offset_ptr<OursNode> next;
  std::uint64_t value;
};
struct RawNode {
  RawNode* next;
  std::uint64_t value;
};
struct BoostNode {
  bip::offset_ptr<BoostNode> next;
  std::uint64_t value;
};
const OursNode* follow(const offset_ptr<OursNode>& link) { return link.get(); }
const RawNode* follow(RawNode* link) { return link; }
const BoostNode* follow(const bip::offset_ptr<BoostNode>& link) { return link.get(); }

// Links kNodes nodes (one array) in a shuffled order; ns per node of a walk.
template <class NodeType>
void walk(benchmark::State& state) {
  static std::vector<NodeType>* nodes = [] {
    auto* made = new std::vector<NodeType>(kNodes);
    std::vector<std::size_t> order(kNodes);
    for (std::size_t i = 0; i < kNodes; ++i) order[i] = i;
    std::shuffle(order.begin() + 1, order.end(), std::mt19937(3));
    for (std::size_t i = 0; i < kNodes; ++i) {
      (*made)[order[i]].value = i;
      (*made)[order[i]].next = i + 1 < kNodes ? &(*made)[order[i + 1]] : nullptr;
    }
    return made;
  }();
  std::uint64_t start = sys::monotonic_ns();
  for (auto _ : state) {
    std::uint64_t sum = 0;
    for (const NodeType* at = &(*nodes)[0]; at != nullptr; at = follow(at->next)) sum += at->value;
    benchmark::DoNotOptimize(sum);
  }
  double ns = static_cast<double>(sys::monotonic_ns() - start);
  state.counters["value"] =
      ns / (static_cast<double>(kNodes) * static_cast<double>(state.iterations()));
}

}  // namespace

void register_heap_benchmarks(bool quick) {
  const int repetitions = quick ? 1 : 5;
  const std::int64_t steps = quick ? 200'000 : 1'000'000;
  auto add = [&](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)
        ->Arg(steps)
        ->UseManualTime()
        ->Iterations(quick ? 2 : 3)
        ->Repetitions(repetitions)
        ->Unit(benchmark::kMillisecond);
  };
  add("heap_random_1proc/shmutils", &random_ours_1);
  add("heap_random_1proc/boost_managed", &random_boost_1);
  add("heap_random_1proc/malloc", &random_malloc_1);
  add("heap_random_2proc/shmutils", &random_ours_2);
  add("heap_random_2proc/boost_managed", &random_boost_2);
  add("heap_random_2proc/malloc", &random_malloc_2);
  add("heap_fixed64/shmutils", &fixed_ours);
  add("heap_fixed64/boost_node_allocator", &fixed_boost_nodes);
  auto add_walk = [&](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)->Repetitions(repetitions)->MinTime(quick ? 0.05 : 0.2);
  };
  add_walk("list_walk/shmutils_offset_ptr", &walk<OursNode>);
  add_walk("list_walk/raw_pointer", &walk<RawNode>);
  add_walk("list_walk/boost_offset_ptr", &walk<BoostNode>);
}

std::vector<RowSpec> heap_rows() {
  const std::optional<double> none;
  return {
      {"random 16-4096 B alloc+free, 10k live, 1 process", "M/s",
       "heap_random_1proc/shmutils:value", "boost managed_shared_memory",
       "heap_random_1proc/boost_managed:value", true, 5.0},
      {"random 16-4096 B alloc+free, 10k live, 1 process", "M/s",
       "heap_random_1proc/shmutils:value", "glibc malloc (the limit)",
       "heap_random_1proc/malloc:value", true, 0.5},
      {"random 16-4096 B alloc+free, 10k live, 2 processes", "M/s",
       "heap_random_2proc/shmutils:value", "boost managed_shared_memory",
       "heap_random_2proc/boost_managed:value", true, 10.0},
      {"random 16-4096 B alloc+free, 10k live, 2 processes", "M/s",
       "heap_random_2proc/shmutils:value", "glibc malloc (the limit)",
       "heap_random_2proc/malloc:value", true, none},
      {"64 B fixed-size alloc+free, 10k live", "M/s", "heap_fixed64/shmutils:value",
       "boost node_allocator", "heap_fixed64/boost_node_allocator:value", true, 1.0},
      {"linked-list walk, 4096 nodes in cache", "ns/node", "list_walk/shmutils_offset_ptr:value",
       "raw pointer", "list_walk/raw_pointer:value", false, 0.67},
      {"linked-list walk, 4096 nodes in cache", "ns/node", "list_walk/shmutils_offset_ptr:value",
       "boost::interprocess::offset_ptr", "list_walk/boost_offset_ptr:value", false, none},
  };
}

}  // namespace shmutils::bench
