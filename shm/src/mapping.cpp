#include "shmutils/shm/mapping.hpp"

#include <sys/mman.h>

#include <map>
#include <mutex>
#include <utility>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/mapping_registry.hpp"

namespace shmutils {

namespace {

int to_prot(Protection protection) {
  int prot = PROT_NONE;
  if (has(protection, Protection::Read)) prot |= PROT_READ;
  if (has(protection, Protection::Write)) prot |= PROT_WRITE;
  if (has(protection, Protection::Exec)) prot |= PROT_EXEC;
  return prot;
}

int to_mmap_flags(MapFlags flags, bool anonymous) {
  int result = has(flags, MapFlags::Shared) ? MAP_SHARED : MAP_PRIVATE;
  if (anonymous) result |= MAP_ANONYMOUS;
  if (has(flags, MapFlags::Fixed)) result |= MAP_FIXED;
  if (has(flags, MapFlags::FixedNoReplace)) result |= MAP_FIXED_NOREPLACE;
  if (has(flags, MapFlags::NoReserve)) result |= MAP_NORESERVE;
  if (has(flags, MapFlags::Populate)) result |= MAP_POPULATE;
  if (has(flags, MapFlags::HugePages)) result |= MAP_HUGETLB;
  return result;
}

int to_madvise(Advice advice) {
  switch (advice) {
    case Advice::Normal: return MADV_NORMAL;
    case Advice::Random: return MADV_RANDOM;
    case Advice::Sequential: return MADV_SEQUENTIAL;
    case Advice::WillNeed: return MADV_WILLNEED;
    case Advice::DontNeed: return MADV_DONTNEED;
    case Advice::Remove: return MADV_REMOVE;
    case Advice::DontFork: return MADV_DONTFORK;
    case Advice::DoFork: return MADV_DOFORK;
    case Advice::HugePage: return MADV_HUGEPAGE;
    case Advice::NoHugePage: return MADV_NOHUGEPAGE;
    case Advice::DontDump: return MADV_DONTDUMP;
    case Advice::DoDump: return MADV_DODUMP;
  }
  return MADV_NORMAL;
}

std::mutex& registry_mutex() {
  static std::mutex mutex;
  return mutex;
}

std::map<std::byte*, MappingInfo>& registry() {
  static std::map<std::byte*, MappingInfo> table;
  return table;
}

}  // namespace

namespace detail {

void register_mapping(std::byte* base, std::size_t size, const std::string& name) {
  std::lock_guard lock(registry_mutex());
  registry()[base] = MappingInfo{base, size, name};
}

void unregister_mapping(std::byte* base) noexcept {
  std::lock_guard lock(registry_mutex());
  registry().erase(base);
}

}  // namespace detail

std::optional<MappingInfo> find_mapping(const void* address) {
  auto* byte = static_cast<std::byte*>(const_cast<void*>(address));
  std::lock_guard lock(registry_mutex());
  auto& table = registry();
  auto it = table.upper_bound(byte);
  if (it == table.begin()) return std::nullopt;
  --it;
  if (byte >= it->second.base + it->second.size) return std::nullopt;
  return it->second;
}

std::vector<MappingInfo> live_mappings() {
  std::lock_guard lock(registry_mutex());
  std::vector<MappingInfo> result;
  for (const auto& [base, info] : registry()) result.push_back(info);
  return result;
}

Mapping Mapping::map(const MapRequest& request) {
  const std::string object = "mapping \"" + request.name + "\"";
  auto invalid = [&](const char* why) {
    throw Error(ErrorKind::InvalidArgument, object, "map", why);
  };
  if (request.size == 0) invalid("size is 0");
  bool shared = has(request.flags, MapFlags::Shared);
  bool priv = has(request.flags, MapFlags::Private);
  if (shared == priv) invalid("exactly one of Shared and Private is required");
  if (has(request.flags, MapFlags::Fixed) && has(request.flags, MapFlags::FixedNoReplace)) {
    invalid("Fixed and FixedNoReplace exclude each other");
  }
  bool fixed = has(request.flags, MapFlags::Fixed) || has(request.flags, MapFlags::FixedNoReplace);
  if (fixed && request.hint == nullptr) invalid("a fixed mapping needs an address");
  std::size_t page = sys::page_size();
  if (fixed && reinterpret_cast<std::uintptr_t>(request.hint) % page != 0) {
    invalid("a fixed address must be page aligned");
  }
  if (request.offset % page != 0) invalid("offset must be page aligned");
  bool anonymous = request.fd < 0 || has(request.flags, MapFlags::Anonymous);
  if (anonymous && request.fd >= 0) invalid("Anonymous with an fd");
  if (anonymous && request.offset != 0) invalid("anonymous memory has no offset");

  std::size_t size = sys::round_up_to_page(request.size);
  void* address = nullptr;
  try {
    address = sys::mmap(request.hint, size, to_prot(request.protection),
                        to_mmap_flags(request.flags, anonymous), anonymous ? -1 : request.fd,
                        request.offset, object);
  } catch (const Error& e) {
    if (has(request.flags, MapFlags::HugePages) && e.sys_errno() == ENOMEM) {
      throw Error(ErrorKind::NotSupported, object, "mmap",
                  "no huge pages available (see /proc/sys/vm/nr_hugepages)", e.sys_errno());
    }
    throw;
  }
  // Old kernels ignore MAP_FIXED_NOREPLACE and treat the address as a hint.
  if (has(request.flags, MapFlags::FixedNoReplace) && address != request.hint) {
    sys::munmap_quietly(address, size);
    throw Error(ErrorKind::AlreadyExists, object, "mmap", "the requested range is in use");
  }
  Mapping mapping;
  mapping.base_ = static_cast<std::byte*>(address);
  mapping.size_ = size;
  mapping.protection_ = request.protection;
  mapping.name_ = request.name;
  detail::register_mapping(mapping.base_, mapping.size_, mapping.name_);
  return mapping;
}

Mapping::Mapping(Mapping&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      protection_(other.protection_),
      name_(std::move(other.name_)) {}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    if (base_ != nullptr) {
      detail::unregister_mapping(base_);
      sys::munmap_quietly(base_, size_);
    }
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    protection_ = other.protection_;
    name_ = std::move(other.name_);
  }
  return *this;
}

Mapping::~Mapping() {
  if (base_ != nullptr) {
    detail::unregister_mapping(base_);
    sys::munmap_quietly(base_, size_);  // cannot fail for a range we mapped whole
  }
}

void Mapping::unmap() {
  if (base_ == nullptr) return;
  detail::unregister_mapping(base_);
  std::byte* base = std::exchange(base_, nullptr);
  sys::munmap(base, std::exchange(size_, 0), "mapping \"" + name_ + "\"");
}

std::span<std::byte> Mapping::release() noexcept {
  if (base_ != nullptr) detail::unregister_mapping(base_);
  return {std::exchange(base_, nullptr), std::exchange(size_, 0)};
}

void Mapping::check_range(std::size_t offset, std::size_t length, const char* operation) const {
  if (base_ == nullptr) {
    throw Error(ErrorKind::InvalidArgument, "mapping \"" + name_ + "\"", operation, "not mapped");
  }
  if (offset > size_ || length > size_ - offset) {
    throw Error(ErrorKind::OutOfRange, "mapping \"" + name_ + "\"", operation,
                "range [" + std::to_string(offset) + ", +" + std::to_string(length) +
                    ") outside the " + std::to_string(size_) + " mapped bytes");
  }
}

namespace {
void check_page_aligned(std::size_t offset, const std::string& name, const char* operation) {
  if (offset % sys::page_size() != 0) {
    throw Error(ErrorKind::InvalidArgument, "mapping \"" + name + "\"", operation,
                "offset " + std::to_string(offset) + " is not page aligned");
  }
}
}  // namespace

void Mapping::protect(std::size_t offset, std::size_t length, Protection protection) {
  check_page_aligned(offset, name_, "mprotect");
  length = sys::round_up_to_page(length);
  check_range(offset, length, "mprotect");
  sys::mprotect(base_ + offset, length, to_prot(protection), "mapping \"" + name_ + "\"");
}

void Mapping::advise(std::size_t offset, std::size_t length, Advice advice) {
  check_page_aligned(offset, name_, "madvise");
  length = sys::round_up_to_page(length);
  check_range(offset, length, "madvise");
  sys::madvise(base_ + offset, length, to_madvise(advice), "mapping \"" + name_ + "\"");
}

void Mapping::sync(std::size_t offset, std::size_t length, SyncMode mode) {
  check_page_aligned(offset, name_, "msync");
  length = sys::round_up_to_page(length);
  check_range(offset, length, "msync");
  int flags = mode == SyncMode::Async  ? MS_ASYNC
              : mode == SyncMode::Sync ? MS_SYNC
                                       : (MS_SYNC | MS_INVALIDATE);
  sys::msync(base_ + offset, length, flags, "mapping \"" + name_ + "\"");
}

void Mapping::lock_in_memory() {
  check_range(0, size_, "mlock");
  sys::mlock(base_, size_, "mapping \"" + name_ + "\"");
}

void Mapping::unlock_from_memory() {
  check_range(0, size_, "munlock");
  sys::munlock(base_, size_, "mapping \"" + name_ + "\"");
}

bool Mapping::contains(const void* address) const noexcept {
  auto value = reinterpret_cast<std::uintptr_t>(address);
  auto base = reinterpret_cast<std::uintptr_t>(base_);
  return base_ != nullptr && value >= base && value < base + size_;
}

std::size_t Mapping::to_offset(const void* address) const {
  auto value = reinterpret_cast<std::uintptr_t>(address);
  auto base = reinterpret_cast<std::uintptr_t>(base_);
  // One past the end translates too, like the end iterator of the range.
  if (base_ == nullptr || value < base || value > base + size_) {
    throw Error(ErrorKind::OutOfRange, "mapping \"" + name_ + "\"", "to_offset",
                "address is not inside the mapping");
  }
  return value - base;
}

std::byte* Mapping::to_address(std::size_t offset) const {
  check_range(offset, 0, "to_address");
  return base_ + offset;
}

std::span<std::byte> Mapping::bytes(std::size_t offset, std::size_t length) const {
  check_range(offset, length, "bytes");
  return {base_ + offset, length};
}

std::size_t Mapping::page_count() const noexcept { return size_ / sys::page_size(); }

std::byte* Mapping::page_address(std::size_t page_index) const {
  if (page_index >= page_count()) {
    throw Error(ErrorKind::OutOfRange, "mapping \"" + name_ + "\"", "page_address",
                "page " + std::to_string(page_index) + " of " + std::to_string(page_count()));
  }
  return base_ + page_index * sys::page_size();
}

std::size_t Mapping::page_index(const void* address) const {
  if (!contains(address)) {
    throw Error(ErrorKind::OutOfRange, "mapping \"" + name_ + "\"", "page_index",
                "address is not inside the mapping");
  }
  return to_offset(address) / sys::page_size();
}

std::span<std::byte> Mapping::pages(std::size_t first_page, std::size_t count) const {
  std::size_t page = sys::page_size();
  if (first_page > page_count() || count > page_count() - first_page) {
    throw Error(ErrorKind::OutOfRange, "mapping \"" + name_ + "\"", "pages",
                "pages [" + std::to_string(first_page) + ", +" + std::to_string(count) + ") of " +
                    std::to_string(page_count()));
  }
  return {base_ + first_page * page, count * page};
}

}  // namespace shmutils
