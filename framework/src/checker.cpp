#include "checker.hpp"

#include <cstring>
#include <exception>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/shm_object.hpp"

namespace shmutils::framework::detail {
namespace {

constexpr std::byte kBetweenKills{0};
constexpr std::byte kFinal{1};
// A reply's bound: a scenario that returns more is cut, not trusted.
constexpr std::uint32_t kMaxViolations = 1000;
constexpr std::uint32_t kMaxViolationBytes = 64 << 10;

template <class T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

// The checker's reply: leaked bytes, the count, then each violation with its length.
std::string encode(const Checker::Result& result) {
  std::string out;
  put(out, result.leaked_bytes);
  auto count =
      static_cast<std::uint32_t>(std::min<std::size_t>(result.violations.size(), kMaxViolations));
  put(out, count);
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::string& text = result.violations[i];
    auto length =
        static_cast<std::uint32_t>(std::min<std::size_t>(text.size(), kMaxViolationBytes));
    put(out, length);
    out.append(text, 0, length);
  }
  return out;
}

template <class T>
bool get(int fd, T& value) {
  return sys::read_exact(fd, std::as_writable_bytes(std::span(&value, 1)));
}

bool decode(int fd, Checker::Result& result) {
  std::uint32_t count = 0;
  if (!get(fd, result.leaked_bytes) || !get(fd, count) || count > kMaxViolations) return false;
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint32_t length = 0;
    if (!get(fd, length) || length > kMaxViolationBytes) return false;
    std::string text(length, '\0');
    if (!sys::read_exact(fd, std::as_writable_bytes(std::span(text.data(), text.size()))))
      return false;
    result.violations.push_back(std::move(text));
  }
  return true;
}

// The checker's loop: a check per request until the harness closes the pipe.
int serve_checks(Scenario& scenario, Segment& inherited, Witness& witness, int requests,
                 int replies) {
  // An attachment of its own: the inherited one is the harness's (its
  // registry slot, its heap cache), and locks and caches the checker takes
  // must be the checker's.
  Segment segment = Segment::adopt(
      ShmObject::adopt(sys::dup_cloexec(inherited.fd(), "segment"), inherited.name(), true, true));
  for (;;) {
    std::byte request{};
    if (sys::read_some(requests, std::span(&request, 1)) == 0) return 0;
    const bool final = request == kFinal;
    Checker::Result result;
    try {
      result.violations = scenario.check(segment, witness, final);
      if (final) result.leaked_bytes = scenario.leaked_bytes(segment, witness);
    } catch (const std::exception& e) {
      result.violations.push_back(std::string(final ? "the final" : "a") +
                                  " check threw: " + e.what());
    }
    if (!sys::write_all(replies, encode(result))) return 1;
  }
}

}  // namespace

Checker::Checker(Scenario& scenario, Segment& segment, Witness& witness) {
  auto [request_read, request_write] = sys::pipe();
  auto [reply_read, reply_write] = sys::pipe();
  const int requests = request_read.get();
  const int replies = reply_write.get();
  process_ = SupervisedChild::fork([&scenario, &segment, &witness, requests, replies] {
    return serve_checks(scenario, segment, witness, requests, replies);
  });
  requests_ = std::move(request_write);
  replies_ = std::move(reply_read);
}

Checker::~Checker() {
  requests_ = UniqueFd();  // the checker's read ends: it exits
  if (process_.running()) {
    try {
      (void)process_.kill();
    } catch (const Error&) {  // a destructor must not throw; the child dies with us anyway
    }
  }
}

Checker::Outcome Checker::check(bool final, std::chrono::milliseconds bound, Result& result,
                                const std::function<void()>& meanwhile) {
  const std::byte request = final ? kFinal : kBetweenKills;
  if (!sys::write_all(requests_.get(),
                      std::string_view(reinterpret_cast<const char*>(&request), 1))) {
    (void)process_.kill();
    return Outcome::Crashed;
  }
  const std::uint64_t deadline =
      sys::monotonic_ns() + static_cast<std::uint64_t>(bound.count()) * 1'000'000ULL;
  // In slices: a crashed checker stops itself (for its stack) and never
  // closes the pipe, so poll it between waits.
  for (;;) {
    if (sys::wait_readable(replies_.get(), 10)) {
      if (decode(replies_.get(), result)) return Outcome::Done;
      // The pipe ended mid-reply: the checker died; say how below.
    }
    SupervisedChild::State state = process_.poll();
    if (state == SupervisedChild::State::Crashed || state == SupervisedChild::State::Exited)
      return Outcome::Crashed;
    meanwhile();
    if (sys::monotonic_ns() >= deadline) {
      (void)process_.hang();  // its stack, then SIGKILL
      return Outcome::Blocked;
    }
  }
}

std::string Checker::ending() const {
  if (process_.crash_signal() != 0)
    return "crashed with " + std::string(signal_name(process_.crash_signal()));
  if (process_.status()) return process_.status()->to_string();
  return "killed";
}

}  // namespace shmutils::framework::detail
