// The allocator region on disk: its size, formatting it at creation, checking
// it at open (one copy, ControlLayout), and a process's view of it.
#include <array>
#include <cstring>

#include "heap_view.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/heap.hpp"

namespace shmutils {

using detail::HeapView;
using heap::kGranule;

namespace heap {
std::uint64_t control_checksum(const HeapControl& control) noexcept {
  const auto* bytes = reinterpret_cast<const unsigned char*>(&control);
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < offsetof(HeapControl, checksum); ++i) {
    hash = (hash ^ bytes[i]) * 0x100000001b3ULL;
  }
  return hash;
}
}  // namespace heap

std::size_t Heap::region_size(std::uint32_t slots, std::size_t arena_size) noexcept {
  std::size_t regions = (arena_size + heap::kSpanBytes - 1) / heap::kSpanBytes;
  return sizeof(heap::HeapControl) + std::size_t{slots} * sizeof(heap::SlotRecord) +
         sizeof(heap::TypeEntry) * heap::kMaxTypes + (regions + 63) / 64 * 64;
}

void Heap::format(std::byte* base, std::uint64_t region_offset, std::uint32_t slots,
                  std::uint64_t arena_offset, std::uint64_t arena_size) {
  auto* control = reinterpret_cast<heap::HeapControl*>(base + region_offset);
  std::uint64_t regions = (arena_size + heap::kSpanBytes - 1) / heap::kSpanBytes;
  std::memset(static_cast<void*>(control), 0, region_size(slots, arena_size));
  control->magic = heap::kControlMagic;
  control->version = 1;
  control->slot_capacity = slots;
  control->arena_offset = arena_offset;
  control->arena_size = arena_size;
  control->slots_offset = region_offset + sizeof(heap::HeapControl);
  control->types_offset = control->slots_offset + std::uint64_t{slots} * sizeof(heap::SlotRecord);
  control->span_map_offset = control->types_offset + sizeof(heap::TypeEntry) * heap::kMaxTypes;
  control->span_map_size = regions;
  control->checksum = heap::control_checksum(*control);
  // One free block spanning the arena, then the sentinel.
  std::uint64_t sentinel = arena_offset + arena_size - kGranule;
  std::uint64_t granules = (sentinel - arena_offset) / kGranule;
  auto* first = reinterpret_cast<heap::BlockHeader*>(base + arena_offset);
  first->prev_granules = 0;
  first->check = heap::BlockHeader::check_for(arena_offset, granules);
  first->word.store(heap::BlockHeader::pack(granules, heap::State::make(heap::Kind::Free)));
  auto* end = reinterpret_cast<heap::BlockHeader*>(base + sentinel);
  end->prev_granules = static_cast<std::uint32_t>(granules);
  end->check = heap::BlockHeader::check_for(sentinel, 1);
  end->word.store(heap::BlockHeader::pack(1, heap::State::make(heap::Kind::Sentinel)));
  auto* links = reinterpret_cast<heap::FreeLinks*>(base + arena_offset + kGranule);
  *links = {0, 0};
  std::uint32_t bin = detail::bin_for(granules);
  control->bins[bin] = arena_offset;
  control->bin_bitmap.store(std::uint64_t{1} << bin);
}

heap::ControlLayout Heap::validate(const std::byte* base, std::uint64_t mapped_size,
                                   std::uint64_t region_offset, std::uint64_t region_size,
                                   std::uint32_t registry_capacity, const std::string& segment) {
  const std::string object = "heap of segment \"" + segment + "\"";
  auto corrupt = [&](const std::string& why) {
    throw Error(ErrorKind::CorruptHeap, object, "validate", why);
  };
  if (region_size < sizeof(heap::HeapControl)) corrupt("the allocator region is too small");
  // One copy, checked and then used: the shared words may change meanwhile.
  alignas(heap::HeapControl) std::array<std::byte, sizeof(heap::HeapControl)> bytes;
  std::memcpy(bytes.data(), base + region_offset, bytes.size());
  const auto* control = reinterpret_cast<const heap::HeapControl*>(bytes.data());
  if (control->magic != heap::kControlMagic || control->version != 1) {
    corrupt("the allocator region does not start with a heap control block");
  }
  if (control->checksum != heap::control_checksum(*control)) corrupt("control checksum mismatch");
  if (control->slot_capacity != registry_capacity || control->slot_capacity > heap::kMaxSlots) {
    corrupt("slot records for " + std::to_string(control->slot_capacity) +
            " processes, the registry has " + std::to_string(registry_capacity));
  }
  std::uint64_t regions = (control->arena_size + heap::kSpanBytes - 1) / heap::kSpanBytes;
  const std::uint64_t region_end = region_offset + region_size;
  bool layout_ok =
      control->slots_offset == region_offset + sizeof(heap::HeapControl) &&
      control->types_offset == control->slots_offset + std::uint64_t{control->slot_capacity} *
                                                           sizeof(heap::SlotRecord) &&
      control->span_map_offset ==
          control->types_offset + sizeof(heap::TypeEntry) * heap::kMaxTypes &&
      control->span_map_size == regions && control->span_map_offset + regions <= region_end;
  if (!layout_ok) corrupt("the allocator region's tables do not fit it");
  bool arena_ok = control->arena_offset % heap::kSpanBytes == 0 &&
                  control->arena_offset >= region_end && control->arena_size % kGranule == 0 &&
                  control->arena_size >= 4 * kGranule && control->arena_offset <= mapped_size &&
                  control->arena_size <= mapped_size - control->arena_offset &&
                  control->arena_size / kGranule < (std::uint64_t{1} << 32);
  if (!arena_ok) corrupt("the arena lies outside the segment");
  return {control->slot_capacity, control->arena_offset,    control->arena_size,
          control->slots_offset,  control->span_map_offset, control->span_map_size,
          control->types_offset};
}

Heap Heap::attach(std::byte* base, std::uint64_t mapped_size, std::uint64_t region_offset,
                  std::uint64_t region_size, const RegistryView& registry, std::int64_t slot,
                  std::string segment) {
  const heap::ControlLayout layout =
      validate(base, mapped_size, region_offset, region_size, registry.capacity, segment);
  Heap heap;
  heap.view_ = std::make_shared<HeapView>();
  HeapView& v = *heap.view_;
  v.layout = layout;
  v.base = base;
  v.mapped = mapped_size;
  v.control = reinterpret_cast<heap::HeapControl*>(base + region_offset);
  v.region_size = region_size;
  v.registry = registry;
  v.segment = std::move(segment);
  v.slot = slot;
  v.owner_pid = sys::getpid();
  v.fork_generation = sys::fork_generation();
  v.arena_begin = layout.arena_offset;
  v.arena_end = layout.arena_offset + layout.arena_size - kGranule;
  if (slot >= 0) {
    heap::SlotRecord& record = v.record(static_cast<std::uint32_t>(slot));
    record.pid.store(v.owner_pid, std::memory_order_relaxed);
    v.claim = SlotClaim::of(v.registry.inspect(static_cast<std::uint32_t>(slot)));
  }
  return heap;
}

void Heap::rebase(std::byte* base, std::uint64_t mapped_size,
                  const RegistryView& registry) noexcept {
  if (view_ == nullptr) return;
  std::uint64_t region =
      static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(view_->control) - view_->base);
  view_->base = base;
  view_->mapped = mapped_size;
  view_->control = reinterpret_cast<heap::HeapControl*>(base + region);
  view_->registry = registry;
}

}  // namespace shmutils
