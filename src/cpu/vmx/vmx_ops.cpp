// VMCLEAR, VMPTRLD, VMREAD and VMWRITE as the silicon performs them for L0 (SDM Vol. 2, each
// instruction's "Operation" for VMX root operation; the CPL/mode checks are L0's business).
#include "arch/vmcs.h"
#include "cpu/cpu.h"

namespace nestvm::cpu {

using namespace arch;

// VMfail(error): VMfailValid if there is a current VMCS (the error goes into its
// VM_INSTRUCTION_ERROR field), else VMfailInvalid (SDM Vol. 3 §31.2).
VmxResult Cpu::vmx_fail(VmxError e) {
  if (!vmx_.current.valid()) return {VmxResult::Kind::kFailInvalid, e};
  vmx_.current.write(VmcsField::VM_INSTRUCTION_ERROR, uint32_t(e));
  return {VmxResult::Kind::kFailValid, e};
}

namespace {
// A VMCS pointer must be 4 KiB aligned, within the physical-address width and name RAM.
uint8_t* vmcs_page(PhysMem& mem, uint64_t hpa, int maxphyaddr) {
  if ((hpa & 0xfff) || (hpa >> maxphyaddr)) return nullptr;
  return mem.ram_page(hpa);
}
}  // namespace

VmxResult Cpu::vmclear(uint64_t hpa) {
  uint8_t* p = vmcs_page(mem_, hpa, model_.maxphyaddr());
  if (!p) return vmx_fail(VmxError::VMCLEAR_INVALID_ADDRESS);
  // The launch state becomes "clear"; the VMCS data stay in memory (SDM Vol. 2 VMCLEAR).
  VmcsRegion(p).set_launched(false);
  if (hpa == vmx_.current_vmcs) {
    vmx_.current_vmcs = ~0ull;
    vmx_.current = VmcsRegion();
  }
  return {};
}

VmxResult Cpu::vmptrld(uint64_t hpa) {
  uint8_t* p = vmcs_page(mem_, hpa, model_.maxphyaddr());
  if (!p) return vmx_fail(VmxError::VMPTRLD_INVALID_ADDRESS);
  const uint32_t rev = VmcsRegion(p).revision();
  // A shadow VMCS may be made current only if the processor supports VMCS shadowing.
  const bool shadow_ok = vmx_caps_.proc2.allowed1 & proc2::kVmcsShadowing;
  if ((rev & ~vmcs_layout::kShadowIndicator) != kVmcsRevision || ((rev & vmcs_layout::kShadowIndicator) && !shadow_ok))
    return vmx_fail(VmxError::VMPTRLD_INCORRECT_VMCS_REVISION_ID);
  vmx_.current_vmcs = hpa;
  vmx_.current = VmcsRegion(p);
  return {};
}

VmxResult Cpu::vmread(uint64_t encoding, uint64_t& value) {
  if (!vmx_.current.valid()) return {VmxResult::Kind::kFailInvalid};
  const auto l = lookup_vmcs_encoding(encoding);
  if (!l) return vmx_fail(VmxError::UNSUPPORTED_VMCS_COMPONENT);
  value = vmx_.current.read_encoded(*l);
  return {};
}

VmxResult Cpu::vmwrite(uint64_t encoding, uint64_t value) {
  if (!vmx_.current.valid()) return {VmxResult::Kind::kFailInvalid};
  const auto l = lookup_vmcs_encoding(encoding);
  if (!l) return vmx_fail(VmxError::UNSUPPORTED_VMCS_COMPONENT);
  // Read-only (VM-exit information) fields are writable only with IA32_VMX_MISC[29].
  if (l->info->read_only() && !(vmx_caps_.misc & (1ull << 29)))
    return vmx_fail(VmxError::VMWRITE_READ_ONLY_VMCS_COMPONENT);
  vmx_.current.write_encoded(*l, value);
  return {};
}

}  // namespace nestvm::cpu
