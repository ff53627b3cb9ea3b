/* Quicksort of pseudo-random 32-bit keys: compares, swaps, recursion. Returns a checksum. */
#include "workload.h"

#define SORT_N (1u << 17)
static uint32_t keys[SORT_N];

static void quicksort(uint32_t* a, int64_t lo, int64_t hi) {
  while (lo < hi) {
    const uint32_t pivot = a[lo + (hi - lo) / 2];
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) ++i;
      while (a[j] > pivot) --j;
      if (i <= j) {
        const uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
        ++i;
        --j;
      }
    }
    if (j - lo < hi - i) {
      quicksort(a, lo, j);
      lo = i;
    } else {
      quicksort(a, i, hi);
      hi = j;
    }
  }
}

uint64_t WL(sort)(uint64_t rounds) {
  uint64_t sum = 0;
  uint32_t x = 2463534242u;
  for (uint64_t r = 0; r < rounds; ++r) {
    for (uint32_t i = 0; i < SORT_N; ++i) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      keys[i] = x;
    }
    quicksort(keys, 0, SORT_N - 1);
    for (uint32_t i = 0; i < SORT_N; i += 1024) sum = sum * 31 + keys[i];
  }
  return sum;
}
