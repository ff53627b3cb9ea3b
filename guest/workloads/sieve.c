/* Sieve of Eratosthenes over a byte array: branchy, store-heavy. Returns the prime count. */
#include "workload.h"

#define SIEVE_MAX (1u << 20)
static uint8_t composite[SIEVE_MAX];

uint64_t WL(sieve)(uint64_t rounds) {
  uint64_t total = 0;
  for (uint64_t r = 0; r < rounds; ++r) {
    for (uint32_t i = 0; i < SIEVE_MAX; ++i) composite[i] = 0;
    uint64_t count = 0;
    for (uint32_t i = 2; i < SIEVE_MAX; ++i) {
      if (composite[i]) continue;
      ++count;
      for (uint64_t j = (uint64_t)i * i; j < SIEVE_MAX; j += i) composite[j] = 1;
    }
    total += count;
  }
  return total;
}
