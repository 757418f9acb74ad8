#include "shmutils/properties/worker_pool.hpp"

#include <array>
#include <csignal>
#include <cstring>
#include <random>
#include <span>

#include "shmutils/framework/address_perturbation.hpp"
#include "shmutils/framework/stack_capture.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/sys.hpp"

namespace shmutils::properties {
namespace {

// Wire format. Request: the task's address and the kill hit (2 x 8 bytes).
// Reply: one kind byte, a 4-byte length, that many bytes.
enum ReplyKind : char { kDone = 'D', kFailed = 'F', kKilled = 'K', kCrashed = 'C' };

struct Request {
  const RemoteTask* task;
  std::uint64_t kill_at_hit;
};

// Worker-process globals: the fault hook and the crash handler must be plain
// functions (FaultHook is a function pointer; a signal handler too).
int g_reply_fd = -1;
std::uint64_t g_kill_at_hit = 0;
std::uint64_t g_hits = 0;

bool send_reply(char kind, std::string_view body) noexcept {
  std::array<char, 5> head{kind};
  auto length = static_cast<std::uint32_t>(body.size());
  std::memcpy(head.data() + 1, &length, sizeof length);
  return sys::write_all(g_reply_fd, std::string_view(head.data(), head.size())) &&
         sys::write_all(g_reply_fd, body);
}

FaultAction kill_at_planned_hit(const FaultPoint& point, std::uint64_t) {
  if (g_kill_at_hit != 0 && ++g_hits == g_kill_at_hit) {
    (void)send_reply(kKilled, point.name());
    sys::raise_signal(SIGKILL);
  }
  return FaultAction::Continue;
}

void crash_handler(int signal) {
  char number = static_cast<char>(signal);
  (void)send_reply(kCrashed, std::string_view(&number, 1));
  sys::raise_signal(SIGSTOP);  // the pool captures this stack, then kills
  sys::set_signal_handler(signal, SIG_DFL, 0);
  sys::raise_signal(signal);
}

int worker_main(Segment& inherited, std::uint64_t seed, int requests, int replies) {
  g_reply_fd = replies;
  for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT})
    sys::set_signal_handler(signal, &crash_handler, static_cast<int>(SA_RESETHAND | SA_NODEFER));
  std::mt19937_64 random(seed);
  Segment segment = framework::attach_perturbed(inherited, random);
  set_fault_hook(&kill_at_planned_hit);
  for (unsigned worker = 0;;) {
    Request request{};
    std::array<std::byte, sizeof(Request) + sizeof(unsigned)> bytes{};
    if (!sys::read_exact(requests, bytes)) return 0;  // the pool closed: done
    std::memcpy(&request, bytes.data(), sizeof request);
    std::memcpy(&worker, bytes.data() + sizeof request, sizeof worker);
    g_hits = 0;
    g_kill_at_hit = request.kill_at_hit;
    std::string reply;
    try {
      reply = request.task->execute(segment, worker);
    } catch (const std::exception& e) {
      g_kill_at_hit = 0;
      send_reply(kFailed, std::string("exception: ") + e.what());
      continue;
    }
    g_kill_at_hit = 0;
    send_reply(kDone, reply);
  }
}

}  // namespace

WorkerPool::WorkerPool(Segment& segment, std::uint64_t seed,
                       std::chrono::milliseconds task_deadline)
    : segment_(segment), seed_(seed), task_deadline_(task_deadline) {}

WorkerPool::~WorkerPool() {
  for (Worker& worker : workers_) {
    if (worker.process.running()) worker.process.kill();
  }
}

WorkerPool::Worker& WorkerPool::ensure(unsigned worker) {
  if (workers_.size() <= worker) workers_.resize(worker + 1);
  Worker& slot = workers_[worker];
  if (slot.process.running()) return slot;
  auto [request_read, request_write] = sys::pipe();
  auto [reply_read, reply_write] = sys::pipe();
  std::uint64_t seed = seed_ ^ (0x9E3779B97F4A7C15ULL * ++forks_);
  int requests = request_read.get();
  int replies = reply_write.get();
  slot.process = framework::ChildProcess::fork(
      [&, seed, requests, replies] { return worker_main(segment_, seed, requests, replies); });
  slot.requests = std::move(request_write);
  slot.replies = std::move(reply_read);
  return slot;
}

TaskOutcome WorkerPool::run(unsigned worker, const RemoteTask& task, std::uint64_t kill_at_hit) {
  Worker& slot = ensure(worker);
  Request request{&task, kill_at_hit};
  std::array<char, sizeof(Request) + sizeof(unsigned)> bytes{};
  std::memcpy(bytes.data(), &request, sizeof request);
  std::memcpy(bytes.data() + sizeof request, &worker, sizeof worker);
  TaskOutcome outcome;
  if (!sys::write_all(slot.requests.get(), std::string_view(bytes.data(), bytes.size()))) {
    outcome.kind = TaskOutcome::Kind::Failed;
    outcome.reply = "worker " + std::to_string(worker) + " is gone before its task";
    return outcome;
  }
  if (!sys::wait_readable(slot.replies.get(), static_cast<int>(task_deadline_.count()))) {
    outcome.kind = TaskOutcome::Kind::Hung;
    outcome.stack = framework::capture_stack(slot.process.pid()).to_string();
    slot.process.kill();
    return outcome;
  }
  std::array<std::byte, 5> head{};
  if (!sys::read_exact(slot.replies.get(), head)) {
    outcome.kind = TaskOutcome::Kind::Failed;
    outcome.reply = "worker " + std::to_string(worker) + " ended without a reply (" +
                    slot.process.wait().to_string() + ")";
    return outcome;
  }
  std::uint32_t length = 0;
  std::memcpy(&length, head.data() + 1, sizeof length);
  std::string body(length, '\0');
  if (!sys::read_exact(slot.replies.get(), std::as_writable_bytes(std::span(body))))
    throw Error(ErrorKind::System, "worker pool", "read reply", "a reply was cut short");
  switch (static_cast<char>(head[0])) {
    case kDone:
      outcome.kind = TaskOutcome::Kind::Done;
      outcome.reply = std::move(body);
      break;
    case kFailed:
      outcome.kind = TaskOutcome::Kind::Failed;
      outcome.reply = std::move(body);
      break;
    case kKilled:
      outcome.kind = TaskOutcome::Kind::Killed;
      outcome.point = std::move(body);
      slot.process.wait();
      break;
    case kCrashed: {
      outcome.kind = TaskOutcome::Kind::Crashed;
      outcome.signal = body.empty() ? 0 : body[0];
      // Wait for the handler's stop, so the stack is the faulting one.
      for (int i = 0; i < 2000 && slot.process.poll() == framework::ChildProcess::State::Running;
           ++i)
        sys::sleep_ns(1'000'000);
      outcome.stack = framework::capture_stack(slot.process.pid()).to_string();
      slot.process.kill();
      break;
    }
    default: throw Error(ErrorKind::System, "worker pool", "read reply", "an unknown reply kind");
  }
  return outcome;
}

void WorkerPool::kill(unsigned worker) {
  if (worker < workers_.size() && workers_[worker].process.running())
    workers_[worker].process.kill();
}

}  // namespace shmutils::properties
