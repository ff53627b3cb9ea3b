// The VMX capabilities of nestvm's silicon: the controls it implements (the set nestvm offers
// L1), as its capability MSRs report them (SDM Vol. 3 Appendix A).
#pragma once
#include "arch/vmx.h"
#include "cpu/cpu_model.h"

namespace nestvm::cpu {

arch::VmxCapabilities silicon_vmx_capabilities(const CpuModel& model, uint64_t cr4_valid_bits);

// The capability MSRs (IA32_VMX_BASIC 0x480 ... IA32_VMX_TRUE_ENTRY_CTLS 0x490) for caps;
// false if `index` is not one of them (or names a feature caps lack).
bool vmx_capability_msr(const arch::VmxCapabilities& caps, uint32_t index, uint64_t& value);

}  // namespace nestvm::cpu
