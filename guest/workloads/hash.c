/* Open-addressing hash table: multiply-shift hashing, probes, inserts and lookups.
 * Returns the number of successful lookups plus a checksum of the stored values. */
#include "workload.h"

#define TABLE_BITS 16
#define TABLE_SIZE (1u << TABLE_BITS)
static uint64_t table_keys[TABLE_SIZE];
static uint64_t table_vals[TABLE_SIZE];

static inline uint32_t slot_of(uint64_t key) {
  return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> (64 - TABLE_BITS));
}

uint64_t WL(hash)(uint64_t rounds) {
  uint64_t found = 0, check = 0;
  for (uint64_t r = 0; r < rounds; ++r) {
    for (uint32_t i = 0; i < TABLE_SIZE; ++i) table_keys[i] = 0;
    uint64_t k = r * 0x100000001b3ull + 1;
    /* Fill to 3/4 of the table. */
    for (uint32_t n = 0; n < TABLE_SIZE / 4 * 3; ++n) {
      k = k * 6364136223846793005ull + 1442695040888963407ull;
      const uint64_t key = k | 1;
      uint32_t s = slot_of(key);
      while (table_keys[s] && table_keys[s] != key) s = (s + 1) & (TABLE_SIZE - 1);
      table_keys[s] = key;
      table_vals[s] = key >> 7;
    }
    /* Look up the same sequence, then one that mostly misses. */
    k = r * 0x100000001b3ull + 1;
    for (uint32_t n = 0; n < TABLE_SIZE / 2 * 3; ++n) {
      k = k * 6364136223846793005ull + 1442695040888963407ull;
      const uint64_t key = n < TABLE_SIZE / 4 * 3 ? (k | 1) : (k & ~1ull);
      uint32_t s = slot_of(key);
      while (table_keys[s]) {
        if (table_keys[s] == key) {
          ++found;
          check += table_vals[s];
          break;
        }
        s = (s + 1) & (TABLE_SIZE - 1);
      }
    }
  }
  return found ^ (check << 20);
}
