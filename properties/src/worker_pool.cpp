#include "shmutils/properties/worker_pool.hpp"

#include <array>
#include <csignal>
#include <cstring>
#include <optional>
#include <random>
#include <span>

#include "shmutils/framework/address_perturbation.hpp"
#include "shmutils/framework/kill_at.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"

namespace shmutils::properties {
namespace {

// Wire format. Request: the task's address, the kill hit and the worker's
// index. Reply: one kind byte, a 4-byte length, that many bytes. A crash
// sends no reply: the worker's supervision reports it.
enum ReplyKind : char { kDone = 'D', kFailed = 'F', kKilled = 'K' };

struct Request {
  const RemoteTask* task;
  std::uint64_t kill_at_hit;
};

bool send_reply(int fd, char kind, std::string_view body) noexcept {
  std::array<char, 5> head{kind};
  auto length = static_cast<std::uint32_t>(body.size());
  std::memcpy(head.data() + 1, &length, sizeof length);
  return sys::write_all(fd, std::string_view(head.data(), head.size())) && sys::write_all(fd, body);
}

// Tells the pool where the planned death came, just before it comes.
void report_kill(const FaultPoint& point, void* replies) noexcept {
  (void)send_reply(*static_cast<int*>(replies), kKilled, point.name());
}

int worker_main(Segment& inherited, std::uint64_t seed, int requests, int replies) {
  std::mt19937_64 random(seed);
  Segment segment = framework::attach_perturbed(inherited, random);
  for (unsigned worker = 0;;) {
    Request request{};
    std::array<std::byte, sizeof(Request) + sizeof(unsigned)> bytes{};
    if (!sys::read_exact(requests, bytes)) return 0;  // the pool closed: done
    std::memcpy(&request, bytes.data(), sizeof request);
    std::memcpy(&worker, bytes.data() + sizeof request, sizeof worker);
    std::string reply;
    try {
      framework::ScopedKillAt planned({}, request.kill_at_hit, framework::Death::Kill, &report_kill,
                                      &replies);
      reply = request.task->execute(segment, worker);
    } catch (const std::exception& e) {
      send_reply(replies, kFailed, std::string("exception: ") + e.what());
      continue;
    }
    send_reply(replies, kDone, reply);
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
  std::uint64_t seed = framework::derive_seed(seed_, ++forks_);
  int requests = request_read.get();
  int replies = reply_write.get();
  slot.process = framework::SupervisedChild::fork(
      [&, seed, requests, replies] { return worker_main(segment_, seed, requests, replies); });
  slot.requests = std::move(request_write);
  slot.replies = std::move(reply_read);
  return slot;
}

// Waits for the worker's reply; the outcome when it crashed or hung instead.
std::optional<TaskOutcome> WorkerPool::await_reply(Worker& slot) {
  const std::uint64_t deadline_ns =
      sys::monotonic_ns() + static_cast<std::uint64_t>(task_deadline_.count()) * 1'000'000;
  while (!sys::wait_readable(slot.replies.get(), 5)) {
    TaskOutcome outcome;
    if (slot.process.poll() == framework::SupervisedChild::State::Crashed) {
      outcome.kind = TaskOutcome::Kind::Crashed;
      outcome.signal = slot.process.crash_signal();
      outcome.stack = slot.process.stack();
      return outcome;
    }
    if (sys::monotonic_ns() > deadline_ns) {
      slot.process.hang();
      outcome.kind = TaskOutcome::Kind::Hung;
      outcome.stack = slot.process.stack();
      return outcome;
    }
  }
  return std::nullopt;
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
  if (auto ended = await_reply(slot)) return *ended;
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
    default: throw Error(ErrorKind::System, "worker pool", "read reply", "an unknown reply kind");
  }
  return outcome;
}

void WorkerPool::kill(unsigned worker) {
  if (worker < workers_.size() && workers_[worker].process.running())
    workers_[worker].process.kill();
}

}  // namespace shmutils::properties
