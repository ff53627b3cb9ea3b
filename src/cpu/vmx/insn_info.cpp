// Exit information of VM exits caused by instructions with a memory operand: the displacement
// qualification, the addressing part of the instruction-information field and the guest-linear
// address (SDM Vol. 3 §28.2.1 and §28.2.4).
#include "arch/vmx_insn_info.h"
#include "cpu/memory.h"
#include "cpu/vmx/nonroot.h"

namespace nestvm::cpu::vmx {

uint64_t displacement_qualification(const Cpu& c, const Insn& i) {
  if (!(i.flags & insn_flags::kHasMem)) return 0;
  const uint64_t disp = uint64_t(int64_t(i.disp));
  // SDM Table 28-1: "RIP-relative addressing ... the exit qualification is loaded with the sum
  // of the displacement field and the appropriate RIP value" (that of the next instruction).
  if (i.base == kRegRip) return disp + c.state.rip + i.len;
  return disp;
}

uint32_t memory_operand_info(const Insn& i) {
  arch::insn_info::MemOperand m;
  m.scale = i.scale;
  m.address_size = i.asz;
  m.segment = i.seg;
  // RIP-relative addressing has neither a base nor an index register in these formats.
  m.base = i.base < kRegNone ? int(i.base) : -1;
  m.index = i.index < kRegNone ? int(i.index) : -1;
  return arch::insn_info::memory(m);
}

uint64_t operand_linear_address(const Cpu& c, const Insn& i) {
  const uint64_t la = c.seg_cache(SegReg(i.seg)).base + c.effective_address(i);
  return c.in_64bit_mode() ? la : la & 0xffffffffull;
}

Status exit_with_linear_address(Cpu& c, const Insn& i, arch::ExitReason reason, uint64_t qualification,
                                uint32_t insn_info, uint64_t linear_address) {
  VmExitInfo e;
  e.reason = uint32_t(reason);
  e.qualification = qualification;
  e.guest_linear_address = linear_address;
  e.instruction_len = i.len;
  e.instruction_info = insn_info;
  return c.vm_exit(e);
}

}  // namespace nestvm::cpu::vmx
