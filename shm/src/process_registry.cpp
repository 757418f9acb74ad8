#include "shmutils/shm/process_registry.hpp"

#include <cstring>

#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"
#include "shmutils/shm/sys.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_registry_after_claim, "registry.attach.after_claim");
SHMUTILS_FAULT_POINT(fp_registry_reap_before_free, "registry.reap.before_free");

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

// A Claiming slot has no start time yet, so only the pid can be checked; a
// claim takes microseconds, so pid reuse inside that window is not a concern.
bool slot_alive(SlotState state, pid_t pid, std::uint64_t start_time) {
  if (state == SlotState::Free) return false;
  if (state == SlotState::Claiming && start_time == 0) {
    return sys::process_start_time(pid).has_value();
  }
  return sys::process_alive(pid, start_time);
}

}  // namespace

Registration::Registration(Registration&& other) noexcept
    : table_(std::exchange(other.table_, nullptr)), slot_(other.slot_), owner_(other.owner_) {}

Registration& Registration::operator=(Registration&& other) noexcept {
  if (this != &other) {
    detach();
    table_ = std::exchange(other.table_, nullptr);
    slot_ = other.slot_;
    owner_ = other.owner_;
  }
  return *this;
}

Registration::~Registration() { detach(); }

void Registration::detach() noexcept {
  RegistryTable* table = std::exchange(table_, nullptr);
  // A forked child carries a copy of its parent's registration: not its slot.
  if (table == nullptr || sys::getpid() != owner_) return;
  RegistrySlot& slot = table->slot(slot_);
  std::uint64_t expected = pack(SlotState::Live, owner_);
  slot.start_time.store(0, std::memory_order_relaxed);
  slot.attached_ns.store(0, std::memory_order_relaxed);
  slot.word.compare_exchange_strong(expected, 0, std::memory_order_release,
                                    std::memory_order_relaxed);
}

void ProcessRegistry::initialize(RegistryTable* table, std::uint32_t capacity) {
  std::memset(static_cast<void*>(table), 0, RegistryTable::bytes_for(capacity));
  table->capacity = capacity;
  table->slot_size = sizeof(RegistrySlot);
  sys::robust_mutex_init(&table->reap_lock, "process registry");
}

void ProcessRegistry::validate(const RegistryTable* table, std::uint64_t region_size,
                               const std::string& segment) {
  auto corrupt = [&](const std::string& why) {
    throw Error(ErrorKind::CorruptHeader, "segment \"" + segment + "\"", "validate registry", why);
  };
  if (region_size < sizeof(RegistryTable)) corrupt("registry region smaller than its table header");
  if (table->slot_size != sizeof(RegistrySlot)) {
    corrupt("slot size " + std::to_string(table->slot_size) + ", expected " +
            std::to_string(sizeof(RegistrySlot)));
  }
  if (table->capacity == 0 || RegistryTable::bytes_for(table->capacity) > region_size) {
    corrupt("capacity " + std::to_string(table->capacity) +
            " does not fit the registry region of " + std::to_string(region_size) + " bytes");
  }
}

Registration ProcessRegistry::attach() {
  pid_t self = sys::getpid();
  auto start = sys::process_start_time(self);
  if (!start) {
    throw Error(ErrorKind::System, "segment \"" + segment_ + "\"", "attach",
                "cannot read this process's start time from /proc");
  }
  for (int round = 0; round < 2; ++round) {
    for (std::uint32_t i = 0; i < table_->capacity; ++i) {
      RegistrySlot& slot = table_->slot(i);
      std::uint64_t expected = 0;
      if (!slot.word.compare_exchange_strong(expected, pack(SlotState::Claiming, self),
                                             std::memory_order_acq_rel,
                                             std::memory_order_relaxed)) {
        continue;
      }
      fp_registry_after_claim.reached();
      slot.start_time.store(*start, std::memory_order_relaxed);
      slot.attached_ns.store(sys::realtime_ns(), std::memory_order_relaxed);
      slot.word.store(pack(SlotState::Live, self), std::memory_order_release);
      return Registration(table_, i, self);
    }
    if (reap_dead() == 0) break;  // nothing to free: the table is full of live processes
  }
  throw Error(
      ErrorKind::NoSpace, "segment \"" + segment_ + "\"", "attach",
      "all " + std::to_string(table_->capacity) + " process slots are held by live processes");
}

SlotInfo ProcessRegistry::read_slot(std::uint32_t index) const {
  return inspect_slot(*table_, index);
}

SlotInfo ProcessRegistry::inspect_slot(const RegistryTable& table, std::uint32_t index) {
  const RegistrySlot& slot = table.slot(index);
  SlotInfo info;
  info.index = index;
  std::uint64_t word = slot.word.load(std::memory_order_acquire);
  info.state = state_of(word);
  info.pid = pid_of(word);
  info.start_time = slot.start_time.load(std::memory_order_relaxed);
  info.attached_ns = slot.attached_ns.load(std::memory_order_relaxed);
  info.alive = slot_alive(info.state, info.pid, info.start_time);
  return info;
}

std::vector<SlotInfo> ProcessRegistry::slots() const {
  std::vector<SlotInfo> result;
  for (std::uint32_t i = 0; i < table_->capacity; ++i) {
    SlotInfo info = read_slot(i);
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
  return table_->reaped_total.load(std::memory_order_relaxed);
}

void ProcessRegistry::add_reaper(std::string name, Reaper reaper) {
  reapers_.emplace_back(std::move(name), std::move(reaper));
}

std::size_t ProcessRegistry::reap_dead() {
  const std::string object = "segment \"" + segment_ + "\" registry";
  // A reaper that died mid-reap left the lock owner-dead; its slots are still
  // marked and get reaped again below, so the lock is simply made consistent.
  if (sys::robust_mutex_lock(&table_->reap_lock, object) == sys::RobustLockResult::OwnerDied) {
    sys::robust_mutex_consistent(&table_->reap_lock, object);
  }
  std::size_t reaped = 0;
  try {
    for (std::uint32_t i = 0; i < table_->capacity; ++i) {
      SlotInfo info = read_slot(i);
      if (info.state == SlotState::Free || info.alive) continue;
      RegistrySlot& slot = table_->slot(i);
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
      slot.word.store(0, std::memory_order_release);
      table_->reaped_total.fetch_add(1, std::memory_order_relaxed);
      ++reaped;
    }
  } catch (...) {
    sys::robust_mutex_unlock(&table_->reap_lock, object);
    throw;
  }
  sys::robust_mutex_unlock(&table_->reap_lock, object);
  return reaped;
}

}  // namespace shmutils
