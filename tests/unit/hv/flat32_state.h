// The state the first-light tests start L1 in: 32-bit protected mode, flat 4 GiB code and data
// segments (selectors 0x08/0x10, as the tests' GDTs lay them out), a busy 32-bit TSS at 0x18, no
// LDT, paging off, the stack at 0x80000 and interrupts off.
#pragma once
#include <cstdint>

#include "arch/cr.h"
#include "arch/segment.h"
#include "cpu/state.h"

namespace nestvm::test {

inline cpu::CpuState flat32_state(uint32_t eip) {
  using arch::SegReg;
  cpu::CpuState s;
  s.cr0 = arch::cr0::kPE | arch::cr0::kET;
  s.seg[unsigned(SegReg::kCS)] = {0x08, 0, 0xffffffff, 0xc09b};
  for (SegReg r : {SegReg::kSS, SegReg::kDS, SegReg::kES, SegReg::kFS, SegReg::kGS})
    s.seg[unsigned(r)] = {0x10, 0, 0xffffffff, 0xc093};
  s.tr = {0x18, 0, 0x67, arch::ar::kP | arch::sys_type::kTss32Busy};
  s.ldtr = {0, 0, 0, arch::ar::kUnusable};
  s.rip = eip;
  s.gpr[cpu::kRsp] = 0x80000;
  s.rflags = 2;
  return s;
}

}  // namespace nestvm::test
