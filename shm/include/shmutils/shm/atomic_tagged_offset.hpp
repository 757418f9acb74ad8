// shmutils::AtomicTaggedOffset — an atomic segment offset with a version tag,
// for lock-free lists inside a segment (compare-and-swap without ABA).
//
// Contract
//   Lives:       inside a segment; 8 bytes, lock-free on every supported
//                target (static_assert), standard layout.
//   Value:       an 8-byte aligned offset below 2^44 (16 TiB) and a 23-bit tag.
//                Every successful store or CAS bumps the tag, so a CAS whose
//                expected value was read before an A->B->A sequence fails.
//                The tag wraps after 2^23 changes: ABA needs that many changes
//                between one thread's load and its CAS.
//   Memory order: acquire on loads, acq_rel on successful CAS, release on stores.
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>

namespace shmutils {

struct TaggedOffset {
  std::uint64_t offset = 0;  // 0 = null
  std::uint32_t tag = 0;
  friend bool operator==(const TaggedOffset&, const TaggedOffset&) = default;
};

class AtomicTaggedOffset {
 public:
  static constexpr unsigned kTagBits = 23;
  static constexpr std::uint64_t kMaxOffset = (std::uint64_t{1} << 44) - 8;
  static constexpr std::uint64_t kAlignment = 8;

  TaggedOffset load() const noexcept { return unpack(word_.load(std::memory_order_acquire)); }

  // Stores a new offset (tag bumped).
  void store(std::uint64_t offset) noexcept {
    std::uint64_t old = word_.load(std::memory_order_relaxed);
    while (!word_.compare_exchange_weak(old, pack(offset, unpack(old).tag + 1),
                                        std::memory_order_release, std::memory_order_relaxed)) {
    }
  }

  // Replaces `expected` (offset and tag) with `desired_offset` and the next
  // tag; on failure, `expected` receives the current value.
  bool compare_exchange(TaggedOffset& expected, std::uint64_t desired_offset) noexcept {
    std::uint64_t old = pack(expected.offset, expected.tag);
    bool swapped =
        word_.compare_exchange_strong(old, pack(desired_offset, expected.tag + 1),
                                      std::memory_order_acq_rel, std::memory_order_acquire);
    if (!swapped) expected = unpack(old);
    return swapped;
  }

  static constexpr bool representable(std::uint64_t offset) noexcept {
    return offset <= kMaxOffset && offset % kAlignment == 0;
  }

 private:
  static constexpr std::uint64_t kTagMask = (std::uint64_t{1} << kTagBits) - 1;
  static constexpr std::uint64_t pack(std::uint64_t offset, std::uint32_t tag) noexcept {
    return ((offset / kAlignment) << kTagBits) | (tag & kTagMask);
  }
  static constexpr TaggedOffset unpack(std::uint64_t word) noexcept {
    return {(word >> kTagBits) * kAlignment, static_cast<std::uint32_t>(word & kTagMask)};
  }

  std::atomic<std::uint64_t> word_{0};
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::is_standard_layout_v<AtomicTaggedOffset>);
static_assert(sizeof(AtomicTaggedOffset) == 8);

}  // namespace shmutils
