// How QEMU's memory core hands an access to a device region (memory_access_size and
// access_with_adjusted_size in system/memory.c): an access is cut into naturally aligned pieces
// no wider than the region accepts, and each piece is checked against the region's valid sizes.
// Devices shaped like QEMU's use these helpers so that odd-sized or unaligned guest accesses
// land on the same registers as under QEMU.
#pragma once
#include <cstdint>

namespace nestvm::vmm {

inline constexpr uint64_t size_mask(unsigned size) { return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1; }

// Calls f(offset, piece_size, shift) for each naturally aligned piece of the access
// [offset, offset + size) at most `max` bytes wide; `shift` is the piece's bit position in the
// access's value.
template <typename F>
void for_each_aligned_piece(uint64_t offset, unsigned size, unsigned max, F&& f) {
  unsigned done = 0;
  while (done < size) {
    const uint64_t at = offset + done;
    unsigned n = max;
    while (n > 1 && ((at & (n - 1)) || n > size - done)) n >>= 1;
    f(at, n, 8 * done);
    done += n;
  }
}

// Little-endian byte i of v.
inline constexpr uint8_t byte_of(uint64_t v, unsigned i) { return uint8_t(v >> (8 * i)); }

}  // namespace nestvm::vmm
