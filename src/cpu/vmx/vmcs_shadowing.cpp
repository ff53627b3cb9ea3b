// VMREAD and VMWRITE executed by guest code, and VMCS shadowing (SDM Vol. 3 §25.10, §25.6.15;
// Vol. 2 VMREAD/VMWRITE "Operation"). In VMX non-root operation with "VMCS shadowing", a
// VMREAD/VMWRITE whose field has its bit clear in the VMREAD/VMWRITE bitmap acts on the shadow
// VMCS the VMCS link pointer references, without a VM exit; otherwise it exits with the
// instruction information of Table 28-14. nestvm's guest code never runs in VMX root operation
// (L0 is C++ and uses Cpu::vmread/vmwrite), so outside non-root operation both are #UD.
#include "arch/rflags.h"
#include "arch/vmx_insn_info.h"
#include "cpu/decoder.h"
#include "cpu/insn/operand.h"
#include "cpu/vmx/nonroot.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

// "IF (not in VMX operation) or (CR0.PE = 0) or (RFLAGS.VM = 1) or (IA32_EFER.LMA = 1 and
// CS.L = 0) THEN #UD".
bool vmx_mode_ud(const Cpu& c) {
  return !c.vmx_non_root() || !c.protected_mode() || c.v86_mode() || (c.long_mode() && !c.in_64bit_mode());
}

// "VMCS shadowing is 0 OR the encoding sets bits in range 63:15 OR the bit for bits 14:0 of the
// encoding is 1 in the bitmap" (the bitmaps are 4 KiB, in host-physical memory).
bool shadowing_exits(Cpu& c, uint64_t encoding, uint64_t bitmap) {
  if (!c.vmx_controls().has2(proc2::kVmcsShadowing) || (encoding >> 15)) return true;
  const uint64_t pa = bitmap + ((encoding & 0x7fff) >> 3);
  const uint8_t* page = c.mem().ram_page(pa);
  if (!page) return true;  // not memory: the bus reads all ones
  return (page[pa & (kPageSize - 1)] >> (encoding & 7)) & 1;
}

// Table 28-14: the operand that is not the encoding (Reg1 or the memory addressing, bit 10 =
// register), and the encoding's register as Reg2.
template <bool Mem> uint32_t instruction_info(const Insn& i) {
  const uint32_t other = Mem ? vmx::memory_operand_info(i) : (insn_info::kRegisterOperand | insn_info::reg1(i.rm));
  return other | insn_info::reg2(i.reg);
}

template <bool Mem> Status shadowing_exit(Cpu& c, const Insn& i, ExitReason reason) {
  return c.vm_exit_for(i, reason, Mem ? vmx::displacement_qualification(c, i) : 0, instruction_info<Mem>(i));
}

// The VMCS that VMREAD/VMWRITE use in non-root operation: the one the VMCS link pointer
// references (VM entry checked that it is a shadow VMCS). Invalid when the pointer is ~0.
VmcsRegion shadow_vmcs(Cpu& c) {
  const uint64_t link = c.vmx_controls().vmcs_link_pointer;
  if (link == ~0ull || (link & (kPageSize - 1))) return VmcsRegion();
  return VmcsRegion(c.mem().ram_page(link));
}

// SDM Vol. 3 §31.2. VMfailValid writes the VM-instruction error field of the current VMCS, the
// one controlling non-root operation ("executed only if there is a current VMCS").
void vm_succeed(Cpu& c) { c.set_status_flags(0); }
void vm_fail_invalid(Cpu& c) { c.set_status_flags(rflags::kCF); }
void vm_fail_valid(Cpu& c, VmxError e) {
  c.current_vmcs().write(VmcsField::VM_INSTRUCTION_ERROR, uint32_t(e));
  c.set_status_flags(rflags::kZF);
}

// VMREAD r/m, r: the encoding in ModRM.reg, the destination in r/m. N: 8 in 64-bit mode, 4
// outside IA-32e mode (whatever CS.D); a field shorter than N is zero-extended, a longer one
// truncated.
template <unsigned N, bool Mem> Status vmread(Cpu& c, const Insn& i) {
  if (vmx_mode_ud(c)) return c.fault(Vector::kUD);
  const uint64_t encoding = get_reg<N>(c, i.reg);
  if (shadowing_exits(c, encoding, c.vmx_controls().vmread_bitmap)) return shadowing_exit<Mem>(c, i, ExitReason::VMREAD);
  if (c.cpl() > 0) return c.fault(Vector::kGP, 0);
  VmcsRegion shadow = shadow_vmcs(c);
  if (!shadow.valid()) {
    vm_fail_invalid(c);
    return Status::kNext;
  }
  const auto field = lookup_vmcs_encoding(encoding);
  if (!field) {
    vm_fail_valid(c, VmxError::UNSUPPORTED_VMCS_COMPONENT);
    return Status::kNext;
  }
  const uint64_t value = shadow.read_encoded(*field);
  if (Mem) {
    const Status st = write_mem<N>(c, i, value);
    if (st != Status::kNext) return st;
  } else {
    set_reg<N>(c, i.rm, value);
  }
  vm_succeed(c);
  return Status::kNext;
}

// VMWRITE r, r/m: the encoding in ModRM.reg, the value in r/m. A fault reading a memory source
// comes after the VMCS-pointer check and before the field checks (SDM Vol. 2 VMWRITE).
template <unsigned N, bool Mem> Status vmwrite(Cpu& c, const Insn& i) {
  if (vmx_mode_ud(c)) return c.fault(Vector::kUD);
  const uint64_t encoding = get_reg<N>(c, i.reg);
  if (shadowing_exits(c, encoding, c.vmx_controls().vmwrite_bitmap)) return shadowing_exit<Mem>(c, i, ExitReason::VMWRITE);
  if (c.cpl() > 0) return c.fault(Vector::kGP, 0);
  VmcsRegion shadow = shadow_vmcs(c);
  if (!shadow.valid()) {
    vm_fail_invalid(c);
    return Status::kNext;
  }
  uint64_t value;
  if (Mem) {
    const Status st = read_mem<N>(c, i, value);
    if (st != Status::kNext) return st;
  } else {
    value = get_reg<N>(c, i.rm);
  }
  const auto field = lookup_vmcs_encoding(encoding);
  if (!field) {
    vm_fail_valid(c, VmxError::UNSUPPORTED_VMCS_COMPONENT);
    return Status::kNext;
  }
  // VM-exit information fields are writable only where IA32_VMX_MISC[29] says so.
  if (field->info->read_only() && !(c.vmx_caps().misc & (1ull << 29))) {
    vm_fail_valid(c, VmxError::VMWRITE_READ_ONLY_VMCS_COMPONENT);
    return Status::kNext;
  }
  shadow.write_encoded(*field, value);
  vm_succeed(c);
  return Status::kNext;
}

// Not in real mode (CR0.PE = 0) or compatibility mode: #UD whatever the VMX state, so those
// decode modes have no handler. The CPU model does not decide: it is what CPUID tells the guest,
// and the silicon runs VMX non-root operation whatever that says. `value_op` is the r/m operand.
template <template <unsigned, bool> class H>
Handler select(const DecodeInput& in, Insn& i, unsigned value_op, unsigned encoding_op) {
  if (in.mode == ZYDIS_MACHINE_MODE_REAL_16 || in.mode == ZYDIS_MACHINE_MODE_LONG_COMPAT_32 ||
      in.mode == ZYDIS_MACHINE_MODE_LONG_COMPAT_16)
    return nullptr;
  i.reg = gpr_index(in.ops[encoding_op].reg.value);
  const bool mem = is_mem(in.ops[value_op]);
  if (!mem) i.rm = gpr_index(in.ops[value_op].reg.value);
  if (in.in_64bit()) return mem ? &H<8, true>::run : &H<8, false>::run;
  return mem ? &H<4, true>::run : &H<4, false>::run;
}

template <unsigned N, bool Mem> struct Vmread { static Status run(Cpu& c, const Insn& i) { return vmread<N, Mem>(c, i); } };
template <unsigned N, bool Mem> struct Vmwrite { static Status run(Cpu& c, const Insn& i) { return vmwrite<N, Mem>(c, i); } };

Handler select_vmread(const DecodeInput& in, Insn& i) { return select<Vmread>(in, i, 0, 1); }
Handler select_vmwrite(const DecodeInput& in, Insn& i) { return select<Vmwrite>(in, i, 1, 0); }

}  // namespace

void register_vmcs_shadowing(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_VMREAD, &select_vmread);
  t.add(ZYDIS_MNEMONIC_VMWRITE, &select_vmwrite);
}

}  // namespace nestvm::cpu
