// The VMX instructions executed by guest code (SDM Vol. 3 Chapter 31, each instruction's
// "Operation"): VMCALL, VMCLEAR, VMLAUNCH, VMPTRLD, VMPTRST, VMRESUME, VMXOFF, VMXON, INVEPT and
// INVVPID. In VMX non-root operation each causes a VM exit unconditionally (SDM §26.1.2) once the
// checks that come before it pass; the exit reports the memory operand's displacement and
// addressing (§28.2.1, §28.2.4). VMREAD and VMWRITE, which VMCS shadowing can complete without an
// exit, are registered with VMCS shadowing, not here.
//
// Root operation: nestvm's guest code never runs in VMX root operation (L0 is C++, and it drives
// the silicon through Cpu::vmclear ... vm_enter), so outside non-root operation the processor is
// not in VMX operation and every one of these is #UD. For VMXON this also covers CR4.VMXE = 0.
// GETSEC (SMX) is not registered: no model offers SMX, CR4.SMXE cannot be set, and GETSEC's #UD
// for CR4.SMXE = 0 comes before its VM exit.
#include "arch/cr.h"
#include "arch/vmx_insn_info.h"
#include "cpu/decoder.h"
#include "cpu/vmx/nonroot.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

// "IF (not in VMX operation) or (CR0.PE = 0) or (RFLAGS.VM = 1) or (IA32_EFER.LMA = 1 and
// CS.L = 0) THEN #UD" comes first in every VMX instruction but VMCALL.
bool vmx_mode_ud(const Cpu& c) {
  return !c.vmx_non_root() || !c.protected_mode() || c.v86_mode() || (c.long_mode() && !c.in_64bit_mode());
}

// VMCALL: "IF not in VMX operation THEN #UD; ELSIF in VMX non-root operation THEN VM exit" at any
// CPL and in every mode.
Status vmcall(Cpu& c, const Insn& i) {
  if (!c.vmx_non_root()) return c.fault(Vector::kUD);
  return c.vm_exit_for(i, ExitReason::VMCALL);
}

// VMLAUNCH, VMRESUME, VMXOFF: no operand, no exit information beyond the length.
template <ExitReason R> Status vmx_no_operand(Cpu& c, const Insn& i) {
  if (vmx_mode_ud(c)) return c.fault(Vector::kUD);
  return c.vm_exit_for(i, R);
}

// VMCLEAR, VMPTRLD, VMPTRST, VMXON (m64): the exit comes before the CPL check and before any
// access to the operand.
template <ExitReason R> Status vmx_memory_operand(Cpu& c, const Insn& i) {
  if (vmx_mode_ud(c)) return c.fault(Vector::kUD);
  if (R == ExitReason::VMXON && !(c.state.cr4 & cr4::kVMXE)) return c.fault(Vector::kUD);
  return c.vm_exit_for(i, R, vmx::displacement_qualification(c, i), vmx::memory_operand_info(i));
}

// INVEPT, INVVPID (r64/r32, m128): the type register is Reg2 of the instruction information.
template <ExitReason R> Status vmx_invalidate(Cpu& c, const Insn& i) {
  if (vmx_mode_ud(c)) return c.fault(Vector::kUD);
  return c.vm_exit_for(i, R, vmx::displacement_qualification(c, i),
                       vmx::memory_operand_info(i) | insn_info::reg2(i.reg));
}

template <Handler H> Handler always(const DecodeInput&, Insn&) { return H; }

// The register forms of the memory-operand instructions are #UD.
template <Handler H> Handler with_memory(const DecodeInput& in, Insn&) { return is_mem(in.ops[0]) ? H : nullptr; }

template <Handler H> Handler with_type_and_memory(const DecodeInput& in, Insn& i) {
  if (!is_reg(in.ops[0]) || !is_mem(in.ops[1])) return nullptr;
  i.reg = gpr_index(in.ops[0].reg.value);
  return H;
}

}  // namespace

void register_vmx(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_VMCALL, &always<&vmcall>);
  t.add(ZYDIS_MNEMONIC_VMLAUNCH, &always<&vmx_no_operand<ExitReason::VMLAUNCH>>);
  t.add(ZYDIS_MNEMONIC_VMRESUME, &always<&vmx_no_operand<ExitReason::VMRESUME>>);
  t.add(ZYDIS_MNEMONIC_VMXOFF, &always<&vmx_no_operand<ExitReason::VMXOFF>>);
  t.add(ZYDIS_MNEMONIC_VMCLEAR, &with_memory<&vmx_memory_operand<ExitReason::VMCLEAR>>);
  t.add(ZYDIS_MNEMONIC_VMPTRLD, &with_memory<&vmx_memory_operand<ExitReason::VMPTRLD>>);
  t.add(ZYDIS_MNEMONIC_VMPTRST, &with_memory<&vmx_memory_operand<ExitReason::VMPTRST>>);
  t.add(ZYDIS_MNEMONIC_VMXON, &with_memory<&vmx_memory_operand<ExitReason::VMXON>>);
  t.add(ZYDIS_MNEMONIC_INVEPT, &with_type_and_memory<&vmx_invalidate<ExitReason::INVEPT>>);
  t.add(ZYDIS_MNEMONIC_INVVPID, &with_type_and_memory<&vmx_invalidate<ExitReason::INVVPID>>);
}

}  // namespace nestvm::cpu
