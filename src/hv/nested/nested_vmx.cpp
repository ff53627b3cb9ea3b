#include "hv/nested/nested_vmx.h"

#include "arch/msr_index.h"
#include "arch/rflags.h"
#include "arch/vmcs.h"
#include "hv/nested/nested_caps.h"
#include "hv/vcpu.h"
#include "hv/vm.h"

namespace nestvm::hv::nested {

using namespace arch;

NestedVmx::NestedVmx(Vcpu& vcpu)
    : vcpu_(vcpu),
      caps_(nested_vmx_capabilities(vcpu.vm().model())),
      vmx_offered_(vcpu.vm().model().has(cpu::Feature::kVmx)) {
  on_invept = [this](InveptType, uint64_t) { vcpu_.flush_tlb_current(); };
  on_invvpid = [this](InvvpidType, uint16_t, uint64_t) { vcpu_.flush_tlb_current(); };
}

bool NestedVmx::handles_msr(uint32_t index) {
  return index == msr_index(Msr::kIA32_FEATURE_CONTROL) ||
         (index >= msr_index(Msr::kIA32_VMX_BASIC) && index <= msr_index(Msr::kIA32_VMX_VMFUNC));
}

bool NestedVmx::get_msr(uint32_t index, uint64_t& value) const {
  if (index == msr_index(Msr::kIA32_FEATURE_CONTROL)) {
    value = feature_control_;
    return true;
  }
  // Without VMX in CPUID the capability MSRs do not exist (SDM A.1: they exist if CPUID.1:ECX.VMX).
  return vmx_offered_ && nested_vmx_capability_msr(caps_, index, value);
}

bool NestedVmx::set_msr(uint32_t index, uint64_t value) {
  if (index != msr_index(Msr::kIA32_FEATURE_CONTROL)) return false;  // capability MSRs are read-only
  // SDM Vol. 3 §24.7: writes #GP once the lock bit is set (until reset); reserved bits #GP; no
  // model has SMX, so "VMXON inside SMX" is reserved too; "outside SMX" exists with VMX.
  uint64_t valid = feature_control::kLock;
  if (vmx_offered_) valid |= feature_control::kVmxOutsideSmx;
  if ((feature_control_ & feature_control::kLock) || (value & ~valid)) return false;
  feature_control_ = value;
  return true;
}

namespace {
constexpr uint64_t kArithFlags = rflags::kCF | rflags::kPF | rflags::kAF | rflags::kZF | rflags::kSF | rflags::kOF;
}

// SDM Vol. 3 §31.2: VMsucceed clears CF, PF, AF, ZF, SF, OF; VMfailInvalid sets CF alone;
// VMfailValid sets ZF alone and stores the error number in the current VMCS.
void NestedVmx::vmx_succeed() {
  vcpu_.vmwrite(VmcsField::GUEST_RFLAGS, vcpu_.vmread(VmcsField::GUEST_RFLAGS) & ~kArithFlags);
}

void NestedVmx::vmx_fail_invalid() {
  vcpu_.vmwrite(VmcsField::GUEST_RFLAGS, (vcpu_.vmread(VmcsField::GUEST_RFLAGS) & ~kArithFlags) | rflags::kCF);
}

void NestedVmx::vmx_fail_valid(VmxError e) {
  vcpu_.vmwrite(VmcsField::GUEST_RFLAGS, (vcpu_.vmread(VmcsField::GUEST_RFLAGS) & ~kArithFlags) | rflags::kZF);
  cached_vmcs12.write(VmcsField::VM_INSTRUCTION_ERROR, uint32_t(e));
}

void NestedVmx::vmx_fail(VmxError e) {
  if (current_vmptr == kInvalidGpa) vmx_fail_invalid();
  else vmx_fail_valid(e);
}

void NestedVmx::release_vmcs12() {
  if (current_vmptr == kInvalidGpa) return;
  // A page that stopped being RAM has nowhere to go: what L1 wrote is lost, as on hardware
  // whose VMCS region is not memory.
  (void)cached_vmcs12.store(vcpu_.vm().mem(), current_vmptr);
  current_vmptr = kInvalidGpa;
}

bool NestedVmx::load_vmcs12(uint64_t gpa) {
  if (!cached_vmcs12.load(vcpu_.vm().mem(), gpa)) return false;
  current_vmptr = gpa;
  return true;
}

void NestedVmx::free_nested() {
  if (!vmxon) return;
  release_vmcs12();
  vmxon = false;
  vmxon_ptr = kInvalidGpa;
  vcpu_.update_vmx_root_cr_intercepts();
}

}  // namespace nestvm::hv::nested
