// The I/O permission check of IN, OUT, INS and OUTS (SDM Vol. 1 §19.5 "Protected-Mode I/O").
#pragma once
#include "cpu/cpu.h"

namespace nestvm::cpu {

// The TSS I/O permission bitmap test (SDM Vol. 1 §19.5.2): #GP(0) unless every bit for ports
// [port, port + size) is 0. Returns kFault with the exception pending when access is denied
// (or when reading the TSS faults).
Status check_io_bitmap(Cpu& c, uint16_t port, unsigned size);

// SDM Vol. 1 §19.5: in real mode, and in protected mode with CPL <= IOPL, I/O is allowed; in
// protected mode with CPL > IOPL, and always in virtual-8086 mode, the bitmap decides.
inline Status check_io_permission(Cpu& c, uint16_t port, unsigned size) {
  if (!c.protected_mode()) return Status::kNext;
  const unsigned iopl = unsigned((c.state.rflags & arch::rflags::kIOPL) >> arch::rflags::kIoplShift);
  if (!c.v86_mode() && c.cpl() <= iopl) return Status::kNext;
  return check_io_bitmap(c, port, size);
}

}  // namespace nestvm::cpu
