// The VMX capability MSRs nested VMX offers L1 (KVM's nested_vmx_setup_ctls_msrs): a constant
// set, the same on every host, narrowed only by the CPU model L1 was given: its CPUID features
// (no RDTSCP, no "enable RDTSCP"; CR4_FIXED1 follows the CR4 bits the model allows) and the VMX
// features turned off on the command line in QEMU's spelling (-cpu max,-vmx-ept,-vmx-vpid, the
// names of QEMU's FEAT_VMX_* feature words in target/i386/cpu.c).
#pragma once
#include <cstdint>
#include <span>
#include <string_view>

#include "arch/vmx.h"
#include "cpu/cpu_model.h"

namespace nestvm::hv::nested {

// QEMU's VMX feature words (FEAT_VMX_*), each the capability MSR it narrows. The numbering is
// the index of cpu::CpuModel::vmx_features_removed().
enum class VmxFeatureWord : uint8_t {
  kProcbased,   // IA32_VMX_TRUE_PROCBASED_CTLS (allowed-1; "-noexit" names: allowed-0)
  kSecondary,   // IA32_VMX_PROCBASED_CTLS2
  kPinbased,    // IA32_VMX_TRUE_PINBASED_CTLS
  kExit,        // IA32_VMX_TRUE_EXIT_CTLS
  kEntry,       // IA32_VMX_TRUE_ENTRY_CTLS
  kMisc,        // IA32_VMX_MISC
  kEptVpidCaps, // IA32_VMX_EPT_VPID_CAP
  kBasic,       // IA32_VMX_BASIC
  kVmfunc,      // IA32_VMX_VMFUNC
  kCount
};
static_assert(unsigned(VmxFeatureWord::kCount) == cpu::CpuModel::kVmxFeatureWords);

struct VmxFeatureName {
  const char* name;  // QEMU's, e.g. "vmx-ept"
  VmxFeatureWord word;
  uint8_t bit;
};
std::span<const VmxFeatureName> vmx_feature_names();
const VmxFeatureName* vmx_feature_by_name(std::string_view name);
// Whether nested VMX offers the feature when nothing removes it.
bool vmx_feature_offered(const VmxFeatureName& f);

// The capabilities offered to L1 on a vCPU of `model`.
arch::VmxCapabilities nested_vmx_capabilities(const cpu::CpuModel& model);

// RDMSR of a VMX capability MSR (IA32_VMX_BASIC 0x480 ... IA32_VMX_VMFUNC 0x491) from L1; false
// (#GP) for one the capabilities do not have (PROCBASED_CTLS2 without secondary controls,
// EPT_VPID_CAP without EPT or VPID, VMFUNC without VM functions).
bool nested_vmx_capability_msr(const arch::VmxCapabilities& caps, uint32_t index, uint64_t& value);

}  // namespace nestvm::hv::nested
