// Helpers for the protected-mode tests (events, far transfers, segment loads): descriptor and
// gate encodings, extra GDT entries, TSS fields, and entering CPL 3 directly.
#pragma once
#include <cstdint>

#include "test_machine.h"

namespace nestvm::test::pm {

// Code/data descriptor (SDM Vol. 3 Figure 3-8). `type` is the 4-bit type field.
constexpr uint64_t seg_desc(uint32_t base, uint32_t limit, uint32_t type, unsigned dpl, bool db = true, bool g = false,
                            bool l = false, bool present = true, bool s = true) {
  return (limit & 0xffff) | (uint64_t(base & 0xffffff) << 16) | (uint64_t(type & 0xf) << 40) | (uint64_t(s) << 44) |
         (uint64_t(dpl & 3) << 45) | (uint64_t(present) << 47) | (uint64_t((limit >> 16) & 0xf) << 48) |
         (uint64_t(l) << 53) | (uint64_t(db) << 54) | (uint64_t(g) << 55) | (uint64_t(base >> 24) << 56);
}
// System descriptor (LDT, TSS), 8-byte form.
constexpr uint64_t sys_desc(uint32_t base, uint32_t limit, uint32_t type, unsigned dpl = 0, bool present = true) {
  return seg_desc(base, limit, type, dpl, false, false, false, present, false);
}
// Call/interrupt/trap/task gate, 8-byte form (the low half of a 64-bit gate).
constexpr uint64_t gate_desc(uint16_t sel, uint32_t offset, uint32_t type, unsigned dpl, unsigned params = 0,
                             bool present = true) {
  return (offset & 0xffff) | (uint64_t(sel) << 16) | (uint64_t(params & 0x1f) << 32) | (uint64_t(type & 0xf) << 40) |
         (uint64_t(dpl & 3) << 45) | (uint64_t(present) << 47) | (uint64_t(offset >> 16) << 48);
}

// Types (SDM Vol. 3 Table 3-1 / 3-2).
inline constexpr uint32_t kData = 0x3;         // read/write, accessed
inline constexpr uint32_t kDataRo = 0x1;       // read-only, accessed
inline constexpr uint32_t kDataDown = 0x7;     // read/write expand-down, accessed
inline constexpr uint32_t kCode = 0xb;         // execute/read, accessed
inline constexpr uint32_t kCodeXo = 0x9;       // execute-only, accessed
inline constexpr uint32_t kCodeConf = 0xf;     // conforming execute/read, accessed

// Writes `desc` at GDT selector `sel` and grows the GDT limit to cover it.
inline void set_gdt(TestMachine& m, uint16_t sel, uint64_t desc) {
  const uint64_t off = sel & ~7u;
  m.poke<uint64_t>(layout::kGdt + off, desc);
  if (m.cpu.state.gdtr.limit < off + 7) m.cpu.state.gdtr.limit = uint16_t(off + 7);
}
inline uint64_t gdt(const TestMachine& m, uint16_t sel) { return m.peek<uint64_t>(layout::kGdt + (sel & ~7u)); }

// The 32-bit TSS at layout::kTss as the current task (TR = sel::kTss), with ESP0/SS0.
inline void use_tss32(TestMachine& m, uint32_t esp0, uint16_t ss0 = sel::kData) {
  m.poke<uint32_t>(layout::kTss + 4, esp0);
  m.poke<uint16_t>(layout::kTss + 8, ss0);
  m.cpu.state.tr = {sel::kTss, layout::kTss, 0x67, arch::ar::kP | arch::sys_type::kTss32Busy};
}
// RSP0 and IST1-7 of the 64-bit TSS at layout::kTss (enter_long64 already loads TR).
inline void set_rsp0(TestMachine& m, uint64_t rsp0) { m.poke<uint64_t>(layout::kTss + 4, rsp0); }
inline void set_ist(TestMachine& m, unsigned n, uint64_t rsp) { m.poke<uint64_t>(layout::kTss + 0x24 + 8 * (n - 1), rsp); }

// Loads CS:RIP, SS:RSP and DS/ES/FS/GS for CPL 3 directly (user selectors of the standard GDT).
inline void enter_user(TestMachine& m, uint16_t cs, uint64_t rip, uint64_t rsp) {
  m.load_seg(arch::SegReg::kCS, cs);
  for (arch::SegReg s : {arch::SegReg::kSS, arch::SegReg::kDS, arch::SegReg::kES, arch::SegReg::kFS, arch::SegReg::kGS})
    m.load_seg(s, sel::kUserData);
  m.cpu.state.rip = rip;
  m.cpu.state.gpr[cpu::kRsp] = rsp;
  m.cpu.refresh_mode();
}

// A 32-bit IDT gate of any type at `vector`.
inline void set_idt32(TestMachine& m, uint8_t vector, uint64_t desc) { m.poke<uint64_t>(layout::kIdt + vector * 8, desc); }

}  // namespace nestvm::test::pm
