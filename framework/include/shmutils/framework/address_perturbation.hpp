// shmutils::framework address perturbation — a segment mapped again at a
// random address, as a spawned process or ASLR would map it.
//
// Contract
//   attach_at_random_base(random, attach) calls attach(options) with
//   options.address_hint at a random 2 MiB aligned base between 16 and 96 TiB,
//   retrying (64 times at most) while the range is taken.
//   attach_perturbed(inherited, random) maps the segment of an inherited
//   attachment (a forked child's copy) at a random base and turns the
//   inherited range into a guard (PROT_NONE): a pointer computed before the
//   fork faults at once instead of working by luck. The inherited Segment
//   must not be used afterwards, only destroyed or abandoned.
#pragma once

#include <functional>
#include <random>

#include "shmutils/shm/segment.hpp"

namespace shmutils::framework {

Segment attach_at_random_base(std::mt19937_64& random,
                              const std::function<Segment(const SegmentOptions&)>& attach);
Segment attach_perturbed(Segment& inherited, std::mt19937_64& random);

}  // namespace shmutils::framework
