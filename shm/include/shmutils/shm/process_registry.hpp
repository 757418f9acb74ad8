// shmutils::ProcessRegistry — which processes are attached to a segment, and
// which of them died without detaching.
//
// Contract
//   Lives:       the slot table is inside the segment (RegistryTable); a
//                ProcessRegistry is a process-local view of it that also holds
//                this process's reap callbacks.
//   Slots:       one per attachment, holding pid and the process's kernel start
//                time, so a recycled pid is never mistaken for the dead process.
//   Liveness:    any process can list the slots and tell the dead ones; no
//                daemon. A slot is dead when its pid is gone, a zombie, or now
//                names a process with another start time.
//   Reaping:     reap_dead() takes the registry's robust lock, runs every
//                registered Reaper for each dead slot, then frees the slot. A
//                reaper that dies mid-reap leaves the slot dead and unfreed, so
//                the next reaper runs the callbacks again: callbacks must be
//                idempotent.
//   Detach:      Registration's destructor frees its slot, only in the process
//                that claimed it (a forked child's copy does nothing).
//
//   Slot states:   Free --claim--> Claiming --start time written--> Live
//                  Live --detach--> Free
//                  Live/Claiming (process dead) --reap_dead--> Reaping --> Free
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

namespace shmutils {

enum class SlotState : std::uint32_t { Free = 0, Claiming = 1, Live = 2, Reaping = 3 };

// In-segment layout of one slot (docs/segment-format.md).
struct RegistrySlot {
  std::atomic<std::uint64_t> word;         // state << 32 | pid
  std::atomic<std::uint64_t> start_time;   // the process's kernel start time
  std::atomic<std::uint64_t> attached_ns;  // realtime of the claim
  std::atomic<std::uint64_t> reserved;
};

// In-segment layout of the table; `capacity` RegistrySlots follow it.
struct alignas(64) RegistryTable {
  std::uint32_t capacity;
  std::uint32_t slot_size;                  // sizeof(RegistrySlot)
  std::atomic<std::uint64_t> reaped_total;  // slots reaped since creation
  pthread_mutex_t reap_lock;                // robust, process-shared

  RegistrySlot& slot(std::uint32_t index) noexcept {
    return reinterpret_cast<RegistrySlot*>(reinterpret_cast<std::byte*>(this) +
                                           sizeof(*this))[index];
  }
  const RegistrySlot& slot(std::uint32_t index) const noexcept {
    return reinterpret_cast<const RegistrySlot*>(reinterpret_cast<const std::byte*>(this) +
                                                 sizeof(*this))[index];
  }
  static std::size_t bytes_for(std::uint32_t capacity) noexcept {
    return sizeof(RegistryTable) + std::size_t{capacity} * sizeof(RegistrySlot);
  }
};
static_assert(std::is_standard_layout_v<RegistryTable>);

struct SlotInfo {
  std::uint32_t index = 0;
  SlotState state = SlotState::Free;
  pid_t pid = 0;
  std::uint64_t start_time = 0;
  std::uint64_t attached_ns = 0;
  bool alive = false;  // meaningful for Claiming / Live / Reaping
};

class ProcessRegistry;

// This process's claim on a slot. Move-only.
class Registration {
 public:
  Registration() = default;
  Registration(Registration&& other) noexcept;
  Registration& operator=(Registration&& other) noexcept;
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
  ~Registration();

  bool valid() const noexcept { return table_ != nullptr; }
  std::uint32_t slot() const noexcept { return slot_; }
  // Frees the slot now (only in the process that claimed it).
  void detach() noexcept;
  // The same table now mapped at another address (the segment was remapped).
  void rebase(RegistryTable* table) noexcept {
    if (table_ != nullptr) table_ = table;
  }

 private:
  friend class ProcessRegistry;
  Registration(RegistryTable* table, std::uint32_t slot, pid_t owner) noexcept
      : table_(table), slot_(slot), owner_(owner) {}
  RegistryTable* table_ = nullptr;
  std::uint32_t slot_ = 0;
  pid_t owner_ = 0;
};

class ProcessRegistry {
 public:
  using Reaper = std::function<void(const SlotInfo& dead)>;

  ProcessRegistry() = default;
  // A view of an initialized table; segment names the segment in errors.
  ProcessRegistry(RegistryTable* table, std::string segment) noexcept
      : table_(table), segment_(std::move(segment)) {}

  // Formats a fresh table of `capacity` slots at `table` (creator only).
  static void initialize(RegistryTable* table, std::uint32_t capacity);
  // Checks a table read from a segment against the region that holds it;
  // throws CorruptHeader.
  static void validate(const RegistryTable* table, std::uint64_t region_size,
                       const std::string& segment);

  // Claims a free slot for this process; throws NoSpace when all are taken
  // (after reaping dead slots once).
  Registration attach();

  // One slot of a table, read without locking (tools, audits).
  static SlotInfo inspect_slot(const RegistryTable& table, std::uint32_t index);

  std::uint32_t capacity() const noexcept { return table_->capacity; }
  std::vector<SlotInfo> slots() const;  // every non-free slot
  std::vector<SlotInfo> dead_slots() const;
  std::uint64_t reaped_total() const noexcept;

  // Adds a callback run for every dead slot this process reaps.
  void add_reaper(std::string name, Reaper reaper);
  // Reaps every dead slot; returns how many this call freed.
  std::size_t reap_dead();

  RegistryTable* table() const noexcept { return table_; }
  // The same table now mapped at another address; reapers are kept.
  void rebase(RegistryTable* table) noexcept { table_ = table; }

 private:
  SlotInfo read_slot(std::uint32_t index) const;

  RegistryTable* table_ = nullptr;
  std::string segment_;
  std::vector<std::pair<std::string, Reaper>> reapers_;
};

}  // namespace shmutils
