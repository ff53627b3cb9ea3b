// Checks on the guest-state area (SDM Vol. 3 §27.3.1): control registers, debug registers and
// MSRs (§27.3.1.1), segment registers (§27.3.1.2, vmentry_checks_segments.cpp), descriptor-table
// registers (§27.3.1.3), RIP and RFLAGS (§27.3.1.4), non-register state with the VMCS link
// pointer (§27.3.1.5) and the PDPTEs of a PAE guest (§27.3.1.6). A failure is a VM-entry failure
// with exit reason 33 | bit 31 and the qualification of §27.8.
#include "arch/paging.h"
#include "arch/rflags.h"
#include "arch/segment.h"
#include "arch/vmentry_checks.h"
#include "arch/vmentry_checks_impl.h"

namespace nestvm::arch {

using namespace vmentry;

namespace {

constexpr const char* kRegs = "27.3.1.1";
constexpr const char* kTables = "27.3.1.3";
constexpr const char* kRipFlags = "27.3.1.4";
constexpr const char* kNonReg = "27.3.1.5";
constexpr const char* kPdptes = "27.3.1.6";

// The guest fields more than one family looks at.
struct GuestView {
  uint64_t cr0, cr4, rflags;
  uint32_t cs_ar, ss_ar;
  uint32_t interruptibility;
  uint32_t activity;
  explicit GuestView(const VmEntryEnv& env)
      : cr0(env.read(VmcsField::GUEST_CR0)),
        cr4(env.read(VmcsField::GUEST_CR4)),
        rflags(env.read(VmcsField::GUEST_RFLAGS)),
        cs_ar(uint32_t(env.read(VmcsField::GUEST_CS_AR_BYTES))),
        ss_ar(uint32_t(env.read(VmcsField::GUEST_SS_AR_BYTES))),
        interruptibility(uint32_t(env.read(VmcsField::GUEST_INTERRUPTIBILITY_INFO))),
        activity(uint32_t(env.read(VmcsField::GUEST_ACTIVITY_STATE))) {}
};

VmEntryCheck check_guest_registers(const VmEntryEnv& env, const EntryControls& c, const GuestView& g) {
  const VmxCapabilities& caps = *env.caps;
  // PE and PG need not be 1 for an unrestricted guest.
  const uint64_t cr0_fixed0 = caps.cr0_fixed0 & ~(c.unrestricted() ? cr0::kPE | cr0::kPG : 0);
  if ((g.cr0 & cr0_fixed0) != cr0_fixed0)
    return fail_guest("guest CR0 must set every bit IA32_VMX_CR0_FIXED0 requires (PE and PG excepted for an unrestricted "
                      "guest)",
                      kRegs);
  if (g.cr0 & ~caps.cr0_fixed1) return fail_guest("guest CR0 must clear every bit IA32_VMX_CR0_FIXED1 does not allow", kRegs);
  if ((g.cr0 & cr0::kPG) && !(g.cr0 & cr0::kPE)) return fail_guest("guest CR0.PG requires CR0.PE", kRegs);
  if ((g.cr4 & caps.cr4_fixed0) != caps.cr4_fixed0)
    return fail_guest("guest CR4 must set every bit IA32_VMX_CR4_FIXED0 requires", kRegs);
  if (g.cr4 & ~caps.cr4_fixed1) return fail_guest("guest CR4 must clear every bit IA32_VMX_CR4_FIXED1 does not allow", kRegs);
  const bool load_debug = c.entry & entry_ctl::kLoadDebugControls;
  if (load_debug && (env.read(VmcsField::GUEST_IA32_DEBUGCTL) & ~env.debugctl_valid_bits))
    return fail_guest("guest IA32_DEBUGCTL reserved bits must be 0 when load debug controls is 1", kRegs);
  if (c.ia32e_guest()) {
    if (!(g.cr0 & cr0::kPG)) return fail_guest("guest CR0.PG must be 1 for an IA-32e mode guest", kRegs);
    if (!(g.cr4 & cr4::kPAE)) return fail_guest("guest CR4.PAE must be 1 for an IA-32e mode guest", kRegs);
  } else if (g.cr4 & cr4::kPCIDE) {
    return fail_guest("guest CR4.PCIDE must be 0 when not an IA-32e mode guest", kRegs);
  }
  if (!within_phys_width(caps, env.read(VmcsField::GUEST_CR3)))
    return fail_guest("guest CR3 must be within the physical-address width", kRegs);
  if (load_debug && (env.read(VmcsField::GUEST_DR7) >> 32))
    return fail_guest("guest DR7 bits 63:32 must be 0 when load debug controls is 1", kRegs);
  if (!canonical(caps, env.read(VmcsField::GUEST_SYSENTER_ESP)))
    return fail_guest("guest IA32_SYSENTER_ESP must be canonical", kRegs);
  if (!canonical(caps, env.read(VmcsField::GUEST_SYSENTER_EIP)))
    return fail_guest("guest IA32_SYSENTER_EIP must be canonical", kRegs);
  if ((c.entry & entry_ctl::kLoadPerfGlobalCtrl) &&
      (env.read(VmcsField::GUEST_IA32_PERF_GLOBAL_CTRL) & ~env.perf_global_ctrl_valid_bits))
    return fail_guest("guest IA32_PERF_GLOBAL_CTRL reserved bits must be 0 when load IA32_PERF_GLOBAL_CTRL is 1", kRegs);
  if ((c.entry & entry_ctl::kLoadPat) && !pat_ok(env.read(VmcsField::GUEST_IA32_PAT)))
    return fail_guest("guest IA32_PAT entries must each be 0, 1, 4, 5, 6 or 7 when load IA32_PAT is 1", kRegs);
  if (c.entry & entry_ctl::kLoadEfer) {
    const uint64_t efer = env.read(VmcsField::GUEST_IA32_EFER);
    if (efer & ~env.efer_valid_bits)
      return fail_guest("guest IA32_EFER reserved bits must be 0 when load IA32_EFER is 1", kRegs);
    if (bool(efer & efer::kLMA) != c.ia32e_guest())
      return fail_guest("guest IA32_EFER.LMA must equal IA-32e mode guest when load IA32_EFER is 1", kRegs);
    if ((g.cr0 & cr0::kPG) && bool(efer & efer::kLME) != bool(efer & efer::kLMA))
      return fail_guest("guest IA32_EFER.LME must equal LMA when load IA32_EFER is 1 and CR0.PG is 1", kRegs);
  }
  return {};
}

VmEntryCheck check_descriptor_tables(const VmEntryEnv& env) {
  if (!canonical(*env.caps, env.read(VmcsField::GUEST_GDTR_BASE)))
    return fail_guest("guest GDTR base must be canonical", kTables);
  if (!canonical(*env.caps, env.read(VmcsField::GUEST_IDTR_BASE)))
    return fail_guest("guest IDTR base must be canonical", kTables);
  if (env.read(VmcsField::GUEST_GDTR_LIMIT) >> 16) return fail_guest("guest GDTR limit bits 31:16 must be 0", kTables);
  if (env.read(VmcsField::GUEST_IDTR_LIMIT) >> 16) return fail_guest("guest IDTR limit bits 31:16 must be 0", kTables);
  return {};
}

VmEntryCheck check_rip_rflags(const VmEntryEnv& env, const EntryControls& c, const GuestView& g) {
  const uint64_t rip = env.read(VmcsField::GUEST_RIP);
  const bool code64 = c.ia32e_guest() && (g.cs_ar & ar::kL);
  if (!code64 && (rip >> 32))
    return fail_guest("guest RIP bits 63:32 must be 0 unless IA-32e mode guest with CS.L = 1", kRipFlags);
  if (code64 && !canonical(*env.caps, rip))
    return fail_guest("guest RIP must be canonical for an IA-32e mode guest with CS.L = 1", kRipFlags);
  // Reserved: bits 63:22, 15, 5 and 3; bit 1 must be 1.
  if (g.rflags & ~(rflags::kDefined | rflags::kFixed1))
    return fail_guest("guest RFLAGS reserved bits (63:22, 15, 5, 3) must be 0", kRipFlags);
  if (!(g.rflags & rflags::kFixed1)) return fail_guest("guest RFLAGS bit 1 must be 1", kRipFlags);
  if ((g.rflags & rflags::kVM) && (c.ia32e_guest() || !(g.cr0 & cr0::kPE)))
    return fail_guest("guest RFLAGS.VM must be 0 for an IA-32e mode guest or when CR0.PE is 0", kRipFlags);
  if (c.injecting(EventType::kExternalInterrupt) && !(g.rflags & rflags::kIF))
    return fail_guest("guest RFLAGS.IF must be 1 when injecting an external interrupt", kRipFlags);
  return {};
}

// Activity states (SDM §25.4.2).
constexpr uint32_t kActive = 0, kHlt = 1, kShutdown = 2, kWaitForSipi = 3;

VmEntryCheck check_activity_state(const VmEntryEnv& env, const EntryControls& c, const GuestView& g) {
  // IA32_VMX_MISC bits 8:6 report support for HLT, shutdown and wait-for-SIPI.
  if (g.activity > kWaitForSipi || (g.activity != kActive && !(env.caps->misc & (1ull << (5 + g.activity)))))
    return fail_guest("guest activity state must be 0 (active) or a state IA32_VMX_MISC[8:6] supports", kNonReg);
  if (g.activity == kHlt && ar::dpl(g.ss_ar) != 0)
    return fail_guest("guest activity state must not be HLT when SS.AR.DPL is not 0", kNonReg);
  if (g.activity != kActive && (g.interruptibility & (interruptibility::kBlockingBySti | interruptibility::kBlockingByMovSs)))
    return fail_guest("guest activity state must be active when blocking by STI or by MOV SS", kNonReg);
  if (c.injecting()) {
    const unsigned type = c.inject_type(), vector = c.inject_vector();
    const bool nmi = type == unsigned(EventType::kNmi);
    const bool machine_check = type == unsigned(EventType::kHardwareException) && vector == 18;
    if (g.activity == kHlt) {
      const bool allowed = type == unsigned(EventType::kExternalInterrupt) || nmi || machine_check ||
                           (type == unsigned(EventType::kHardwareException) && vector == 1) ||
                           (type == unsigned(EventType::kOther) && vector == 0);
      if (!allowed)
        return fail_guest(
            "an event injected into the HLT state must be an external interrupt, NMI, #DB, #MC or pending MTF VM exit",
            kNonReg);
    }
    if (g.activity == kShutdown && !nmi && !machine_check)
      return fail_guest("an event injected into the shutdown state must be an NMI or #MC", kNonReg);
    if (g.activity == kWaitForSipi) return fail_guest("no event may be injected into the wait-for-SIPI state", kNonReg);
  }
  if (g.activity == kWaitForSipi && (c.entry & entry_ctl::kEntryToSmm))
    return fail_guest("guest activity state must not be wait-for-SIPI when entry to SMM is 1", kNonReg);
  return {};
}

VmEntryCheck check_interruptibility(const VmEntryEnv& env, const EntryControls& c, const GuestView& g) {
  using namespace interruptibility;
  const uint32_t i = g.interruptibility;
  // Bit 4 (enclave interruption) exists only with SGX, which no nestvm processor has.
  if (i & (kReservedMask | kEnclaveInterruption))
    return fail_guest("guest interruptibility-state bits 31:4 must be 0 (bit 4 needs SGX)", kNonReg);
  if ((i & kBlockingBySti) && (i & kBlockingByMovSs))
    return fail_guest("guest interruptibility state must not indicate blocking by both STI and MOV SS", kNonReg);
  if ((i & kBlockingBySti) && !(g.rflags & rflags::kIF))
    return fail_guest("guest blocking by STI requires RFLAGS.IF = 1", kNonReg);
  if (c.injecting(EventType::kExternalInterrupt) && (i & (kBlockingBySti | kBlockingByMovSs)))
    return fail_guest("guest blocking by STI and by MOV SS must be 0 when injecting an external interrupt", kNonReg);
  if (c.injecting(EventType::kNmi) && (i & kBlockingByMovSs))
    return fail_guest("guest blocking by MOV SS must be 0 when injecting an NMI", kNonReg);
  if (!env.in_smm && (i & kBlockingBySmi)) return fail_guest("guest blocking by SMI must be 0 outside SMM", kNonReg);
  if ((c.entry & entry_ctl::kEntryToSmm) && !(i & kBlockingBySmi))
    return fail_guest("guest blocking by SMI must be 1 when entry to SMM is 1", kNonReg);
  if ((c.pin & pin::kVirtualNmis) && c.injecting(EventType::kNmi) && (i & kBlockingByNmi))
    return fail_guest("guest blocking by NMI must be 0 when injecting an NMI with virtual NMIs", kNonReg);
  // Implementation-specific (SDM §27.8, qualification 3): nestvm's silicon, like the processors
  // that report it, refuses to inject an NMI into STI blocking.
  if (c.injecting(EventType::kNmi) && (i & kBlockingBySti))
    return fail_guest("guest blocking by STI must be 0 when injecting an NMI", kNonReg,
                      entry_failure_qual::kNmiBlockedBySti);
  return {};
}

VmEntryCheck check_pending_debug_exceptions(const VmEntryEnv& env, const GuestView& g) {
  const uint64_t pde = env.read(VmcsField::GUEST_PENDING_DBG_EXCEPTIONS);
  // Defined: B3:B0 (3:0), enabled breakpoint (12), BS (14). Bit 16 (RTM) needs RTM, which no
  // nestvm processor has.
  constexpr uint64_t kDefined = 0xfull | (1ull << 12) | (1ull << 14);
  constexpr uint64_t kBS = 1ull << 14;
  if (pde & ~kDefined)
    return fail_guest("guest pending debug exceptions bits 63:15, 13 and 11:4 must be 0 (bit 16 needs RTM)", kNonReg);
  // While events are blocked by STI or MOV SS, or in HLT, a single-step trap pending for the
  // next instruction boundary must be recorded in BS exactly when TF would cause one.
  using namespace interruptibility;
  if ((g.interruptibility & (kBlockingBySti | kBlockingByMovSs)) || g.activity == kHlt) {
    const bool tf = g.rflags & rflags::kTF;
    const bool btf = env.read(VmcsField::GUEST_IA32_DEBUGCTL) & (1ull << 1);
    if (tf && !btf && !(pde & kBS))
      return fail_guest(
          "guest pending debug exceptions BS must be 1 when RFLAGS.TF = 1 and DEBUGCTL.BTF = 0 with blocking by STI or "
          "MOV SS or in HLT",
          kNonReg);
    if ((!tf || btf) && (pde & kBS))
      return fail_guest(
          "guest pending debug exceptions BS must be 0 when RFLAGS.TF = 0 or DEBUGCTL.BTF = 1 with blocking by STI or "
          "MOV SS or in HLT",
          kNonReg);
  }
  return {};
}

VmEntryCheck check_vmcs_link_pointer(const VmEntryEnv& env, const EntryControls& c) {
  const uint64_t link = env.read(VmcsField::VMCS_LINK_POINTER);
  if (link == ~0ull) return {};
  constexpr uint64_t kQual = entry_failure_qual::kVmcsLinkPointer;
  if (link & 0xfff) return fail_guest("VMCS link pointer bits 11:0 must be 0", kNonReg, kQual);
  if (!within_phys_width(*env.caps, link))
    return fail_guest("VMCS link pointer must be within the physical-address width", kNonReg, kQual);
  uint32_t revision = ~0u;  // nonexistent memory reads as all ones
  if (!env.read_phys(link + vmcs_layout::kRevisionOffset, &revision, sizeof revision)) revision = ~0u;
  const uint32_t processor_revision = uint32_t(env.caps->basic) & ~vmcs_layout::kShadowIndicator;
  if ((revision & ~vmcs_layout::kShadowIndicator) != processor_revision)
    return fail_guest("VMCS link pointer must reference a VMCS with the processor's revision identifier", kNonReg, kQual);
  if (bool(revision & vmcs_layout::kShadowIndicator) != bool(c.proc2 & proc2::kVmcsShadowing))
    return fail_guest("VMCS link pointer's shadow-VMCS indicator (revision bit 31) must equal VMCS shadowing", kNonReg,
                      kQual);
  // In SMM with "entry to SMM" 0 (dual-monitor treatment, which nestvm does not model) the
  // pointer must differ from the VMXON pointer instead.
  if ((!env.in_smm || (c.entry & entry_ctl::kEntryToSmm)) && link == env.current_vmcs)
    return fail_guest("VMCS link pointer must not be the current-VMCS pointer", kNonReg, kQual);
  return {};
}

// §27.3.1.6: a guest using PAE paging (CR0.PG = 1, CR4.PAE = 1, not IA-32e mode) has its four
// PDPTEs checked: a present one must have no reserved bit set (2:1, 8:5, MAXPHYADDR and up).
VmEntryCheck check_pdptes(const VmEntryEnv& env, const EntryControls& c, const GuestView& g) {
  if (!(g.cr0 & cr0::kPG) || !(g.cr4 & cr4::kPAE) || c.ia32e_guest()) return {};
  static constexpr VmcsField kFields[4] = {VmcsField::GUEST_PDPTR0, VmcsField::GUEST_PDPTR1, VmcsField::GUEST_PDPTR2,
                                           VmcsField::GUEST_PDPTR3};
  static constexpr const char* kEptRules[4] = {
      "guest PDPTE0 field must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE paging with EPT)",
      "guest PDPTE1 field must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE paging with EPT)",
      "guest PDPTE2 field must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE paging with EPT)",
      "guest PDPTE3 field must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE paging with EPT)",
  };
  static constexpr const char* kCr3Rules[4] = {
      "PDPTE0 at guest CR3 must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE paging without EPT)",
      "PDPTE1 at guest CR3 must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE paging without EPT)",
      "PDPTE2 at guest CR3 must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE paging without EPT)",
      "PDPTE3 at guest CR3 must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE paging without EPT)",
  };
  const uint64_t reserved = ~pte::phys_mask(env.caps->maxphyaddr) & ~0xfffull;
  constexpr uint64_t kReservedLow = 0x1e6;  // bits 2:1 and 8:5
  // Without EPT the PDPTEs come from the 32-byte table at CR3[31:5], as a MOV to CR3 loads them.
  const uint64_t table = env.read(VmcsField::GUEST_CR3) & 0xffffffe0ull;
  for (unsigned k = 0; k < 4; ++k) {
    uint64_t e = ~0ull;  // nonexistent memory reads as all ones
    if (c.ept()) e = env.read(kFields[k]);
    else if (!env.read_phys(table + 8 * k, &e, sizeof e)) e = ~0ull;
    if ((e & pte::kP) && (e & (reserved | kReservedLow)))
      return fail_guest(c.ept() ? kEptRules[k] : kCr3Rules[k], kPdptes, entry_failure_qual::kPdpte);
  }
  return {};
}

}  // namespace

VmEntryCheck check_guest_state(const VmEntryEnv& env) {
  const EntryControls c(env);
  const GuestView g(env);
  VmEntryCheck r = check_guest_registers(env, c, g);
  if (!r.ok()) return r;
  r = check_guest_segments(env, c, g.cr0, g.rflags & rflags::kVM);
  if (!r.ok()) return r;
  r = check_descriptor_tables(env);
  if (!r.ok()) return r;
  r = check_rip_rflags(env, c, g);
  if (!r.ok()) return r;
  r = check_activity_state(env, c, g);
  if (!r.ok()) return r;
  r = check_interruptibility(env, c, g);
  if (!r.ok()) return r;
  r = check_pending_debug_exceptions(env, g);
  if (!r.ok()) return r;
  r = check_vmcs_link_pointer(env, c);
  if (!r.ok()) return r;
  return check_pdptes(env, c, g);
}

}  // namespace nestvm::arch
