// Model-specific register indices (SDM Vol. 4, "Model-Specific Registers"), with the SDM's names.
#pragma once
#include <cstdint>

namespace nestvm::arch {

enum class Msr : uint32_t {
  kIA32_P5_MC_ADDR = 0x0,
  kIA32_P5_MC_TYPE = 0x1,
  kIA32_TIME_STAMP_COUNTER = 0x10,
  kIA32_PLATFORM_ID = 0x17,
  kIA32_APIC_BASE = 0x1b,
  kIA32_FEATURE_CONTROL = 0x3a,
  kIA32_TSC_ADJUST = 0x3b,
  kIA32_SPEC_CTRL = 0x48,
  kIA32_PRED_CMD = 0x49,
  kIA32_BIOS_SIGN_ID = 0x8b,
  kIA32_MTRRCAP = 0xfe,
  kIA32_ARCH_CAPABILITIES = 0x10a,
  kIA32_SYSENTER_CS = 0x174,
  kIA32_SYSENTER_ESP = 0x175,
  kIA32_SYSENTER_EIP = 0x176,
  kIA32_MCG_CAP = 0x179,
  kIA32_MCG_STATUS = 0x17a,
  kIA32_MISC_ENABLE = 0x1a0,
  kIA32_DEBUGCTL = 0x1d9,
  kIA32_MTRR_PHYSBASE0 = 0x200,  // PHYSBASEn = 0x200 + 2n, PHYSMASKn = 0x201 + 2n
  kIA32_MTRR_PHYSMASK7 = 0x20f,
  kIA32_MTRR_FIX64K_00000 = 0x250,
  kIA32_MTRR_FIX16K_80000 = 0x258,
  kIA32_MTRR_FIX16K_A0000 = 0x259,
  kIA32_MTRR_FIX4K_C0000 = 0x268,
  kIA32_MTRR_FIX4K_F8000 = 0x26f,
  kIA32_PAT = 0x277,
  kIA32_MTRR_DEF_TYPE = 0x2ff,
  kIA32_PERF_GLOBAL_CTRL = 0x38f,
  kIA32_VMX_BASIC = 0x480,
  kIA32_VMX_PINBASED_CTLS = 0x481,
  kIA32_VMX_PROCBASED_CTLS = 0x482,
  kIA32_VMX_EXIT_CTLS = 0x483,
  kIA32_VMX_ENTRY_CTLS = 0x484,
  kIA32_VMX_MISC = 0x485,
  kIA32_VMX_CR0_FIXED0 = 0x486,
  kIA32_VMX_CR0_FIXED1 = 0x487,
  kIA32_VMX_CR4_FIXED0 = 0x488,
  kIA32_VMX_CR4_FIXED1 = 0x489,
  kIA32_VMX_VMCS_ENUM = 0x48a,
  kIA32_VMX_PROCBASED_CTLS2 = 0x48b,
  kIA32_VMX_EPT_VPID_CAP = 0x48c,
  kIA32_VMX_TRUE_PINBASED_CTLS = 0x48d,
  kIA32_VMX_TRUE_PROCBASED_CTLS = 0x48e,
  kIA32_VMX_TRUE_EXIT_CTLS = 0x48f,
  kIA32_VMX_TRUE_ENTRY_CTLS = 0x490,
  kIA32_VMX_VMFUNC = 0x491,
  kIA32_TSC_DEADLINE = 0x6e0,
  kIA32_X2APIC_BASE = 0x800,  // x2APIC registers occupy 0x800-0x8ff
  kIA32_X2APIC_END = 0x8ff,
  kIA32_XSS = 0xda0,
  kIA32_EFER = 0xc0000080,
  kIA32_STAR = 0xc0000081,
  kIA32_LSTAR = 0xc0000082,
  kIA32_CSTAR = 0xc0000083,
  kIA32_FMASK = 0xc0000084,
  kIA32_FS_BASE = 0xc0000100,
  kIA32_GS_BASE = 0xc0000101,
  kIA32_KERNEL_GS_BASE = 0xc0000102,
  kIA32_TSC_AUX = 0xc0000103,
};

constexpr uint32_t msr_index(Msr m) { return static_cast<uint32_t>(m); }

// IA32_FEATURE_CONTROL bits (SDM Vol. 3 §24.7).
namespace feature_control {
inline constexpr uint64_t kLock = 1ull << 0;
inline constexpr uint64_t kVmxInsideSmx = 1ull << 1;
inline constexpr uint64_t kVmxOutsideSmx = 1ull << 2;
}  // namespace feature_control

// IA32_APIC_BASE bits.
namespace apic_base {
inline constexpr uint64_t kBsp = 1ull << 8;
inline constexpr uint64_t kExtd = 1ull << 10;  // x2APIC mode
inline constexpr uint64_t kEnable = 1ull << 11;
inline constexpr uint64_t kDefaultBase = 0xfee00000ull;
}  // namespace apic_base

}  // namespace nestvm::arch
