// Checks on the host-state area (SDM Vol. 3 §27.2.2 control registers and MSRs, §27.2.3
// segment and descriptor-table registers, §27.2.4 address-space size). A failure is
// VMfailValid with error 8, "VM entry with invalid host-state field(s)".
#include "arch/vmentry_checks.h"
#include "arch/vmentry_checks_impl.h"

namespace nestvm::arch {

using namespace vmentry;

namespace {

constexpr const char* kRegs = "27.2.2";
constexpr const char* kSegs = "27.2.3";
constexpr const char* kSize = "27.2.4";

VmEntryCheck check_host_registers(const VmEntryEnv& env, const EntryControls& c) {
  const VmxCapabilities& caps = *env.caps;
  const uint64_t cr0 = env.read(VmcsField::HOST_CR0);
  if ((cr0 & caps.cr0_fixed0) != caps.cr0_fixed0)
    return fail_host("host CR0 must set every bit IA32_VMX_CR0_FIXED0 requires", kRegs);
  if (cr0 & ~caps.cr0_fixed1) return fail_host("host CR0 must clear every bit IA32_VMX_CR0_FIXED1 does not allow", kRegs);
  const uint64_t cr4 = env.read(VmcsField::HOST_CR4);
  if ((cr4 & caps.cr4_fixed0) != caps.cr4_fixed0)
    return fail_host("host CR4 must set every bit IA32_VMX_CR4_FIXED0 requires", kRegs);
  if (cr4 & ~caps.cr4_fixed1) return fail_host("host CR4 must clear every bit IA32_VMX_CR4_FIXED1 does not allow", kRegs);
  if (!within_phys_width(caps, env.read(VmcsField::HOST_CR3)))
    return fail_host("host CR3 must be within the physical-address width", kRegs);
  if (!canonical(caps, env.read(VmcsField::HOST_IA32_SYSENTER_ESP)))
    return fail_host("host IA32_SYSENTER_ESP must be canonical", kRegs);
  if (!canonical(caps, env.read(VmcsField::HOST_IA32_SYSENTER_EIP)))
    return fail_host("host IA32_SYSENTER_EIP must be canonical", kRegs);
  if ((c.exit & exit_ctl::kLoadPerfGlobalCtrl) &&
      (env.read(VmcsField::HOST_IA32_PERF_GLOBAL_CTRL) & ~env.perf_global_ctrl_valid_bits))
    return fail_host("host IA32_PERF_GLOBAL_CTRL reserved bits must be 0 when load IA32_PERF_GLOBAL_CTRL is 1", kRegs);
  if ((c.exit & exit_ctl::kLoadPat) && !pat_ok(env.read(VmcsField::HOST_IA32_PAT)))
    return fail_host("host IA32_PAT entries must each be 0, 1, 4, 5, 6 or 7 when load IA32_PAT is 1", kRegs);
  if (c.exit & exit_ctl::kLoadEfer) {
    const uint64_t efer = env.read(VmcsField::HOST_IA32_EFER);
    if (efer & ~env.efer_valid_bits)
      return fail_host("host IA32_EFER reserved bits must be 0 when load IA32_EFER is 1", kRegs);
    if (bool(efer & efer::kLMA) != c.host64())
      return fail_host("host IA32_EFER.LMA must equal host address-space size when load IA32_EFER is 1", kRegs);
    if (bool(efer & efer::kLME) != c.host64())
      return fail_host("host IA32_EFER.LME must equal host address-space size when load IA32_EFER is 1", kRegs);
  }
  return {};
}

VmEntryCheck check_host_segments(const VmEntryEnv& env, const EntryControls& c) {
  struct Selector {
    VmcsField field;
    const char* rule;
  };
  static constexpr Selector kSelectors[] = {
      {VmcsField::HOST_ES_SELECTOR, "host ES selector RPL and TI must be 0"},
      {VmcsField::HOST_CS_SELECTOR, "host CS selector RPL and TI must be 0"},
      {VmcsField::HOST_SS_SELECTOR, "host SS selector RPL and TI must be 0"},
      {VmcsField::HOST_DS_SELECTOR, "host DS selector RPL and TI must be 0"},
      {VmcsField::HOST_FS_SELECTOR, "host FS selector RPL and TI must be 0"},
      {VmcsField::HOST_GS_SELECTOR, "host GS selector RPL and TI must be 0"},
      {VmcsField::HOST_TR_SELECTOR, "host TR selector RPL and TI must be 0"},
  };
  for (const Selector& s : kSelectors)
    if (env.read(s.field) & 7) return fail_host(s.rule, kSegs);
  if (env.read(VmcsField::HOST_CS_SELECTOR) == 0) return fail_host("host CS selector must not be 0", kSegs);
  if (env.read(VmcsField::HOST_TR_SELECTOR) == 0) return fail_host("host TR selector must not be 0", kSegs);
  if (!c.host64() && env.read(VmcsField::HOST_SS_SELECTOR) == 0)
    return fail_host("host SS selector must not be 0 when host address-space size is 0", kSegs);

  struct Base {
    VmcsField field;
    const char* rule;
  };
  static constexpr Base kBases[] = {
      {VmcsField::HOST_FS_BASE, "host FS base must be canonical"},
      {VmcsField::HOST_GS_BASE, "host GS base must be canonical"},
      {VmcsField::HOST_GDTR_BASE, "host GDTR base must be canonical"},
      {VmcsField::HOST_IDTR_BASE, "host IDTR base must be canonical"},
      {VmcsField::HOST_TR_BASE, "host TR base must be canonical"},
  };
  for (const Base& b : kBases)
    if (!canonical(*env.caps, env.read(b.field))) return fail_host(b.rule, kSegs);
  return {};
}

VmEntryCheck check_address_space_size(const VmEntryEnv& env, const EntryControls& c) {
  if (!env.in_ia32e_mode) {
    if (c.ia32e_guest())
      return fail_host("IA-32e mode guest must be 0 when the processor is outside IA-32e mode", kSize);
    if (c.host64())
      return fail_host("host address-space size must be 0 when the processor is outside IA-32e mode", kSize);
  } else if (!c.host64()) {
    return fail_host("host address-space size must be 1 when the processor is in IA-32e mode", kSize);
  }
  const uint64_t rip = env.read(VmcsField::HOST_RIP);
  // (The SDM's "IA-32e mode guest must be 0 when host address-space size is 0" follows from the
  // two rules above.)
  if (!c.host64()) {
    if (env.read(VmcsField::HOST_CR4) & cr4::kPCIDE)
      return fail_host("host CR4.PCIDE must be 0 when host address-space size is 0", kSize);
    if (rip >> 32) return fail_host("host RIP bits 63:32 must be 0 when host address-space size is 0", kSize);
  } else {
    if (!(env.read(VmcsField::HOST_CR4) & cr4::kPAE))
      return fail_host("host CR4.PAE must be 1 when host address-space size is 1", kSize);
    if (!canonical(*env.caps, rip)) return fail_host("host RIP must be canonical when host address-space size is 1", kSize);
  }
  return {};
}

}  // namespace

VmEntryCheck check_host_state(const VmEntryEnv& env) {
  const EntryControls c(env);
  VmEntryCheck r = check_host_registers(env, c);
  if (!r.ok()) return r;
  r = check_host_segments(env, c);
  if (!r.ok()) return r;
  return check_address_space_size(env, c);
}

}  // namespace nestvm::arch
