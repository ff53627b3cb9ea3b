// L0's time base: the host TSC (the guests' TSC is the host's plus an offset) and its rate.
#pragma once
#include <x86intrin.h>

#include <cstdint>

namespace nestvm::hv {

inline uint64_t host_tsc() { return __rdtsc(); }
// Host TSC ticks per second, measured once against CLOCK_MONOTONIC.
uint64_t tsc_hz();
inline uint64_t ns_to_tsc(uint64_t ns) { return uint64_t((unsigned __int128)ns * tsc_hz() / 1000000000u); }
inline uint64_t tsc_to_ns(uint64_t t) { return uint64_t((unsigned __int128)t * 1000000000u / tsc_hz()); }

}  // namespace nestvm::hv
