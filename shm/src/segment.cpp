#include "shmutils/shm/segment.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>

#include "segment_init.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/fault_point.hpp"

namespace shmutils {

SHMUTILS_FAULT_POINT(fp_init_before_publish, "segment.init.before_publish");

namespace {

constexpr std::size_t kRegionAlignment = 64;

std::size_t align_up(std::size_t value, std::size_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

constexpr std::size_t kMinimumArena = 2 * heap::kSpanBytes;

struct Layout {
  SegmentRegion registry;
  SegmentRegion allocator;
  SegmentRegion names;
  SegmentRegion user;
  std::size_t minimum_size;  // end of the fixed regions
  std::uint64_t arena_offset = 0;
  std::uint64_t arena_size = 0;
};

// total_size matters only with a heap (the arena takes what is left).
Layout plan_layout(std::uint32_t max_processes, const SegmentOptions* heap_options = nullptr,
                   std::size_t total_size = 0) {
  Layout layout{};
  layout.registry.offset = align_up(sizeof(SegmentHeader), kRegionAlignment);
  layout.registry.size = RegistryTable::bytes_for(max_processes);
  std::size_t next = align_up(layout.registry.offset + layout.registry.size, kRegionAlignment);
  if (heap_options != nullptr) {
    layout.allocator.offset = next;
    layout.allocator.size = Heap::region_size(max_processes, total_size);
    next = align_up(next + layout.allocator.size, kRegionAlignment);
    layout.names.offset = next;
    layout.names.size = NameDirectory::region_size(heap_options->max_names);
    next = align_up(next + layout.names.size, kRegionAlignment);
  }
  layout.user.offset = next;
  layout.user.size =
      heap_options != nullptr ? align_up(heap_options->user_size, kRegionAlignment) : 0;
  layout.minimum_size = layout.user.offset + layout.user.size;
  if (heap_options != nullptr) {
    layout.arena_offset = align_up(layout.minimum_size, heap::kSpanBytes);
    std::size_t end = total_size / heap::kGranule * heap::kGranule;
    layout.arena_size = end > layout.arena_offset ? end - layout.arena_offset : 0;
    // Validation keeps every region inside minimum_size; the arena follows it.
  }
  return layout;
}

}  // namespace

void detail::format_segment(std::byte* base, std::size_t size, const SegmentOptions& options) {
  Layout layout = plan_layout(options.max_processes, options.heap ? &options : nullptr, size);
  auto* header = reinterpret_cast<SegmentHeader*>(base);
  header->magic.store(0, std::memory_order_relaxed);
  std::memset(base + sizeof(std::uint64_t), 0, layout.minimum_size - sizeof(std::uint64_t));
  header->layout_version = kLayoutVersion;
  header->header_size = sizeof(SegmentHeader);
  header->uuid = Uuid::random().bytes;
  header->creator_uid = sys::geteuid();
  header->creator_pid = sys::getpid();
  header->creator_start_time = sys::process_start_time(sys::getpid()).value_or(0);
  header->created_realtime_ns = sys::realtime_ns();
  header->minimum_size = layout.minimum_size;
  header->registry = layout.registry;
  header->allocator = layout.allocator;
  header->names = layout.names;
  header->user = layout.user;
  header->checksum = header_checksum(*header);
  header->total_size.store(size, std::memory_order_relaxed);
  ProcessRegistry::initialize(reinterpret_cast<RegistryTable*>(base + layout.registry.offset),
                              options.max_processes);
  if (options.heap) {
    Heap::format(base, layout.allocator.offset, options.max_processes, layout.arena_offset,
                 layout.arena_size);
    NameDirectory::format(reinterpret_cast<NameTable*>(base + layout.names.offset),
                          options.max_names);
  }
  fp_init_before_publish.reached();
  header->magic.store(kSegmentMagic, std::memory_order_release);
}

namespace {

void check_size(const std::string& object, std::size_t size, const SegmentOptions& options) {
  const std::uint32_t max_processes = options.max_processes;
  // A file's size is an off_t, and the size is rounded up to whole pages.
  const std::size_t largest =
      static_cast<std::size_t>(std::numeric_limits<off_t>::max()) - sys::page_size() + 1;
  if (size > largest) {
    throw Error(ErrorKind::InvalidArgument, object, "create",
                std::to_string(size) + " bytes is more than a file can hold (" +
                    std::to_string(largest) + " at most)");
  }
  if (max_processes == 0) {
    throw Error(ErrorKind::InvalidArgument, object, "create", "max_processes must be at least 1");
  }
  if (options.heap) {
    if (options.user_size > size) {
      throw Error(ErrorKind::TooSmall, object, "create",
                  std::to_string(size) + " bytes cannot hold a user area of " +
                      std::to_string(options.user_size) + " bytes and a heap");
    }
    if (max_processes > heap::kMaxSlots || options.max_names == 0) {
      throw Error(ErrorKind::InvalidArgument, object, "create",
                  "a heap serves 1 to " + std::to_string(heap::kMaxSlots) +
                      " processes and needs max_names >= 1");
    }
    Layout layout = plan_layout(max_processes, &options, size);
    if (layout.arena_size < kMinimumArena) {
      std::size_t needed = layout.arena_offset + kMinimumArena;
      throw Error(ErrorKind::TooSmall, object, "create",
                  std::to_string(size) + " bytes; a heap segment for " +
                      std::to_string(max_processes) + " processes needs at least " +
                      std::to_string(needed));
    }
    return;
  }
  std::size_t minimum = Segment::minimum_size(max_processes);
  if (size < minimum) {
    throw Error(ErrorKind::TooSmall, object, "create",
                std::to_string(size) + " bytes; the header and a registry of " +
                    std::to_string(max_processes) + " processes need " + std::to_string(minimum));
  }
}

}  // namespace

std::size_t Segment::minimum_size(std::uint32_t max_processes) noexcept {
  return plan_layout(max_processes).minimum_size;
}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    detach_heap();
    registration_.detach();
    registration_ = std::move(other.registration_);
    registry_ = std::move(other.registry_);
    heap_ = std::move(other.heap_);
    names_ = std::move(other.names_);
    mapping_ = std::move(other.mapping_);
    object_ = std::move(other.object_);
    inheritable_fd_ = std::move(other.inheritable_fd_);
    user_ = other.user_;
    layout_ = other.layout_;
    bounded_user_area_ = other.bounded_user_area_;
  }
  return *this;
}

Segment::~Segment() { detach_heap(); }

void Segment::detach_heap() noexcept {
  if (registration_.valid()) heap_.release_slot();
  heap_ = Heap();
  names_ = NameDirectory();
}

Segment Segment::create(std::string_view name, std::size_t size, const SegmentOptions& options) {
  return open(name, OpenMode{Access::ReadWrite, Disposition::CreateExclusive}, size, options);
}

Segment Segment::open(std::string_view name, Access access, const SegmentOptions& options) {
  return open(name, OpenMode{access, Disposition::OpenExisting}, 0, options);
}

Segment Segment::open_or_create(std::string_view name, std::size_t size,
                                const SegmentOptions& options) {
  return open(name, OpenMode{Access::ReadWrite, Disposition::OpenOrCreate}, size, options);
}

Segment Segment::open(std::string_view name, std::string_view mode, std::size_t size,
                      const SegmentOptions& options) {
  return open(name, from_mode(mode), size, options);
}

Segment Segment::open(std::string_view name, OpenMode mode, std::size_t size,
                      const SegmentOptions& options) {
  std::string normalized = normalize_segment_name(name);
  std::string object = "segment \"" + normalized + "\"";
  if (mode.may_create()) {
    if (!mode.writable()) {
      throw Error(ErrorKind::InvalidArgument, object, "open", "creating needs read-write access");
    }
    check_size(object, size, options);
    size = sys::round_up_to_page(size);
  }
  if (mode.disposition == Disposition::CreateOrTruncate) {
    // Truncating a live segment would SIGBUS everyone attached: replace it instead.
    ShmObject::unlink_if_exists(normalized);
    mode.disposition = Disposition::CreateExclusive;
  }
  if (mode.disposition == Disposition::OpenOrCreate) {
    // Try exclusive first, to know whether this process is the creator.
    UniqueFd fd;
    int err = sys::try_shm_open(normalized, O_RDWR | O_CREAT | O_EXCL, options.permissions, fd);
    if (err == 0) {
      return attach_object(ShmObject::adopt(std::move(fd), normalized, false, true), true, size,
                           options);
    }
    if (err != EEXIST) throw_errno(object, "shm_open", err);
    ShmObject existing =
        ShmObject::open(normalized, OpenMode{Access::ReadWrite, Disposition::OpenExisting});
    return attach_object(std::move(existing), false, size, options);
  }
  if (mode.disposition == Disposition::CreateExclusive) {
    ShmObject created = ShmObject::open(normalized, mode, options.permissions);
    return attach_object(std::move(created), true, size, options);
  }
  ShmObject existing = ShmObject::open(normalized, mode);
  return attach_object(std::move(existing), false, 0, options);
}

Segment Segment::create_anonymous(std::size_t size, const SegmentOptions& options) {
  check_size("memfd segment", size, options);
  return attach_object(ShmObject::create_anonymous("shmutils"), true, sys::round_up_to_page(size),
                       options);
}

Segment Segment::adopt(ShmObject object, const SegmentOptions& options) {
  return attach_object(std::move(object), false, 0, options);
}

Segment Segment::attach_object(ShmObject object, bool created, std::size_t create_size,
                               const SegmentOptions& options) {
  const std::string described = object.describe();
  Segment segment;
  segment.object_ = std::move(object);
  if (segment.initialize_or_await(created, create_size, options)) return segment;

  std::uint64_t object_size = segment.object_.size();
  if (object_size < sizeof(SegmentHeader)) {
    throw Error(ErrorKind::Truncated, described, "open", "smaller than a segment header");
  }
  segment.map_whole(object_size, options.address_hint);
  const SegmentLayout layout = validate_header(segment.header(), object_size, segment.name());
  struct stat st = segment.object_.stat();
  uid_t self = sys::geteuid();
  if (!options.allow_foreign_owner && st.st_uid != self) {
    throw Error(ErrorKind::PermissionDenied, described, "open",
                "owned by uid " + std::to_string(st.st_uid) + ", not " + std::to_string(self) +
                    " (allow_foreign_owner accepts it)");
  }
  // Map exactly the size the header records; a larger object keeps its tail.
  if (layout.total_size != segment.mapping_.size()) {
    segment.map_whole(layout.total_size, options.address_hint);
  }
  segment.finish_attach(layout, options);
  return segment;
}

void Segment::map_whole(std::size_t size, void* hint) {
  MapRequest request;
  request.size = size;
  request.protection = object_.writable() ? Protection::ReadWrite : Protection::Read;
  request.flags = MapFlags::Shared;
  if (hint != nullptr) request.flags = request.flags | MapFlags::FixedNoReplace;
  request.fd = object_.fd();
  request.hint = hint;
  request.name = object_.name();
  mapping_ = Mapping();  // release the old range first: a hinted remap may reuse it
  mapping_ = Mapping::map(request);
}

void Segment::finish_attach(const SegmentLayout& layout, const SegmentOptions& options) {
  layout_ = layout;
  const SegmentLayout& h = layout_;
  user_.offset = h.user.offset;
  user_.size = h.user.size;
  bounded_user_area_ = user_.size != 0 || h.allocator.size != 0;
  if (user_.offset > mapping_.size() || user_.size > mapping_.size() - user_.offset) {
    throw Error(ErrorKind::CorruptHeader, describe(), "open",
                "the user area lies outside the mapping");
  }
  auto* table = reinterpret_cast<RegistryTable*>(base() + h.registry.offset);
  const RegistryView registry{table, ProcessRegistry::validate(table, h.registry.size, name()),
                              object_.fd()};
  registry_ = std::make_shared<ProcessRegistry>(registry, name(), options.lock_timeout);
  const bool with_heap = h.allocator.size != 0;
  if (with_heap) {
    // Check the regions before anything (the reaper included) touches them.
    if (h.names.size == 0) {
      throw Error(ErrorKind::CorruptHeader, describe(), "open", "a heap without a name directory");
    }
    Heap::validate(base(), mapping_.size(), h.allocator.offset, h.allocator.size, registry.capacity,
                   name());
    NameDirectory::validate(reinterpret_cast<const NameTable*>(base() + h.names.offset),
                            h.names.size, name());
    Heap reaper_view = Heap::attach(base(), mapping_.size(), h.allocator.offset, h.allocator.size,
                                    registry, -1, name());
    registry_->add_reaper("heap",
                          [reaper_view](const SlotInfo& dead) { reaper_view.reclaim_slot(dead); });
  }
  if (options.register_process && writable()) registration_ = registry_->attach();
  if (with_heap) {
    std::int64_t slot = registration_.valid() ? std::int64_t{registration_.slot()} : -1;
    heap_ = Heap::attach(base(), mapping_.size(), h.allocator.offset, h.allocator.size, registry,
                         slot, name());
    heap_.set_registry_owner(registry_);
    heap_.set_lock_timeout(options.lock_timeout);
    names_ = NameDirectory(reinterpret_cast<NameTable*>(base() + h.names.offset), heap_, name());
  }
}

Heap& Segment::heap() {
  if (!heap_.valid()) {
    throw Error(ErrorKind::InvalidArgument, describe(), "heap",
                "this segment has no heap (create it with SegmentOptions::heap = true)");
  }
  return heap_;
}

NameDirectory& Segment::names() {
  heap();  // same precondition, same message
  return names_;
}

HeapAudit Segment::audit(unsigned timeout_ms) {
  std::vector<HeapEntry> live;
  HeapAudit result = heap().audit(timeout_ms, &live);
  if (result.complete) {
    for (std::string& problem : names_.check(live)) result.problems.push_back(std::move(problem));
  }
  return result;
}

HeapAudit Segment::audit_offline() const {
  if (layout_.allocator.size == 0) {
    throw Error(ErrorKind::InvalidArgument, describe(), "audit", "it has no heap to audit");
  }
  // A copy read with pread, not the mapping: a segment another process
  // truncates meanwhile is a short read (Truncated), never SIGBUS.
  Mapping copy = Mapping::map(
      {.size = mapping_.size(), .flags = MapFlags::Private, .name = "copy of " + describe()});
  if (!sys::read_exact_at(object_.fd(), {copy.data(), mapping_.size()}, 0)) {
    throw Error(ErrorKind::Truncated, describe(), "audit",
                "it shrank below " + std::to_string(mapping_.size()) + " bytes while being read");
  }
  RegistryView registry = registry_->view();
  registry.table = reinterpret_cast<RegistryTable*>(copy.data() + layout_.registry.offset);
  std::vector<HeapEntry> live;
  HeapAudit result = Heap::audit_offline(copy.data(), mapping_.size(), layout_.allocator.offset,
                                         layout_.allocator.size, registry, &live);
  if (result.complete) {
    auto* table = reinterpret_cast<NameTable*>(copy.data() + layout_.names.offset);
    for (std::string& problem : NameDirectory(table, Heap(), name()).check(live)) {
      result.problems.push_back(std::move(problem));
    }
  }
  return result;
}

void Segment::unlink(std::string_view name) { ShmObject::unlink(name); }
bool Segment::unlink_if_exists(std::string_view name) { return ShmObject::unlink_if_exists(name); }

void Segment::unlink() const { object_.unlink(); }

void Segment::close() {
  detach_heap();
  registration_.detach();
  registry_ = std::make_shared<ProcessRegistry>();
  mapping_.unmap();
  inheritable_fd_.reset();
  object_.close();
}

std::size_t Segment::size() const noexcept {
  return valid() ? header().total_size.load(std::memory_order_acquire) : 0;
}

Uuid Segment::uuid() const noexcept {
  Uuid uuid;
  if (valid()) uuid.bytes = header().uuid;
  return uuid;
}

std::span<std::byte> Segment::user_area() const noexcept {
  if (!valid()) return {};
  const std::uint64_t offset = user_.offset;
  std::uint64_t end = std::min<std::uint64_t>(size(), mapping_.size());
  // With a heap, the user area is exactly its recorded size (possibly 0):
  // the arena follows it.
  if (bounded_user_area_) end = std::min<std::uint64_t>(end, offset + user_.size);
  if (offset > end) return {};
  return {base() + offset, end - offset};
}

SegmentDescriptor Segment::descriptor() const {
  if (!valid()) throw Error(ErrorKind::InvalidArgument, describe(), "descriptor", "not attached");
  SegmentDescriptor d;
  d.anonymous = anonymous();
  d.name = name();
  d.fd = anonymous() ? fd() : -1;
  d.size = size();
  d.uuid = uuid();
  return d;
}

SegmentDescriptor Segment::inheritable_descriptor() {
  SegmentDescriptor d = descriptor();
  if (d.anonymous) {
    if (!inheritable_fd_.valid()) {
      inheritable_fd_ = sys::dup_cloexec(fd(), describe());
      sys::set_cloexec(inheritable_fd_.get(), false, describe());
    }
    d.fd = inheritable_fd_.get();
  }
  return d;
}

Segment Segment::attach(const SegmentDescriptor& descriptor, const SegmentOptions& options) {
  Segment segment;
  if (descriptor.anonymous) {
    if (descriptor.fd < 0) {
      throw Error(ErrorKind::InvalidArgument, "memfd \"" + descriptor.name + "\"", "attach",
                  "an anonymous segment's descriptor needs an fd");
    }
    UniqueFd fd = sys::dup_cloexec(descriptor.fd, "memfd \"" + descriptor.name + "\"");
    segment = adopt(ShmObject::adopt(std::move(fd), descriptor.name, true, true), options);
  } else {
    segment = open(descriptor.name, Access::ReadWrite, options);
  }
  if (!descriptor.uuid.is_nil() && segment.uuid() != descriptor.uuid) {
    throw Error(ErrorKind::WrongSegment, segment.describe(), "attach",
                "uuid " + segment.uuid().to_string() + ", the descriptor names " +
                    descriptor.uuid.to_string() + " (the segment was re-created)");
  }
  return segment;
}

Segment Segment::attach(std::string_view descriptor_text, const SegmentOptions& options) {
  return attach(SegmentDescriptor::parse(descriptor_text), options);
}

void Segment::check_not_truncated() const {
  std::uint64_t actual = object_.size();
  std::uint64_t expected = size();
  if (actual < expected) {
    throw Error(ErrorKind::Truncated, describe(), "check size",
                "the header says " + std::to_string(expected) + " bytes but only " +
                    std::to_string(actual) + " remain");
  }
}

void Segment::resize(std::size_t new_size) {
  if (!writable()) throw Error(ErrorKind::PermissionDenied, describe(), "resize", "read-only");
  if (heap_.valid() || layout_.allocator.size != 0) {
    throw Error(ErrorKind::NotSupported, describe(), "resize",
                "a segment with a heap has a fixed size");
  }
  std::size_t minimum = layout_.minimum_size;
  if (new_size < minimum) {
    throw Error(ErrorKind::TooSmall, describe(), "resize",
                std::to_string(new_size) + " bytes, the layout needs " + std::to_string(minimum));
  }
  new_size = sys::round_up_to_page(new_size);
  auto* header = reinterpret_cast<SegmentHeader*>(base());
  if (new_size >= size()) {
    // Grow the object first, then publish: nobody maps past what exists.
    object_.resize(new_size);
    header->total_size.store(new_size, std::memory_order_release);
  } else {
    // Publish first, then shrink: others see the smaller size before it bites.
    header->total_size.store(new_size, std::memory_order_release);
    object_.resize(new_size);
  }
  refresh();
}

void Segment::refresh() {
  std::size_t total = size();
  if (total == mapping_.size()) return;
  check_not_truncated();
  Mapping old = std::move(mapping_);  // stays mapped until everything points at the new one
  map_whole(total, nullptr);
  auto* table = reinterpret_cast<RegistryTable*>(base() + layout_.registry.offset);
  registry_->rebase(table);
  registration_.rebase(table);
}

void send_segment(int socket, const Segment& segment) {
  sys::send_with_fd(socket, segment.descriptor().to_string(), segment.fd());
}

Segment receive_segment(int socket, const SegmentOptions& options) {
  sys::ReceivedFd received = sys::receive_with_fd(socket);
  SegmentDescriptor descriptor = SegmentDescriptor::parse(received.message);
  if (descriptor.anonymous) {
    if (!received.fd.valid()) {
      throw Error(ErrorKind::BadDescriptor, "socket " + std::to_string(socket), "receive_segment",
                  "an anonymous segment arrived without its fd");
    }
    Segment segment = Segment::adopt(
        ShmObject::adopt(std::move(received.fd), descriptor.name, true, true), options);
    if (segment.uuid() != descriptor.uuid) {
      throw Error(ErrorKind::WrongSegment, "socket " + std::to_string(socket), "receive_segment",
                  "the fd's uuid differs from the descriptor's");
    }
    return segment;
  }
  return Segment::attach(descriptor, options);
}

}  // namespace shmutils
