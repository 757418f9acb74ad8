#include "shmutils/shm/process_registry.hpp"

#include <fcntl.h>
#include <pthread.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/mapping_registry.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_registry_after_claim, "registry.attach.after_claim");
SHMUTILS_FAULT_POINT(fp_registry_reap_before_free, "registry.reap.before_free");
SHMUTILS_FAULT_POINT(fp_registry_table_full, "registry.attach.table_full");

namespace {

constexpr std::uint64_t pack(SlotState state, pid_t pid) noexcept {
  return (static_cast<std::uint64_t>(state) << 32) | static_cast<std::uint32_t>(pid);
}
constexpr SlotState state_of(std::uint64_t word) noexcept {
  return static_cast<SlotState>(word >> 32);
}
constexpr pid_t pid_of(std::uint64_t word) noexcept {
  return static_cast<pid_t>(word & 0xFFFFFFFFU);
}
constexpr std::uint64_t liveness_byte(std::uint32_t index) noexcept {
  return kLivenessLockOffset + index;
}

// What this process has attached: the liveness descriptors of its
// registrations and its registry views. A forked child must not keep the
// descriptors (its copy would hold a dead parent's slot alive), so at fork
// the child points each at /dev/null; the lock keeps both lists still
// across the fork.
class Attachments {
 public:
  static Attachments& instance() {
    static Attachments* attachments = [] {
      auto* created = new Attachments();  // never destroyed: used by atfork handlers
      sys::on_fork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                   [] { instance().drop_liveness_in_child(); });
      return created;
    }();
    return *attachments;
  }
  void add_liveness(int fd) {
    std::lock_guard<std::mutex> guard(mutex_);
    liveness_fds_.push_back(fd);
  }
  void remove_liveness(int fd) {
    std::lock_guard<std::mutex> guard(mutex_);
    liveness_fds_.erase(std::remove(liveness_fds_.begin(), liveness_fds_.end(), fd),
                        liveness_fds_.end());
  }
  void add_registry(const ProcessRegistry* registry) {
    std::lock_guard<std::mutex> guard(mutex_);
    registries_.push_back(registry);
  }
  void remove_registry(const ProcessRegistry* registry) {
    std::lock_guard<std::mutex> guard(mutex_);
    registries_.erase(std::remove(registries_.begin(), registries_.end(), registry),
                      registries_.end());
  }
  // The views of the registries whose tables lie in [begin, end).
  std::vector<RegistryView> registries_within(const std::byte* begin, const std::byte* end) {
    std::lock_guard<std::mutex> guard(mutex_);
    std::vector<RegistryView> found;
    for (const ProcessRegistry* registry : registries_) {
      const auto* table = reinterpret_cast<const std::byte*>(registry->view().table);
      if (table >= begin && table < end) found.push_back(registry->view());
    }
    return found;
  }

 private:
  void drop_liveness_in_child() noexcept {
    for (int fd : liveness_fds_) sys::detach_fd_quietly(fd);
    liveness_fds_.clear();
    mutex_.unlock();
  }
  std::mutex mutex_;
  std::vector<int> liveness_fds_;
  std::vector<const ProcessRegistry*> registries_;
};

}  // namespace

SlotInfo RegistryView::inspect(std::uint32_t index) const {
  const RegistrySlot& slot = table->slot(index);
  SlotInfo info;
  info.index = index;
  std::uint64_t word = slot.word.load(std::memory_order_acquire);
  info.state = state_of(word);
  info.pid = pid_of(word);
  info.start_time = slot.start_time.load(std::memory_order_relaxed);
  info.attached_ns = slot.attached_ns.load(std::memory_order_relaxed);
  info.pid_namespace = slot.pid_namespace.load(std::memory_order_relaxed);
  info.alive = info.state != SlotState::Free && probe_fd >= 0 &&
               sys::ofd_byte_locked_elsewhere(probe_fd, liveness_byte(index), "registry slot");
  return info;
}

std::optional<SlotInfo> RegistryView::find(SlotClaim claim) const {
  if (claim.empty() || claim.slot > capacity) return std::nullopt;
  SlotInfo info = inspect(claim.slot - 1);
  if (info.state == SlotState::Free || SlotClaim::of(info) != claim) return std::nullopt;
  return info;
}

Registration::Registration(RegistryTable* table, std::uint32_t slot, pid_t owner,
                           UniqueFd liveness) noexcept
    : table_(table), slot_(slot), owner_(owner), liveness_(std::move(liveness)) {}

Registration::Registration(Registration&& other) noexcept
    : table_(std::exchange(other.table_, nullptr)),
      slot_(other.slot_),
      owner_(other.owner_),
      liveness_(std::move(other.liveness_)) {}

Registration& Registration::operator=(Registration&& other) noexcept {
  if (this != &other) {
    detach();
    table_ = std::exchange(other.table_, nullptr);
    slot_ = other.slot_;
    owner_ = other.owner_;
    liveness_ = std::move(other.liveness_);
  }
  return *this;
}

Registration::~Registration() { detach(); }

void Registration::detach() noexcept {
  RegistryTable* table = std::exchange(table_, nullptr);
  // A forked child carries a copy of its parent's registration: not its slot
  // (its liveness descriptor already points at /dev/null).
  if (table != nullptr && sys::getpid() == owner_) {
    RegistrySlot& slot = table->slot(slot_);
    std::uint64_t expected = pack(SlotState::Live, owner_);
    slot.start_time.store(0, std::memory_order_relaxed);
    slot.attached_ns.store(0, std::memory_order_relaxed);
    slot.pid_namespace.store(0, std::memory_order_relaxed);
    // Free first, unlock after: the slot is never claimed and unlocked at once.
    slot.word.compare_exchange_strong(expected, 0, std::memory_order_release,
                                      std::memory_order_relaxed);
    Attachments::instance().remove_liveness(liveness_.get());
  }
  liveness_.reset();
}

ProcessRegistry::ProcessRegistry(RegistryView view, std::string segment,
                                 std::chrono::milliseconds lock_timeout)
    : view_(view), segment_(std::move(segment)), lock_timeout_(lock_timeout) {
  if (view_.valid()) Attachments::instance().add_registry(this);
}

ProcessRegistry::~ProcessRegistry() {
  if (view_.valid()) Attachments::instance().remove_registry(this);
}

void ProcessRegistry::initialize(RegistryTable* table, std::uint32_t capacity) {
  std::memset(static_cast<void*>(table), 0, RegistryTable::bytes_for(capacity));
  table->capacity = capacity;
  table->slot_size = sizeof(RegistrySlot);
}

std::uint32_t ProcessRegistry::validate(const RegistryTable* table, std::uint64_t region_size,
                                        const std::string& segment) {
  auto corrupt = [&](const std::string& why) {
    throw Error(ErrorKind::CorruptHeader, "segment \"" + segment + "\"", "validate registry", why);
  };
  if (region_size < sizeof(RegistryTable)) corrupt("registry region smaller than its table header");
  // Read once: a peer may change the field between any two reads.
  const std::uint32_t slot_size =
      std::atomic_ref(const_cast<std::uint32_t&>(table->slot_size)).load(std::memory_order_relaxed);
  const std::uint32_t capacity =
      std::atomic_ref(const_cast<std::uint32_t&>(table->capacity)).load(std::memory_order_relaxed);
  if (slot_size != sizeof(RegistrySlot)) {
    corrupt("slot size " + std::to_string(slot_size) + ", expected " +
            std::to_string(sizeof(RegistrySlot)));
  }
  if (capacity == 0 || RegistryTable::bytes_for(capacity) > region_size) {
    corrupt("capacity " + std::to_string(capacity) + " does not fit the registry region of " +
            std::to_string(region_size) + " bytes");
  }
  return capacity;
}

Registration ProcessRegistry::attach() {
  const std::string object = "segment \"" + segment_ + "\"";
  const pid_t self = sys::getpid();
  const std::uint64_t start = sys::own_start_time().value_or(0);
  // A description of our own: its locks die with this process alone.
  UniqueFd liveness = sys::reopen(view_.probe_fd, O_RDONLY, object);
  for (int round = 0;; ++round) {
    for (std::uint32_t i = 0; i < view_.capacity; ++i) {
      RegistrySlot& slot = view_.table->slot(i);
      if (slot.word.load(std::memory_order_relaxed) != 0) continue;
      // Lock the byte before claiming: a claimed slot is never unlocked
      // while its process lives, so nobody can see it dead meanwhile.
      if (!sys::try_ofd_lock_shared_byte(liveness.get(), liveness_byte(i), object)) continue;
      std::uint64_t expected = 0;
      if (!slot.word.compare_exchange_strong(expected, pack(SlotState::Claiming, self),
                                             std::memory_order_acq_rel,
                                             std::memory_order_relaxed)) {
        sys::ofd_unlock_byte(liveness.get(), liveness_byte(i), object);
        continue;
      }
      fp_registry_after_claim.reached();
      slot.start_time.store(start, std::memory_order_relaxed);
      slot.attached_ns.store(sys::realtime_ns(), std::memory_order_relaxed);
      slot.pid_namespace.store(sys::pid_namespace_id(), std::memory_order_relaxed);
      slot.word.store(pack(SlotState::Live, self), std::memory_order_release);
      Attachments::instance().add_liveness(liveness.get());
      return Registration(view_.table, i, self, std::move(liveness));
    }
    if (round == 1) break;  // reaped and still full: every slot's process lives
    fp_registry_table_full.reached();
    // Look again whatever this reap frees: another attacher that found the
    // table full too may have reaped the dead slots first.
    reap_dead();
  }
  throw Error(
      ErrorKind::NoSpace, object, "attach",
      "all " + std::to_string(view_.capacity) + " process slots are held by live processes");
}

std::vector<SlotInfo> ProcessRegistry::slots() const {
  std::vector<SlotInfo> result;
  for (std::uint32_t i = 0; i < view_.capacity; ++i) {
    SlotInfo info = view_.inspect(i);
    if (info.state != SlotState::Free) result.push_back(info);
  }
  return result;
}

std::vector<SlotInfo> ProcessRegistry::dead_slots() const {
  std::vector<SlotInfo> result;
  for (const SlotInfo& info : slots()) {
    if (!info.alive) result.push_back(info);
  }
  return result;
}

std::uint64_t ProcessRegistry::reaped_total() const noexcept {
  return view_.table->reaped_total.load(std::memory_order_relaxed);
}

void ProcessRegistry::add_reaper(std::string name, Reaper reaper) {
  reapers_.emplace_back(std::move(name), std::move(reaper));
}

std::size_t ProcessRegistry::reap_dead() { return reap_dead(lock_timeout_); }

std::size_t ProcessRegistry::reap_dead(std::chrono::milliseconds timeout) {
  const std::string object = "segment \"" + segment_ + "\" registry";
  Mutex& lock = view_.table->reap_lock;
  LockResult taken = lock.acquire_within(timeout, object + " reap lock");
  // A reaper that died mid-reap left its slots marked: they are reaped again
  // below, so nothing needs repair beyond that.
  if (taken == LockResult::OwnerDied) lock.mark_consistent();
  MutexGuard guard(lock, taken);
  std::size_t reaped = 0;
  for (std::uint32_t i = 0; i < view_.capacity; ++i) {
    SlotInfo info = view_.inspect(i);
    if (info.state == SlotState::Free || info.alive) continue;
    RegistrySlot& slot = view_.table->slot(i);
    std::uint64_t expected = pack(info.state, info.pid);
    if (info.state != SlotState::Reaping &&
        !slot.word.compare_exchange_strong(expected, pack(SlotState::Reaping, info.pid),
                                           std::memory_order_acq_rel)) {
      continue;  // it changed under us (a claim completing): look again next time
    }
    info.state = SlotState::Reaping;
    for (auto& [name, reaper] : reapers_) reaper(info);
    fp_registry_reap_before_free.reached();
    slot.start_time.store(0, std::memory_order_relaxed);
    slot.attached_ns.store(0, std::memory_order_relaxed);
    slot.pid_namespace.store(0, std::memory_order_relaxed);
    slot.word.store(0, std::memory_order_release);
    view_.table->reaped_total.fetch_add(1, std::memory_order_relaxed);
    ++reaped;
  }
  return reaped;
}

namespace detail {

RegisteredLiveness registered_liveness(const void* where, const RecordedProcess& process) {
  std::optional<MappingInfo> mapping = find_mapping(where);
  if (!mapping) return RegisteredLiveness::NoRegistry;
  std::vector<RegistryView> views =
      Attachments::instance().registries_within(mapping->base, mapping->base + mapping->size);
  if (views.empty()) return RegisteredLiveness::NoRegistry;
  // Namespace ids are recycled once a namespace is gone: a dead process's
  // slot not yet reaped may carry the very pid and namespace of a live one.
  // Any live match means alive.
  bool dead_match = false;
  for (const RegistryView& view : views) {
    for (std::uint32_t i = 0; i < view.capacity; ++i) {
      SlotInfo slot = view.inspect(i);
      if (slot.state == SlotState::Free || slot.pid != process.pid ||
          slot.pid_namespace != process.pid_namespace) {
        continue;
      }
      if (process.start_time != 0 && slot.start_time != process.start_time) continue;
      if (slot.alive) return RegisteredLiveness::Alive;
      dead_match = true;
    }
  }
  return dead_match ? RegisteredLiveness::Dead : RegisteredLiveness::NoSlot;
}

bool other_namespace_registered(const void* where, std::uint64_t own) {
  std::optional<MappingInfo> mapping = find_mapping(where);
  if (!mapping) return true;
  std::vector<RegistryView> views =
      Attachments::instance().registries_within(mapping->base, mapping->base + mapping->size);
  if (views.empty()) return true;
  for (const RegistryView& view : views) {
    for (std::uint32_t i = 0; i < view.capacity; ++i) {
      const RegistrySlot& slot = view.table->slot(i);
      if (state_of(slot.word.load(std::memory_order_acquire)) != SlotState::Free &&
          slot.pid_namespace.load(std::memory_order_relaxed) != own) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace detail

}  // namespace shmutils
