// isa-debug-exit, as QEMU's hw/misc/debugexit.c: a write of value v to any of its ports stops
// the VM, and nestvm exits with status (v << 1) | 1 (so a test guest can never fake a clean
// exit 0). Reads return 0. QEMU's defaults are iobase=0x501, iosize=2; test suites use
// `-device isa-debug-exit,iobase=0xf4,iosize=0x4`.
#pragma once
#include <cstdint>

#include "hv/io_bus.h"

namespace nestvm::hv {
class Vm;
}

namespace nestvm::vmm {

class DebugExit : public hv::PioDevice {
 public:
  static constexpr uint16_t kDefaultIobase = 0x501;
  static constexpr uint16_t kDefaultIosize = 0x02;

  DebugExit(hv::Vm& vm, uint16_t iobase = kDefaultIobase, uint16_t iosize = kDefaultIosize);

  uint32_t pio_read(uint16_t port, unsigned size) override;
  void pio_write(uint16_t port, unsigned size, uint32_t value) override;

  // The process exit status for a written value, as QEMU computes it.
  static int exit_status(uint64_t value) { return int(uint32_t((value << 1) | 1)); }

 private:
  hv::Vm& vm_;
  uint16_t iobase_;
  uint16_t iosize_;
};

}  // namespace nestvm::vmm
