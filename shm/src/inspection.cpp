#include "shmutils/shm/inspection.hpp"

#include <unordered_map>

#include "shmutils/shm/detail/heap_layout.hpp"
#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/name_directory.hpp"

namespace shmutils {

std::vector<InspectedLock> inspect_locks(const Segment& segment) {
  std::vector<InspectedLock> locks;
  const SegmentLayout& layout = segment.layout();
  if (layout.allocator.size == 0) return locks;
  const auto* control =
      reinterpret_cast<const heap::HeapControl*>(segment.base() + layout.allocator.offset);
  locks.push_back({"heap", control->heap_lock.holder()});
  for (std::uint32_t c = 0; c < heap::kClassCount; ++c) {
    LockHolder holder = control->classes[c].lock.holder();
    if (holder.pid != 0 || holder.owner_died)
      locks.push_back({"class " + std::to_string(heap::kClassSizes[c]), holder});
  }
  const auto* table = reinterpret_cast<const NameTable*>(segment.base() + layout.names.offset);
  locks.push_back({"names", table->lock.mutex.holder()});
  return locks;
}

SegmentInspection inspect(const Segment& segment) {
  SegmentInspection result;
  const SegmentLayout& layout = segment.layout();
  if (layout.allocator.size == 0) return result;
  result.locks = inspect_locks(segment);
  auto* table = reinterpret_cast<NameTable*>(segment.base() + layout.names.offset);
  std::unordered_map<std::uint64_t, std::string> types;
  for (HeapEntry& entry :
       Heap::dump_offline(segment.base(), segment.mapped_size(), layout.allocator.offset,
                          layout.allocator.size, segment.registry().view()))
    types.emplace(entry.offset, std::move(entry.type));
  // list() only reads; the directory needs no heap for it.
  NameDirectory directory(table, Heap(), segment.name());
  for (const NamedObject& object : directory.list()) {
    auto type = types.find(object.offset);
    result.named_objects.push_back({object.name, object.offset, object.size,
                                    type != types.end() ? type->second : std::string(),
                                    object.state == NameState::Ready});
  }
  return result;
}

}  // namespace shmutils
