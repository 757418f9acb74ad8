// shmutils::properties generators — rapidcheck generators for shmutils values.
//
// Contract
//   Header-only Arbitrary specializations, usable in any rapidcheck property
//   (rc::gen::arbitrary<shmutils::OpenMode>()). Shrinking follows rapidcheck's
//   defaults for the underlying enums and integers.
#pragma once

#include <rapidcheck.h>

#include <cstdint>

#include "shmutils/shm/open_mode.hpp"
#include "shmutils/shm/uuid.hpp"

namespace rc {

template <>
struct Arbitrary<shmutils::OpenMode> {
  static Gen<shmutils::OpenMode> arbitrary() {
    return gen::build<shmutils::OpenMode>(
        gen::set(&shmutils::OpenMode::access,
                 gen::element(shmutils::Access::ReadOnly, shmutils::Access::ReadWrite)),
        gen::set(
            &shmutils::OpenMode::disposition,
            gen::element(shmutils::Disposition::OpenExisting, shmutils::Disposition::OpenOrCreate,
                         shmutils::Disposition::CreateExclusive,
                         shmutils::Disposition::CreateOrTruncate)));
  }
};

template <>
struct Arbitrary<shmutils::Uuid> {
  static Gen<shmutils::Uuid> arbitrary() {
    return gen::map(gen::container<std::vector<std::uint8_t>>(16, gen::arbitrary<std::uint8_t>()),
                    [](const std::vector<std::uint8_t>& bytes) {
                      shmutils::Uuid uuid;
                      for (std::size_t i = 0; i < 16; ++i) uuid.bytes[i] = std::byte{bytes[i]};
                      return uuid;
                    });
  }
};

}  // namespace rc
