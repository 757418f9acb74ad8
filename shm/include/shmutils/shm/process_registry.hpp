// shmutils::ProcessRegistry — which processes are attached to a segment, and
// which of them died without detaching.
//
// Contract
//   Lives:       the slot table is inside the segment (RegistryTable); a
//                ProcessRegistry is a process-local view of it (its capacity
//                validated and copied once, see RegistryView) that also holds
//                this process's reap callbacks.
//   Slots:       one per attachment, holding pid, PID namespace, start time and
//                attach time: what tools show. None of them decides liveness.
//   Liveness:    a process holding slot i holds an open-file-description lock
//                on byte kLivenessLockOffset + i of the segment's file, taken
//                through a description of its own before the slot is claimed
//                and kept until it is freed. The kernel drops that lock when
//                the process dies, whatever PID namespace it or the observer
//                is in, and a recycled pid cannot inherit it. A slot is dead
//                when it is claimed and nobody holds its byte. A forked child
//                gives up its copy of its parent's description at fork, so it
//                never keeps a dead parent's slot alive.
//   Reaping:     reap_dead() takes the registry's robust lock (waiting at most
//                its timeout: Timeout naming the holder, never a hang), runs
//                every registered Reaper for each dead slot, then frees the
//                slot. A reaper that dies mid-reap leaves the slot dead and
//                unfreed, so the next reaper runs the callbacks again:
//                callbacks must be idempotent.
//   Detach:      Registration's destructor frees its slot, only in the process
//                that claimed it (a forked child's copy does nothing).
//
//   Slot states:   Free --claim (byte locked first)--> Claiming --identity written--> Live
//                  Live --detach (then the byte unlocked)--> Free
//                  Live/Claiming (byte unlocked: dead) --reap_dead--> Reaping --> Free
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "shmutils/shm/mutex.hpp"
#include "shmutils/shm/process_liveness.hpp"
#include "shmutils/shm/unique_fd.hpp"

namespace shmutils {

// Where the liveness byte of slot 0 lies in the segment's file: far past any
// segment's end, so the locks never meet a lock a user takes on its data.
inline constexpr std::uint64_t kLivenessLockOffset = std::uint64_t{1} << 62;
// How long reap_dead() waits for the registry's reap lock by default.
inline constexpr std::chrono::milliseconds kReapLockTimeout{2000};

enum class SlotState : std::uint32_t { Free = 0, Claiming = 1, Live = 2, Reaping = 3 };

// In-segment layout of one slot (docs/segment-format.md).
struct RegistrySlot {
  std::atomic<std::uint64_t> word;           // state << 32 | pid (in its own namespace)
  std::atomic<std::uint64_t> start_time;     // the process's kernel start time
  std::atomic<std::uint64_t> attached_ns;    // realtime of the claim
  std::atomic<std::uint64_t> pid_namespace;  // sys::pid_namespace_id() of the process
};

// In-segment layout of the table; `capacity` RegistrySlots follow it.
struct alignas(64) RegistryTable {
  std::uint32_t capacity;
  std::uint32_t slot_size;                  // sizeof(RegistrySlot)
  std::atomic<std::uint64_t> reaped_total;  // slots reaped since creation
  Mutex reap_lock;                          // robust; taken with a bound

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
  std::uint64_t pid_namespace = 0;  // the PID namespace `pid` belongs to (0: unknown)
  bool alive = false;               // meaningful for Claiming / Live / Reaping
};

// One claim of a registry slot: unlike a pid, it names one process whatever
// PID namespace it and the reader are in, and it stops naming it once the
// slot is freed (the stamp is the low 32 bits of the claim's attach time, so a
// later claim of the same slot is another one). Packs into 64 bits for
// structures in a segment; slot is the index + 1, 0 naming nobody.
struct SlotClaim {
  std::uint32_t slot = 0;
  std::uint32_t stamp = 0;

  bool empty() const noexcept { return slot == 0; }
  std::uint64_t packed() const noexcept { return (std::uint64_t{slot} << 32) | stamp; }
  static SlotClaim unpack(std::uint64_t word) noexcept {
    return {static_cast<std::uint32_t>(word >> 32), static_cast<std::uint32_t>(word)};
  }
  static SlotClaim of(const SlotInfo& info) noexcept {
    return {info.index + 1, static_cast<std::uint32_t>(info.attached_ns)};
  }
  friend bool operator==(const SlotClaim&, const SlotClaim&) = default;
};

// A registry table as validated at open: the capacity is copied once (never
// re-read from the segment, where a peer may change it), and probe_fd is a
// descriptor of the segment's file through which slot liveness is read.
struct RegistryView {
  RegistryTable* table = nullptr;
  std::uint32_t capacity = 0;
  int probe_fd = -1;

  bool valid() const noexcept { return table != nullptr; }
  // One slot, read without locking (tools, audits); index < capacity.
  SlotInfo inspect(std::uint32_t index) const;
  // The slot as `claim` names it, or nothing once the slot is free or claimed
  // again (also for a claim naming no slot of this table).
  std::optional<SlotInfo> find(SlotClaim claim) const;
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
  // The descriptor whose lock says this slot's process lives.
  int liveness_fd() const noexcept { return liveness_.get(); }
  // Frees the slot now (only in the process that claimed it).
  void detach() noexcept;
  // The same table now mapped at another address (the segment was remapped).
  void rebase(RegistryTable* table) noexcept {
    if (table_ != nullptr) table_ = table;
  }

 private:
  friend class ProcessRegistry;
  Registration(RegistryTable* table, std::uint32_t slot, pid_t owner, UniqueFd liveness) noexcept;
  RegistryTable* table_ = nullptr;
  std::uint32_t slot_ = 0;
  pid_t owner_ = 0;
  UniqueFd liveness_;
};

class ProcessRegistry {
 public:
  using Reaper = std::function<void(const SlotInfo& dead)>;

  ProcessRegistry() = default;
  // A view of a validated table; segment names the segment in errors. While
  // it exists, record_owner_alive() may consult it (process_liveness.hpp).
  ProcessRegistry(RegistryView view, std::string segment,
                  std::chrono::milliseconds lock_timeout = kReapLockTimeout);
  ~ProcessRegistry();
  ProcessRegistry(const ProcessRegistry&) = delete;
  ProcessRegistry& operator=(const ProcessRegistry&) = delete;

  // Formats a fresh table of `capacity` slots at `table` (creator only).
  static void initialize(RegistryTable* table, std::uint32_t capacity);
  // Checks a table read from a segment against the region that holds it and
  // returns the capacity it validated; throws CorruptHeader.
  static std::uint32_t validate(const RegistryTable* table, std::uint64_t region_size,
                                const std::string& segment);

  // Claims a free slot for this process; throws NoSpace when all are taken
  // (after reaping dead slots once), Timeout when that reap could not take
  // the reap lock in time.
  Registration attach();

  std::uint32_t capacity() const noexcept { return view_.capacity; }
  const RegistryView& view() const noexcept { return view_; }
  std::vector<SlotInfo> slots() const;  // every non-free slot
  std::vector<SlotInfo> dead_slots() const;
  std::uint64_t reaped_total() const noexcept;

  // Adds a callback run for every dead slot this process reaps.
  void add_reaper(std::string name, Reaper reaper);
  // Reaps every dead slot; returns how many this call freed. Waits at most
  // the lock timeout for the reap lock, then throws Timeout naming its holder.
  std::size_t reap_dead();
  std::size_t reap_dead(std::chrono::milliseconds timeout);

  RegistryTable* table() const noexcept { return view_.table; }
  // The same table now mapped at another address; reapers are kept.
  void rebase(RegistryTable* table) noexcept { view_.table = table; }

 private:
  RegistryView view_;
  std::string segment_;
  std::chrono::milliseconds lock_timeout_ = kReapLockTimeout;
  std::vector<std::pair<std::string, Reaper>> reapers_;
};

namespace detail {
enum class RegisteredLiveness { Alive, Dead, NoSlot, NoRegistry };
// Asks the registries of this process's attachments of the segment holding
// `where` about the slots that name `process` (pid and namespace, start time
// when recorded): Alive when any of them lives.
RegisteredLiveness registered_liveness(const void* where, const RecordedProcess& process);
// Whether a slot of the registry of the segment holding `where` (a live
// process, or a dead one not yet reaped) names a PID namespace other than
// `own`; true when no registry is found. Reads the slots only: no system call.
bool other_namespace_registered(const void* where, std::uint64_t own);
}  // namespace detail

}  // namespace shmutils
