// QEMU's pc-testdev (hw/misc/pc-testdev.c), the ISA device kvm-unit-tests drive:
// - ports 0xe0-0xe3: a 32-bit scratch register, any aligned width;
// - ports 0xe4-0xe7: "flush page": a dword write names a guest page whose host mapping QEMU
//   drops and restores, so that KVM refaults it; reads 0;
// - ports 0xe8-0xeb: the same scratch register, implemented byte by byte;
// - ports 0x2000-0x2017: a byte written to 0x2000 + n sets interrupt line n to (byte != 0);
// - memory 0xff000000-0xff00ffff: 64 KiB of scratch MMIO.
// Accesses are cut into aligned pieces and checked as QEMU's memory core does (io_access.h).
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

#include "hv/io_bus.h"

namespace nestvm::hv {
class Vm;
}

namespace nestvm::vmm {

class PcTestDev : public hv::PioDevice, public hv::MmioDevice {
 public:
  static constexpr uint16_t kIoport = 0xe0, kFlushPage = 0xe4, kIoportByte = 0xe8, kIrqLine = 0x2000;
  static constexpr unsigned kIrqLines = 24;
  static constexpr uint64_t kIomem = 0xff000000, kIomemSize = 0x10000;

  explicit PcTestDev(hv::Vm& vm);

  uint32_t pio_read(uint16_t port, unsigned size) override;
  void pio_write(uint16_t port, unsigned size, uint32_t value) override;
  uint64_t mmio_read(uint64_t gpa, unsigned size) override;
  void mmio_write(uint64_t gpa, unsigned size, uint64_t value) override;

 private:
  hv::Vm& vm_;
  std::mutex mu_;
  uint32_t ioport_data_ = 0;
  std::vector<uint8_t> iomem_;
};

}  // namespace nestvm::vmm
