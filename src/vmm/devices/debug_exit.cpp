#include "vmm/devices/debug_exit.h"

#include "hv/vm.h"
#include "vmm/devices/io_access.h"

namespace nestvm::vmm {

DebugExit::DebugExit(hv::Vm& vm, uint16_t iobase, uint16_t iosize) : vm_(vm), iobase_(iobase), iosize_(iosize) {
  vm.io().add_pio(iobase, iosize, this, "isa-debug-exit");
}

uint32_t DebugExit::pio_read(uint16_t, unsigned) { return 0; }

void DebugExit::pio_write(uint16_t port, unsigned size, uint32_t value) {
  // QEMU cuts an unaligned access into aligned pieces (memory_access_size); the first piece that
  // lands in the region stops the VM with its own value.
  const uint64_t offset = uint16_t(port - iobase_);
  bool stopped = false;
  for_each_aligned_piece(offset, size, 4, [&](uint64_t at, unsigned n, unsigned shift) {
    if (stopped || at >= iosize_) return;
    stopped = true;
    vm_.request_stop(hv::StopReason::kDebugExit, exit_status((value >> shift) & size_mask(n)));
  });
}

}  // namespace nestvm::vmm
