// shmutils::find_mapping — which live Mapping of this process holds an address.
//
// Contract
//   Lives:       process-wide table, guarded by a mutex; Mapping registers on
//                map and unregisters on unmap/release.
//   Lookups:     never change the table (the seed's lookup consumed entries).
//   Fork:        a child sees its parent's entries; they are still mapped there.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace shmutils {

struct MappingInfo {
  std::byte* base = nullptr;
  std::size_t size = 0;
  std::string name;
};

std::optional<MappingInfo> find_mapping(const void* address);
std::vector<MappingInfo> live_mappings();

namespace detail {
void register_mapping(std::byte* base, std::size_t size, const std::string& name);
void unregister_mapping(std::byte* base) noexcept;
}  // namespace detail

}  // namespace shmutils
