// shmutils::properties generators — rapidcheck generators for shmutils values.
//
// Contract
//   Header-only Arbitrary specializations, usable in any rapidcheck property
//   (rc::gen::arbitrary<shmutils::OpenMode>()), and element_towards_first, a
//   choice among values that shrinks (towards the first).
#pragma once

#include <rapidcheck.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "shmutils/shm/open_mode.hpp"
#include "shmutils/shm/uuid.hpp"

namespace shmutils::properties {

// A number in [min, max) drawn evenly whatever the case's size (rapidcheck's
// inRange favours the low end in its early, small cases), shrinking towards min.
template <class T>
rc::Gen<T> uniform_in_range(T min, T max) {
  return rc::gen::resize(rc::kNominalSize, rc::gen::inRange<T>(min, max));
}

// One of `values`, chosen evenly and shrinking towards the first
// (rc::gen::element and elementOf do not shrink at all). Repeat a value to
// make it likelier.
template <class T>
rc::Gen<T> element_towards_first(std::vector<T> values) {
  const std::size_t count = values.size();
  return rc::gen::map(uniform_in_range<std::size_t>(0, count),
                      [values = std::move(values)](std::size_t i) { return values[i]; });
}
template <class T>
rc::Gen<T> element_towards_first(std::initializer_list<T> values) {
  return element_towards_first(std::vector<T>(values));
}

}  // namespace shmutils::properties

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
