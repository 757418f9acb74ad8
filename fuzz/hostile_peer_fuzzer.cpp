// libFuzzer target: a hostile peer. A valid, live segment (a heap holding
// blocks, a named object, a Mutex in the user area) gets a fuzzer-chosen
// sequence of writes, as any process that may write the segment can make;
// then a victim process opens it and uses it: lock, allocate, free, find,
// audit, reap, detach. The victim may meet errors, never a crash, a sanitizer
// report or a hang.
//
// The victim runs in a forked child, with a deadline: its robust list and
// registry slot must not outlive the input, and a hang must end. Its coverage
// counters are copied back into this process before it exits, so libFuzzer is
// guided by what the victim executed.
//
// Input: records of [offset: 3 bytes][length-1: 1 byte][bytes]. The top bit of
// the offset's first byte makes the write "late": the victim makes it itself
// right after opening the segment, as a peer writing after the victim
// validated what it read.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <span>
#include <vector>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/mapping.hpp"
#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/segment.hpp"
#include "shmutils/shm/shm_object.hpp"

// SanitizerCoverage's inline 8-bit counters of this program (one section:
// the library is linked statically).
extern "C" std::uint8_t __start___sancov_cntrs[] __attribute__((weak));  // NOLINT
extern "C" std::uint8_t __stop___sancov_cntrs[] __attribute__((weak));   // NOLINT

namespace {

using namespace shmutils;
using namespace std::chrono_literals;

constexpr std::size_t kSegmentSize =
    256 * 1024;  // the least a heap for 4 processes takes, and some
constexpr std::uint64_t kVictimDeadlineNs = 10'000'000'000ULL;  // generous: bounded waits inside
constexpr int kVictimThrewOther = 3;

struct Write {
  bool late;
  std::size_t offset;
  std::span<const std::uint8_t> bytes;
};

std::vector<Write> parse_writes(const std::uint8_t* data, std::size_t size) {
  std::vector<Write> writes;
  std::size_t at = 0;
  while (at + 4 <= size && writes.size() < 256) {
    const bool late = (data[at] & 0x80U) != 0;
    const std::size_t offset =
        ((std::size_t{data[at] & 0x7fU} << 16) | (std::size_t{data[at + 1]} << 8) | data[at + 2]) %
        kSegmentSize;
    std::size_t length = std::size_t{data[at + 3]} % 16 + 1;
    at += 4;
    length = std::min({length, size - at, kSegmentSize - offset});
    writes.push_back({late, offset, {data + at, length}});
    at += length;
  }
  return writes;
}

void apply(std::byte* base, const std::vector<Write>& writes, bool late) {
  for (const Write& w : writes) {
    if (w.late == late) std::memcpy(base + w.offset, w.bytes.data(), w.bytes.size());
  }
}

// The coverage counters' copy the victim hands back.
std::span<std::uint8_t> counters() {
  if (__start___sancov_cntrs == nullptr || __stop___sancov_cntrs == nullptr) return {};
  return {__start___sancov_cntrs,
          static_cast<std::size_t>(__stop___sancov_cntrs - __start___sancov_cntrs)};
}

Mapping& coverage_exchange() {
  static Mapping exchange = [] {
    ShmObject object = ShmObject::create_anonymous("shmutils-fuzz-coverage");
    const std::size_t size = std::max<std::size_t>(counters().size(), 1);
    object.resize(size);
    return Mapping::map({.size = size, .fd = object.fd(), .name = "coverage exchange"});
  }();
  return exchange;
}

struct LiveState {
  std::vector<std::uint64_t> blocks;  // allocated before the writes
};

// What a process using the segment does; every Error is an acceptable answer.
void victim_operations(const Segment& original, const std::vector<Write>& writes,
                       const LiveState& state) {
  SegmentOptions options;
  options.lock_timeout = 50ms;
  options.init_timeout = 50ms;
  Segment segment = Segment::adopt(
      ShmObject::adopt(sys::dup_cloexec(original.fd(), "fuzz"), "hostile", true, true), options);
  apply(original.base(), writes, /*late=*/true);
  auto attempt = [](auto&& operation) {
    try {
      operation();
    } catch (const Error&) {
      // refused: the expected answer to a damaged segment
    }
  };
  attempt([&] {
    std::span<std::byte> user = segment.user_area();
    if (user.size() < sizeof(Mutex)) return;
    auto* lock = reinterpret_cast<Mutex*>(user.data());
    LockResult result = lock->acquire_for(20ms);
    if (result == LockResult::OwnerDied) lock->mark_consistent();
    if (holds_lock(result)) lock->release();
  });
  if (!segment.has_heap()) return;
  Heap& heap = segment.heap();
  attempt([&] { heap.free(heap.allocate(64)); });
  attempt([&] { heap.free(heap.allocate(5000, 256)); });
  for (std::uint64_t block : state.blocks) attempt([&] { heap.free(block); });
  attempt([&] { (void)heap.audit(100); });
  attempt([&] { (void)heap.stats(); });
  attempt([&] { (void)heap.dump(); });
  attempt([&] {
    if (auto* answer = segment.names().find<std::uint64_t>("answer")) (void)*answer;
  });
  attempt([&] { (void)segment.names().construct<std::uint64_t>("another", 7U); });
  attempt([&] { (void)segment.reap_dead(); });
}

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "hostile peer: the victim %s\n", what);
  std::abort();  // libFuzzer keeps the input
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<Write> writes = parse_writes(data, size);
  SegmentOptions options;
  options.heap = true;
  options.max_processes = 4;
  options.max_names = 4;
  options.user_size = 256;
  options.lock_timeout = 50ms;
  Segment segment = Segment::create_anonymous(kSegmentSize, options);
  new (segment.user_area().data()) Mutex();
  LiveState state;
  Heap& heap = segment.heap();
  for (std::size_t bytes : {24, 100, 3000, 40}) state.blocks.push_back(heap.allocate(bytes));
  heap.free(state.blocks.back());
  state.blocks.pop_back();
  (void)segment.names().construct<std::uint64_t>("answer", 42U);
  heap.flush_cache();
  apply(segment.base(), writes, /*late=*/false);

  Mapping& exchange = coverage_exchange();
  std::memset(exchange.data(), 0, exchange.size());
  const pid_t victim = sys::fork("hostile-peer victim");
  if (victim == 0) {
    sys::set_parent_death_signal(SIGKILL);
    int code = 0;
    try {
      victim_operations(segment, writes, state);
    } catch (const Error&) {
      // opening refused
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hostile peer: the victim threw %s\n", e.what());
      code = kVictimThrewOther;
    }
    std::span<std::uint8_t> mine = counters();
    if (!mine.empty()) std::memcpy(exchange.data(), mine.data(), mine.size());
    sys::exit_now(code);
  }
  const std::uint64_t deadline = sys::monotonic_ns() + kVictimDeadlineNs;
  std::optional<sys::ExitStatus> status;
  while (!(status = sys::wait_nohang(victim)) && sys::monotonic_ns() < deadline) {
    sys::sleep_ns(100'000);
  }
  if (!status) {
    (void)sys::kill(victim, SIGKILL);
    (void)sys::wait(victim);
    finding("hung (10 s)");
  }
  if (!status->success()) {
    std::fprintf(stderr, "hostile peer: %s\n", status->to_string().c_str());
    finding("crashed or threw something other than shmutils::Error");
  }
  std::span<std::uint8_t> mine = counters();
  const auto* theirs = reinterpret_cast<const std::uint8_t*>(exchange.data());
  for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = std::max(mine[i], theirs[i]);
  return 0;
}
