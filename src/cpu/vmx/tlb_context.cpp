// VMX and the TLB (SDM Vol. 3 §29.4): the address space translations are tagged with in VMX
// non-root operation (VPID, and the EP4TA of combined mappings under EPT), what VM entries and
// VM exits invalidate, and INVEPT/INVVPID as L0 executes them.
#include "arch/cr.h"
#include "arch/vmcs.h"
#include "arch/vmentry_checks.h"
#include "cpu/memory.h"

namespace nestvm::cpu {

using namespace arch;

namespace {

uint16_t pcid_of(uint64_t cr3, uint64_t cr4) { return (cr4 & cr4::kPCIDE) ? uint16_t(cr3 & cr3::kPcidMask) : 0; }

uint32_t secondary_controls(VmcsRegion& v) {
  const uint32_t proc = uint32_t(v.read(VmcsField::CPU_BASED_VM_EXEC_CONTROL));
  return (proc & proc::kActivateSecondary) ? uint32_t(v.read(VmcsField::SECONDARY_VM_EXEC_CONTROL)) : 0;
}

}  // namespace

// §29.4.3.3: with "enable VPID" = 0, VM entries and VM exits invalidate every linear and combined
// mapping tagged with VPID 0000H (all PCIDs, all EP4TAs); with it = 1 they invalidate nothing,
// so the guest's translations (tagged with its VPID) survive the round trip through L0.
void Cpu::vmx_tlb_enter(VmcsRegion& v) {
  const uint32_t proc2 = secondary_controls(v);
  const bool vpid_enabled = proc2 & proc2::kEnableVpid;
  TlbContext c;
  c.vpid = vpid_enabled ? uint16_t(v.read(VmcsField::VIRTUAL_PROCESSOR_ID)) : 0;
  c.ep4ta = (proc2 & proc2::kEnableEpt) ? eptp_ep4ta(v.read(VmcsField::EPT_POINTER)) : kNoEpt;
  c.pcid = pcid_of(v.read(VmcsField::GUEST_CR3), v.read(VmcsField::GUEST_CR4));
  tlb_.switch_context(c, !vpid_enabled);
}

// A VM exit (or a VM-entry failure after guest state was loaded): the controls are those of `v`.
void Cpu::vmx_tlb_exit(VmcsRegion& v) {
  TlbContext c;  // VMX root operation: VPID 0, linear mappings
  c.pcid = pcid_of(v.read(VmcsField::HOST_CR3), v.read(VmcsField::HOST_CR4));
  tlb_.switch_context(c, !(secondary_controls(v) & proc2::kEnableVpid));
}

// SDM Vol. 2 INVEPT "Operation", for VMX root operation at CPL 0 (L0's checks done).
VmxResult Cpu::invept(uint64_t type, uint64_t eptp) {
  const uint64_t cap = vmx_caps_.ept_vpid_cap;
  const bool supported = (cap & ept_vpid_cap::kInvept) &&
                         ((type == uint64_t(InveptType::kSingleContext) && (cap & ept_vpid_cap::kInveptSingleContext)) ||
                          (type == uint64_t(InveptType::kAllContext) && (cap & ept_vpid_cap::kInveptAllContext)));
  if (!supported) return vmx_fail(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID);
  if (type == uint64_t(InveptType::kSingleContext)) {
    // The EPTP must be one VM entry would accept; mappings of its EP4TA go, for every VPID and
    // PCID (guest-physical mappings are not cached apart from combined ones).
    if (!arch::check_eptp(vmx_caps_, eptp).ok()) return vmx_fail(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID);
    tlb_.flush_ep4ta(eptp_ep4ta(eptp));
  } else {
    tlb_.flush_all_ep4tas();
  }
  return {};
}

// SDM Vol. 2 INVVPID "Operation". VPID 0 (VMX root operation's own) is never a valid operand.
VmxResult Cpu::invvpid(uint64_t type, uint64_t desc_vpid, uint64_t desc_linear_address) {
  const uint64_t cap = vmx_caps_.ept_vpid_cap;
  const uint64_t type_cap[] = {ept_vpid_cap::kInvvpidIndividualAddr, ept_vpid_cap::kInvvpidSingleContext,
                               ept_vpid_cap::kInvvpidAllContext, ept_vpid_cap::kInvvpidSingleContextRetainGlobals};
  if (!(cap & ept_vpid_cap::kInvvpid) || type > 3 || !(cap & type_cap[type]))
    return vmx_fail(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID);
  if (desc_vpid >> 16) return vmx_fail(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID);  // descriptor bits 63:16
  const uint16_t vpid = uint16_t(desc_vpid);
  switch (InvvpidType(type)) {
    case InvvpidType::kIndividualAddress:
      if (!vpid || !is_canonical(desc_linear_address)) return vmx_fail(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID);
      tlb_.flush_vpid_address(vpid, desc_linear_address);
      break;
    case InvvpidType::kSingleContext:
      if (!vpid) return vmx_fail(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID);
      tlb_.flush_vpid(vpid);
      break;
    case InvvpidType::kAllContext:
      tlb_.flush_all_vpids_but_0();
      break;
    case InvvpidType::kSingleContextRetainingGlobals:
      if (!vpid) return vmx_fail(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID);
      tlb_.flush_vpid_nonglobal(vpid);
      break;
  }
  return {};
}

}  // namespace nestvm::cpu
