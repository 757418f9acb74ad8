// What segment.cpp and segment_init.cpp share: formatting a new segment.
#pragma once

#include <cstddef>

#include "shmutils/shm/segment.hpp"

namespace shmutils::detail {

// Writes a fresh header, registry and (with options.heap) heap and name
// directory into `base`; publishes the magic last.
void format_segment(std::byte* base, std::size_t size, const SegmentOptions& options);

}  // namespace shmutils::detail
