// The TSS I/O permission bitmap (SDM Vol. 1 §19.5.2, Vol. 3 §8.2.1 and §8.7).
#include "cpu/insn/io_permission.h"

#include "cpu/memory.h"

namespace nestvm::cpu {

using namespace arch;

namespace {

// The I/O map base address field of a 32-bit or 64-bit TSS (SDM Vol. 3 Figures 8-2 and 8-11).
constexpr uint32_t kIoMapBaseOffset = 0x66;

}  // namespace

Status check_io_bitmap(Cpu& c, uint16_t port, unsigned size) {
  const Segment& tr = c.state.tr;
  const uint32_t type = tr.ar & ar::kTypeMask;
  // Only a 32-bit TSS (a 64-bit TSS in IA-32e mode) has a bitmap; a 16-bit TSS denies.
  if ((tr.ar & ar::kUnusable) || (tr.ar & ar::kS) || (type != sys_type::kTss32Avail && type != sys_type::kTss32Busy))
    return c.fault(Vector::kGP, 0);
  if (tr.limit < kIoMapBaseOffset + 1) return c.fault(Vector::kGP, 0);
  uint16_t base;
  Status st = c.read_system<uint16_t>(tr.base + kIoMapBaseOffset, base);
  if (st != Status::kNext) return st;
  // The processor reads the two bytes holding the bits of the first port; a byte beyond the
  // TSS limit counts as all ones (so a map base at or past the limit denies every port).
  const uint64_t off = uint64_t(base) + port / 8;
  const unsigned shift = port & 7;
  if (off > tr.limit) return c.fault(Vector::kGP, 0);
  uint16_t bits;
  if (off + 1 <= tr.limit) {
    st = c.read_system<uint16_t>(tr.base + off, bits);
  } else {
    uint8_t lo;
    st = c.read_system<uint8_t>(tr.base + off, lo);
    bits = uint16_t(0xff00 | lo);
  }
  if (st != Status::kNext) return st;
  const uint32_t mask = ((1u << size) - 1) << shift;
  if (bits & mask) return c.fault(Vector::kGP, 0);
  return Status::kNext;
}

}  // namespace nestvm::cpu
