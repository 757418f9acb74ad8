#include "shmutils/framework/address_perturbation.hpp"

#include <sys/mman.h>

#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/shm_object.hpp"

namespace shmutils::framework {

Segment attach_at_random_base(std::mt19937_64& random,
                              const std::function<Segment(const SegmentOptions&)>& attach) {
  constexpr std::uintptr_t kLow = 0x100000000000ULL;   // 16 TiB
  constexpr std::uintptr_t kHigh = 0x600000000000ULL;  // 96 TiB
  constexpr std::uintptr_t kAlign = 2 << 20;
  for (int attempt = 0; attempt < 64; ++attempt) {
    std::uintptr_t base =
        std::uniform_int_distribution<std::uintptr_t>(kLow / kAlign, kHigh / kAlign)(random) *
        kAlign;
    try {
      SegmentOptions options;
      options.address_hint = reinterpret_cast<void*>(base);  // NOLINT(performance-no-int-to-ptr)
      return attach(options);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::AlreadyExists) throw;
    }
  }
  throw Error(ErrorKind::OutOfMemory, "segment", "perturb", "no free random base found");
}

Segment attach_perturbed(Segment& inherited, std::mt19937_64& random) {
  Segment moved = attach_at_random_base(random, [&](const SegmentOptions& options) {
    return Segment::adopt(
        ShmObject::adopt(sys::dup_cloexec(inherited.fd(), "segment"), inherited.name(), true, true),
        options);
  });
  sys::mprotect(inherited.base(), inherited.mapped_size(), PROT_NONE, "inherited segment range");
  return moved;
}

}  // namespace shmutils::framework
