#include "hv/clock.h"

#include <time.h>

namespace nestvm::hv {

namespace {
uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}
uint64_t measure() {
  const uint64_t n0 = monotonic_ns(), t0 = host_tsc();
  while (monotonic_ns() - n0 < 20000000) {}  // 20 ms
  const uint64_t n1 = monotonic_ns(), t1 = host_tsc();
  return uint64_t((unsigned __int128)(t1 - t0) * 1000000000u / (n1 - n0));
}
}  // namespace

uint64_t tsc_hz() {
  static const uint64_t hz = measure();
  return hz;
}

}  // namespace nestvm::hv
