#include "shmutils/shm/name_directory.hpp"

#include <algorithm>
#include <cstring>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_named_constructing, "names.construct.entry_claimed");
SHMUTILS_FAULT_POINT(fp_named_constructed, "names.construct.object_built");
SHMUTILS_FAULT_POINT(fp_named_published, "names.construct.published");
SHMUTILS_FAULT_POINT(fp_named_destroying, "names.destroy.destructor_ran");
SHMUTILS_FAULT_POINT(fp_named_repairing, "names.repairing");

namespace {

constexpr std::size_t kMaxName = sizeof(NameEntry::name) - 1;

std::uint64_t fnv(std::string_view text) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : text) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return hash;
}

NameState state_of(const NameEntry& entry) {
  return static_cast<NameState>(entry.state.load(std::memory_order_acquire));
}

void set_state(NameEntry& entry, NameState state) {
  entry.state.store(static_cast<std::uint32_t>(state), std::memory_order_release);
}

std::string_view name_of(const NameEntry& entry) {
  return {entry.name.data(), std::min<std::size_t>(entry.name_length, kMaxName)};
}

}  // namespace

void NameDirectory::format(NameTable* table, std::uint32_t capacity) noexcept {
  std::memset(static_cast<void*>(table), 0, region_size(capacity));
  table->capacity = capacity;
}

void NameDirectory::validate(const NameTable* table, std::uint64_t region_size,
                             const std::string& segment) {
  if (region_size < sizeof(NameTable) ||
      NameDirectory::region_size(table->capacity) > region_size || table->capacity == 0) {
    throw Error(ErrorKind::CorruptHeader, "segment \"" + segment + "\"", "validate names",
                "the name table does not fit its region");
  }
}

std::string NameDirectory::object(std::string_view name) const {
  return "object \"" + std::string(name) + "\" in segment \"" + segment_ + "\"";
}

// Runs after the dead holder's slot was reaped (RepairingGuard), so its
// publish or free_from of an entry's block is already finished or undone.
void NameDirectory::repair() {
  fp_named_repairing.reached();
  NameEntry* entries = table_->entries();
  for (std::uint32_t i = 0; i < table_->capacity; ++i) {
    NameEntry& entry = entries[i];
    NameState state = state_of(entry);
    if (state == NameState::Constructing) {
      // Published into the entry: the constructor had returned.
      set_state(entry, entry.offset.load() != 0 ? NameState::Ready : NameState::Removed);
    } else if (state == NameState::Destroying) {
      if (entry.offset.load() != 0) heap_.free_from(entry.offset);
      set_state(entry, NameState::Removed);
    }
  }
}

void* NameDirectory::locate(std::string_view name, std::string_view type, std::size_t size,
                            std::size_t alignment, Mode mode,
                            const std::function<void(void*)>& init) {
  if (table_ == nullptr) {
    throw Error(ErrorKind::InvalidArgument, object(name), "find",
                "this segment has no name directory (create it with SegmentOptions::heap)");
  }
  if (name.empty() || name.size() > kMaxName) {
    throw Error(ErrorKind::InvalidArgument, object(name), "find",
                "a name has 1 to " + std::to_string(kMaxName) + " bytes");
  }
  const std::uint64_t type_hash = fnv(type);
  RepairingGuard turn(table_->lock, heap_, [this] { repair(); });
  NameEntry* entries = table_->entries();
  const std::uint32_t capacity = table_->capacity;
  std::uint32_t first_free = capacity;
  std::uint32_t index = static_cast<std::uint32_t>(fnv(name) % capacity);
  for (std::uint32_t probe = 0; probe < capacity; ++probe, index = (index + 1) % capacity) {
    NameEntry& entry = entries[index];
    NameState state = state_of(entry);
    if (state == NameState::Empty) {
      if (first_free == capacity) first_free = index;
      break;
    }
    if (state == NameState::Removed) {
      if (first_free == capacity) first_free = index;
      continue;
    }
    if (name_of(entry) != name) continue;
    if (mode == Mode::Create) {
      throw Error(ErrorKind::AlreadyExists, object(name), "construct", "the name is taken");
    }
    if (entry.type_hash != type_hash) {
      throw Error(ErrorKind::TypeMismatch, object(name), "find",
                  "it was constructed as another type than " + std::string(type));
    }
    return heap_.pointer(entry.offset.load(std::memory_order_acquire));
  }
  if (mode == Mode::Find) return nullptr;
  if (first_free == capacity) {
    throw Error(ErrorKind::NoSpace, object(name), "construct",
                "all " + std::to_string(capacity) + " names are taken (SegmentOptions::max_names)");
  }
  NameEntry& entry = entries[first_free];
  Reservation reservation = heap_.reserve(size, std::max<std::size_t>(alignment, 16), type);
  entry.offset.store(0, std::memory_order_relaxed);
  entry.type_hash = type_hash;
  entry.size = size;
  entry.name_length = static_cast<std::uint32_t>(name.size());
  std::memset(entry.name.data(), 0, entry.name.size());
  std::memcpy(entry.name.data(), name.data(), name.size());
  set_state(entry, NameState::Constructing);
  fp_named_constructing.reached();
  try {
    init(reservation.data());
  } catch (...) {
    set_state(entry, NameState::Removed);
    throw;  // the reservation frees the block
  }
  fp_named_constructed.reached();
  std::uint64_t offset = reservation.publish(entry.offset);
  fp_named_published.reached();
  set_state(entry, NameState::Ready);
  return heap_.pointer(offset);
}

bool NameDirectory::remove(std::string_view name, std::string_view type,
                           const std::function<void(void*)>& destroy) {
  if (table_ == nullptr) return false;
  const std::uint64_t type_hash = fnv(type);
  RepairingGuard turn(table_->lock, heap_, [this] { repair(); });
  NameEntry* entries = table_->entries();
  const std::uint32_t capacity = table_->capacity;
  std::uint32_t index = static_cast<std::uint32_t>(fnv(name) % capacity);
  for (std::uint32_t probe = 0; probe < capacity; ++probe, index = (index + 1) % capacity) {
    NameEntry& entry = entries[index];
    NameState state = state_of(entry);
    if (state == NameState::Empty) return false;
    if (state != NameState::Ready || name_of(entry) != name) continue;
    if (entry.type_hash != type_hash) {
      throw Error(ErrorKind::TypeMismatch, object(name), "destroy",
                  "it was constructed as another type than " + std::string(type));
    }
    set_state(entry, NameState::Destroying);
    destroy(heap_.pointer(entry.offset.load()));
    fp_named_destroying.reached();
    heap_.free_from(entry.offset);
    set_state(entry, NameState::Removed);
    return true;
  }
  return false;
}

std::vector<NamedObject> NameDirectory::list() const {
  std::vector<NamedObject> result;
  if (table_ == nullptr) return result;
  NameEntry* entries = table_->entries();
  for (std::uint32_t i = 0; i < table_->capacity; ++i) {
    const NameEntry& entry = entries[i];
    NameState state = state_of(entry);
    if (state == NameState::Empty || state == NameState::Removed) continue;
    NamedObject named;
    named.name = std::string(name_of(entry));
    named.offset = entry.offset.load();
    named.size = entry.size;
    named.state = state;
    result.push_back(std::move(named));
  }
  std::sort(result.begin(), result.end(),
            [](const NamedObject& a, const NamedObject& b) { return a.name < b.name; });
  return result;
}

std::vector<std::string> NameDirectory::check(const std::vector<HeapEntry>& live) const {
  std::vector<std::string> problems;
  for (const NamedObject& named : list()) {
    if (named.state != NameState::Ready) continue;
    auto found = std::lower_bound(
        live.begin(), live.end(), named.offset,
        [](const HeapEntry& entry, std::uint64_t offset) { return entry.offset < offset; });
    if (found == live.end() || found->offset != named.offset ||
        found->kind != heap::Kind::Published || found->size < named.size) {
      problems.push_back("named object \"" + named.name + "\" points at offset " +
                         std::to_string(named.offset) + ", which is not a live published block");
    }
  }
  return problems;
}

}  // namespace shmutils
