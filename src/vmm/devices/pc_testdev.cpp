#include "vmm/devices/pc_testdev.h"

#include <cstring>

#include "hv/vm.h"
#include "vmm/devices/io_access.h"

namespace nestvm::vmm {

PcTestDev::PcTestDev(hv::Vm& vm) : vm_(vm), iomem_(kIomemSize, 0) {
  vm.io().add_pio(kIoport, 4, this, "pc-testdev-ioport");
  vm.io().add_pio(kFlushPage, 4, this, "pc-testdev-flush-page");
  vm.io().add_pio(kIoportByte, 4, this, "pc-testdev-ioport-byte");
  vm.io().add_pio(kIrqLine, kIrqLines, this, "pc-testdev-irq-line");
  vm.io().add_mmio(kIomem, kIomemSize, this, "pc-testdev-iomem");
}

namespace {
// The device's port regions and the widest access each accepts (QEMU's valid sizes):
// the memory core cuts an access into pieces at region boundaries and at alignment.
enum class Kind : uint8_t { kScratch, kFlush, kIrq, kNone };
struct Region {
  uint16_t base;
  unsigned size;
  unsigned max;
  Kind kind;
};
Region region_at(uint16_t port) {
  if (port >= PcTestDev::kIoport && port < PcTestDev::kIoport + 4) return {PcTestDev::kIoport, 4, 4, Kind::kScratch};
  if (port >= PcTestDev::kFlushPage && port < PcTestDev::kFlushPage + 4) return {PcTestDev::kFlushPage, 4, 4, Kind::kFlush};
  if (port >= PcTestDev::kIoportByte && port < PcTestDev::kIoportByte + 4)
    return {PcTestDev::kIoportByte, 4, 4, Kind::kScratch};
  if (port >= PcTestDev::kIrqLine && port < PcTestDev::kIrqLine + PcTestDev::kIrqLines)
    return {PcTestDev::kIrqLine, PcTestDev::kIrqLines, 1, Kind::kIrq};
  return {port, 1, 1, Kind::kNone};
}

// Calls f(region, offset in region, piece size, shift in the value) for each piece.
template <typename F>
void for_each_piece(uint16_t port, unsigned size, F&& f) {
  unsigned done = 0;
  while (done < size) {
    const auto p = uint16_t(port + done);
    const Region r = region_at(p);
    const unsigned off = p - r.base;
    unsigned n = r.max;
    while (n > 1 && ((off & (n - 1)) || n > size - done || off + n > r.size)) n >>= 1;
    f(r, off, n, 8 * done);
    done += n;
  }
}
}  // namespace

uint32_t PcTestDev::pio_read(uint16_t port, unsigned size) {
  std::lock_guard lock(mu_);
  uint32_t v = 0;
  for_each_piece(port, size, [&](const Region& r, unsigned off, unsigned n, unsigned shift) {
    uint32_t piece = 0;  // flush-page and irq-line read 0, as do invalid accesses
    if (r.kind == Kind::kScratch) piece = uint32_t((ioport_data_ >> (8 * off)) & size_mask(n));
    else if (r.kind == Kind::kNone) piece = uint32_t(size_mask(n));  // not ours: the floating bus
    v |= piece << shift;
  });
  return v;
}

void PcTestDev::pio_write(uint16_t port, unsigned size, uint32_t value) {
  std::lock_guard lock(mu_);
  for_each_piece(port, size, [&](const Region& r, unsigned off, unsigned n, unsigned shift) {
    const uint32_t piece = uint32_t((value >> shift) & size_mask(n));
    switch (r.kind) {
      case Kind::kScratch: {
        const auto mask = uint32_t(size_mask(n) << (8 * off));
        ioport_data_ = (ioport_data_ & ~mask) | uint32_t(uint64_t(piece) << (8 * off));
        break;
      }
      case Kind::kFlush:
        // QEMU mprotects the page's host mapping away and back so that KVM must fault it in
        // again; the guest sees the same memory before and after. L0's EPT01 is a direct map
        // of guest RAM that is never taken back, so there is no mapping to drop.
        break;
      case Kind::kIrq:
        if (hv::IrqChip* chip = vm_.irqchip()) chip->set_irq(off, piece != 0);
        break;
      case Kind::kNone:
        break;
    }
  });
}

// The iomem region accepts any aligned width up to 4 (QEMU's default); 8-byte accesses arrive
// as two dwords.
uint64_t PcTestDev::mmio_read(uint64_t gpa, unsigned size) {
  std::lock_guard lock(mu_);
  uint64_t v = 0;
  for_each_aligned_piece(gpa - kIomem, size, 4, [&](uint64_t at, unsigned n, unsigned shift) {
    uint64_t piece = size_mask(n);
    if (at + n <= kIomemSize) {
      piece = 0;
      std::memcpy(&piece, &iomem_[at], n);
    }
    v |= piece << shift;
  });
  return v;
}

void PcTestDev::mmio_write(uint64_t gpa, unsigned size, uint64_t value) {
  std::lock_guard lock(mu_);
  for_each_aligned_piece(gpa - kIomem, size, 4, [&](uint64_t at, unsigned n, unsigned shift) {
    if (at + n > kIomemSize) return;
    const uint64_t piece = value >> shift;
    std::memcpy(&iomem_[at], &piece, n);
  });
}

}  // namespace nestvm::vmm
