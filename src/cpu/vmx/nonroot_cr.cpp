// Control-register accesses in VMX non-root operation (SDM Vol. 3 §26.1.3 and §26.3): the CR0/CR4
// guest/host masks and read shadows, CR3-load/store exiting with the CR3-target values, CR8
// load/store exiting and the TPR shadow, CLTS, LMSW and SMSW; the CR-access exit qualification
// (SDM §28.2.1, Table 28-3).
#include "arch/cr.h"
#include "cpu/vmx/nonroot.h"

namespace nestvm::cpu::vmx {

using namespace arch;

namespace {

namespace crq = exit_qual::cr;

Status cr_exit(Cpu& c, const Insn& i, unsigned cr, unsigned access, unsigned gpr) {
  return c.vm_exit_for(i, ExitReason::CR_ACCESS, crq::make(cr, access, gpr));
}

// Whether VMX operation supports `v` in the register (SDM Appendix A.7, A.8): every bit set in
// FIXED0 is 1 and every bit clear in FIXED1 is 0.
bool vmx_supports(uint64_t v, uint64_t fixed0, uint64_t fixed1) { return (v & fixed0) == fixed0 && !(v & ~fixed1); }

// SDM §26.3 MOV to CR0: with "unrestricted guest" CR0.PE and CR0.PG may be 0 in VMX operation
// (the architectural rules on PE/PG, e.g. PG = 1 needs PE = 1, stay with set_cr0).
bool cr0_supported(const Cpu& c, uint64_t v) {
  uint64_t fixed0 = c.vmx_caps().cr0_fixed0;
  if (c.vmx_controls().has2(proc2::kUnrestrictedGuest)) fixed0 &= ~(cr0::kPE | cr0::kPG);
  return vmx_supports(v, fixed0, c.vmx_caps().cr0_fixed1);
}

// SDM §26.1.3 MOV to CR3: no exit for a value equal to one of the first CR3_TARGET_COUNT
// CR3-target values (the count is at most 4, a VM-entry check).
bool is_cr3_target(const VmxControls& ctl, uint64_t v) {
  const unsigned n = ctl.cr3_target_count < 4 ? ctl.cr3_target_count : 4;
  for (unsigned k = 0; k < n; ++k)
    if (ctl.cr3_targets[k] == v) return true;
  return false;
}

}  // namespace

uint64_t guest_read_cr0(const Cpu& c) {
  const VmxControls& ctl = c.vmx_controls();
  return (c.state.cr0 & ~ctl.cr0_mask) | (ctl.cr0_shadow & ctl.cr0_mask);
}

uint64_t guest_read_cr4(const Cpu& c) {
  const VmxControls& ctl = c.vmx_controls();
  return (c.state.cr4 & ~ctl.cr4_mask) | (ctl.cr4_shadow & ctl.cr4_mask);
}

Status mov_from_cr(Cpu& c, const Insn& i, unsigned cr, unsigned gpr, uint64_t& value) {
  const VmxControls& ctl = c.vmx_controls();
  switch (cr) {
    case 0: value = guest_read_cr0(c); return Status::kNext;
    case 4: value = guest_read_cr4(c); return Status::kNext;
    case 3:
      if (ctl.has(proc::kCr3StoreExiting)) return cr_exit(c, i, 3, crq::kAccessMovFrom, gpr);
      value = c.state.cr3;
      return Status::kNext;
    default:
      if (ctl.has(proc::kCr8StoreExiting)) return cr_exit(c, i, 8, crq::kAccessMovFrom, gpr);
      // SDM "Virtualizing MOV from CR8": bits 3:0 of the destination receive VTPR[7:4].
      value = ctl.has(proc::kUseTprShadow) ? (read_vtpr(c) >> 4) & 0xf : c.state.cr8;
      return Status::kNext;
  }
}

Status mov_to_cr(Cpu& c, const Insn& i, unsigned cr, unsigned gpr, uint64_t value) {
  const VmxControls& ctl = c.vmx_controls();
  const VmxCapabilities& caps = c.vmx_caps();
  Status st;
  switch (cr) {
    case 0: {
      // SDM §26.1.3: an exit unless the source matches the read shadow in every bit set in the
      // mask; otherwise (§26.3) those bits keep their value and the others must hold values
      // VMX operation supports.
      if ((value ^ ctl.cr0_shadow) & ctl.cr0_mask) return cr_exit(c, i, 0, crq::kAccessMovTo, gpr);
      const uint64_t v = (c.state.cr0 & ctl.cr0_mask) | (value & ~ctl.cr0_mask);
      if (!cr0_supported(c, v)) return c.fault(Vector::kGP, 0);
      st = c.set_cr0(v);
      break;
    }
    case 3:
      if (ctl.has(proc::kCr3LoadExiting) && !is_cr3_target(ctl, value)) return cr_exit(c, i, 3, crq::kAccessMovTo, gpr);
      st = c.set_cr3(value);
      break;
    case 4: {
      if ((value ^ ctl.cr4_shadow) & ctl.cr4_mask) return cr_exit(c, i, 4, crq::kAccessMovTo, gpr);
      const uint64_t v = (c.state.cr4 & ctl.cr4_mask) | (value & ~ctl.cr4_mask);
      if (!vmx_supports(v, caps.cr4_fixed0, caps.cr4_fixed1)) return c.fault(Vector::kGP, 0);
      st = c.set_cr4(v);
      break;
    }
    default:
      if (ctl.has(proc::kCr8LoadExiting)) return cr_exit(c, i, 8, crq::kAccessMovTo, gpr);
      if (ctl.has(proc::kUseTprShadow)) {
        // SDM "Virtualizing MOV to CR8": CR8 is untouched; bits 3:0 of the source become
        // VTPR[7:4], the rest of VTPR is cleared; reserved source bits still fault.
        if (value & ~0xfull) return c.fault(Vector::kGP, 0);
        return write_vtpr(c, i, uint32_t(value) << 4, false);
      }
      st = c.set_cr8(value);
      break;
  }
  return st == Status::kNext ? Status::kEndBlock : st;
}

// SDM §26.1.3 and §26.3 CLTS: with TS host-owned, an exit when the shadow's TS is 1 and no change
// when it is 0; with TS guest-owned, CR0.TS is cleared unless VMX operation fixes it to 1.
Status clts(Cpu& c, const Insn& i) {
  const VmxControls& ctl = c.vmx_controls();
  if (ctl.cr0_mask & cr0::kTS) {
    if (ctl.cr0_shadow & cr0::kTS) return c.vm_exit_for(i, ExitReason::CR_ACCESS, crq::make(0, crq::kAccessClts, 0));
    return Status::kNext;
  }
  const uint64_t v = c.state.cr0 & ~cr0::kTS;
  if (!cr0_supported(c, v)) return c.fault(Vector::kGP, 0);
  return c.set_cr0(v);
}

// SDM §26.1.3 LMSW: an exit when it would set a host-owned PE that the shadow has clear (LMSW never
// clears PE), or write a host-owned MP, EM or TS with a value other than the shadow's. The
// qualification carries the source; a memory operand's linear address goes to
// GUEST_LINEAR_ADDRESS (SDM §28.2.1). Otherwise (§26.3) host-owned bits keep their value.
Status lmsw(Cpu& c, const Insn& i, uint16_t src, bool mem_operand) {
  const VmxControls& ctl = c.vmx_controls();
  const uint64_t mask = ctl.cr0_mask, shadow = ctl.cr0_shadow;
  if ((mask & src & ~shadow & cr0::kPE) || (mask & (src ^ shadow) & (cr0::kMP | cr0::kEM | cr0::kTS))) {
    const uint64_t q = crq::make(0, crq::kAccessLmsw, 0, mem_operand, src);
    if (mem_operand) return exit_with_linear_address(c, i, ExitReason::CR_ACCESS, q, 0, operand_linear_address(c, i));
    return c.vm_exit_for(i, ExitReason::CR_ACCESS, q);
  }
  const uint64_t cr0 = c.state.cr0;
  uint64_t v = (cr0 & ~0xfull) | (src & 0xf) | (cr0 & cr0::kPE);
  v = (v & ~mask) | (cr0 & mask);
  if (!cr0_supported(c, v)) return c.fault(Vector::kGP, 0);
  const Status st = c.set_cr0(v);
  return st == Status::kNext ? Status::kEndBlock : st;
}

}  // namespace nestvm::cpu::vmx
