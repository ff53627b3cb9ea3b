// VM-entry checks on the guest-state area other than segments (SDM §27.3.1.1, §27.3.1.3-27.3.1.6):
// each single violation is a VM-entry failure (exit reason 33 | bit 31) with its qualification
// (2 PDPTEs, 3 NMI into STI blocking, 4 VMCS link pointer) and rule.
#include "unit/arch/vmentry_fake_vmcs.h"

namespace nestvm::arch::vmentry_test {
namespace {

// §27.3.1.1 (control registers, debug registers, MSRs), §27.3.1.3 and §27.3.1.4.
const Violation kGuestRegisterViolations[] = {
    guest("Cr0Fixed0", [](FakeVmcs& f) { f.off(F::GUEST_CR0, cr0::kNE); },
          "guest CR0 must set every bit IA32_VMX_CR0_FIXED0 requires (PE and PG excepted for an unrestricted guest)"),
    guest("Cr0PeClearWithoutUnrestrictedGuest", [](FakeVmcs& f) { f.off(F::GUEST_CR0, cr0::kPE | cr0::kPG); },
          "guest CR0 must set every bit IA32_VMX_CR0_FIXED0 requires (PE and PG excepted for an unrestricted guest)"),
    guest("Cr0Fixed1", [](FakeVmcs& f) { f.on(F::GUEST_CR0, 1ull << 33); },
          "guest CR0 must clear every bit IA32_VMX_CR0_FIXED1 does not allow"),
    guest("Cr0PgWithoutPe",
          [](FakeVmcs& f) {
            f.seed_unrestricted_real_mode();
            f.on(F::GUEST_CR0, cr0::kPG);
          },
          "guest CR0.PG requires CR0.PE"),
    guest("Cr4Fixed0", [](FakeVmcs& f) { f.off(F::GUEST_CR4, cr4::kVMXE); },
          "guest CR4 must set every bit IA32_VMX_CR4_FIXED0 requires"),
    guest("Cr4Fixed1", [](FakeVmcs& f) { f.on(F::GUEST_CR4, cr4::kLA57); },
          "guest CR4 must clear every bit IA32_VMX_CR4_FIXED1 does not allow"),
    guest("DebugctlReserved",
          [](FakeVmcs& f) {
            f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kLoadDebugControls);
            f.set(F::GUEST_IA32_DEBUGCTL, 1u << 6);
          },
          "guest IA32_DEBUGCTL reserved bits must be 0 when load debug controls is 1"),
    guest("Ia32eGuestWithoutPaging",
          [](FakeVmcs& f) {
            f.ept();
            f.secondary(proc2::kUnrestrictedGuest);
            f.off(F::GUEST_CR0, cr0::kPG);
          },
          "guest CR0.PG must be 1 for an IA-32e mode guest"),
    guest("Ia32eGuestWithoutPae", [](FakeVmcs& f) { f.off(F::GUEST_CR4, cr4::kPAE); },
          "guest CR4.PAE must be 1 for an IA-32e mode guest"),
    guest("PcideOutsideIa32eGuest",
          [](FakeVmcs& f) {
            f.seed_pae32(false);
            f.on(F::GUEST_CR4, cr4::kPCIDE);
          },
          "guest CR4.PCIDE must be 0 when not an IA-32e mode guest"),
    guest("Cr3BeyondWidth", [](FakeVmcs& f) { f.set(F::GUEST_CR3, 1ull << 40); },
          "guest CR3 must be within the physical-address width"),
    guest("Dr7High",
          [](FakeVmcs& f) {
            f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kLoadDebugControls);
            f.set(F::GUEST_DR7, (1ull << 32) | 0x400);
          },
          "guest DR7 bits 63:32 must be 0 when load debug controls is 1"),
    guest("SysenterEsp", [](FakeVmcs& f) { f.set(F::GUEST_SYSENTER_ESP, 0x0000800000000000ull); },
          "guest IA32_SYSENTER_ESP must be canonical"),
    guest("SysenterEip", [](FakeVmcs& f) { f.set(F::GUEST_SYSENTER_EIP, 0x00ff000000000000ull); },
          "guest IA32_SYSENTER_EIP must be canonical"),
    guest("PerfGlobalCtrl",
          [](FakeVmcs& f) {
            f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kLoadPerfGlobalCtrl);
            f.set(F::GUEST_IA32_PERF_GLOBAL_CTRL, 1ull << 32);
          },
          "guest IA32_PERF_GLOBAL_CTRL reserved bits must be 0 when load IA32_PERF_GLOBAL_CTRL is 1"),
    guest("Pat",
          [](FakeVmcs& f) {
            f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kLoadPat);
            f.set(F::GUEST_IA32_PAT, 0x0807040600070406ull);
          },
          "guest IA32_PAT entries must each be 0, 1, 4, 5, 6 or 7 when load IA32_PAT is 1"),
    guest("EferReserved",
          [](FakeVmcs& f) {
            f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kLoadEfer);
            f.on(F::GUEST_IA32_EFER, 1u << 2);
          },
          "guest IA32_EFER reserved bits must be 0 when load IA32_EFER is 1"),
    guest("EferLmaWithoutIa32eGuest",
          [](FakeVmcs& f) {
            f.seed_pae32(false);
            f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kLoadEfer);
          },
          "guest IA32_EFER.LMA must equal IA-32e mode guest when load IA32_EFER is 1"),
    guest("EferLmeWithPaging",
          [](FakeVmcs& f) {
            f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kLoadEfer);
            f.set(F::GUEST_IA32_EFER, efer::kLMA);
          },
          "guest IA32_EFER.LME must equal LMA when load IA32_EFER is 1 and CR0.PG is 1"),
    guest("GdtrBase", [](FakeVmcs& f) { f.set(F::GUEST_GDTR_BASE, 1ull << 47); }, "guest GDTR base must be canonical"),
    guest("IdtrBase", [](FakeVmcs& f) { f.set(F::GUEST_IDTR_BASE, 1ull << 62); }, "guest IDTR base must be canonical"),
    guest("GdtrLimit", [](FakeVmcs& f) { f.set(F::GUEST_GDTR_LIMIT, 0x10000); }, "guest GDTR limit bits 31:16 must be 0"),
    guest("IdtrLimit", [](FakeVmcs& f) { f.set(F::GUEST_IDTR_LIMIT, 0x1ffff); }, "guest IDTR limit bits 31:16 must be 0"),
    guest("RipHighInCompatibilityMode",
          [](FakeVmcs& f) {
            f.cs(0x18, 0, 0xffffffff, 0xc09b);
            f.set(F::GUEST_RIP, 1ull << 32);
          },
          "guest RIP bits 63:32 must be 0 unless IA-32e mode guest with CS.L = 1"),
    guest("RipNonCanonical", [](FakeVmcs& f) { f.set(F::GUEST_RIP, 0x0000800000000000ull); },
          "guest RIP must be canonical for an IA-32e mode guest with CS.L = 1"),
    guest("RflagsBit15", [](FakeVmcs& f) { f.on(F::GUEST_RFLAGS, 1u << 15); },
          "guest RFLAGS reserved bits (63:22, 15, 5, 3) must be 0"),
    guest("RflagsBit22", [](FakeVmcs& f) { f.on(F::GUEST_RFLAGS, 1u << 22); },
          "guest RFLAGS reserved bits (63:22, 15, 5, 3) must be 0"),
    guest("RflagsBit3", [](FakeVmcs& f) { f.on(F::GUEST_RFLAGS, 1u << 3); },
          "guest RFLAGS reserved bits (63:22, 15, 5, 3) must be 0"),
    guest("RflagsBit1Clear", [](FakeVmcs& f) { f.set(F::GUEST_RFLAGS, 0); }, "guest RFLAGS bit 1 must be 1"),
    guest("RflagsVmInIa32eGuest",
          [](FakeVmcs& f) {
            f.seed_v86();
            f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kIa32eModeGuest);
            f.on(F::GUEST_CR4, cr4::kPAE);
          },
          "guest RFLAGS.VM must be 0 for an IA-32e mode guest or when CR0.PE is 0"),
    guest("RflagsIfClearWhenInjectingExternalInterrupt", [](FakeVmcs& f) { f.inject(0, 0x20); },
          "guest RFLAGS.IF must be 1 when injecting an external interrupt"),
};
INSTANTIATE_TEST_SUITE_P(GuestRegisters, VmEntryChecksViolation, ::testing::ValuesIn(kGuestRegisterViolations),
                         kCaseName);

// §27.3.1.5 and §27.3.1.6
constexpr uint64_t kIF = rflags::kFixed1 | rflags::kIF;

void link_to_vmcs(FakeVmcs& f, uint32_t revision) {
  f.poke<uint32_t>(kLink, revision);
  f.set(F::VMCS_LINK_POINTER, kLink);
}

const Violation kGuestNonRegisterViolations[] = {
    guest("ActivityStateUndefined", [](FakeVmcs& f) { f.set(F::GUEST_ACTIVITY_STATE, 4); },
          "guest activity state must be 0 (active) or a state IA32_VMX_MISC[8:6] supports"),
    guest("ActivityStateUnsupported",
          [](FakeVmcs& f) {
            f.caps.misc &= ~(1ull << 7);
            f.set(F::GUEST_ACTIVITY_STATE, 2);
          },
          "guest activity state must be 0 (active) or a state IA32_VMX_MISC[8:6] supports"),
    guest("HltWithSsDpl3",
          [](FakeVmcs& f) {
            f.seed_v86();
            f.set(F::GUEST_ACTIVITY_STATE, 1);
          },
          "guest activity state must not be HLT when SS.AR.DPL is not 0"),
    guest("HltWithMovSsBlocking",
          [](FakeVmcs& f) {
            f.set(F::GUEST_ACTIVITY_STATE, 1);
            f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingByMovSs);
          },
          "guest activity state must be active when blocking by STI or by MOV SS"),
    guest("HltInjectGeneralProtection",
          [](FakeVmcs& f) {
            f.set(F::GUEST_ACTIVITY_STATE, 1);
            f.inject(3, 13, true);
          },
          "an event injected into the HLT state must be an external interrupt, NMI, #DB, #MC or pending MTF VM exit"),
    guest("HltInjectSoftwareInterrupt",
          [](FakeVmcs& f) {
            f.set(F::GUEST_ACTIVITY_STATE, 1);
            f.inject(4, 0x80);
            f.set(F::VM_ENTRY_INSTRUCTION_LEN, 2);
          },
          "an event injected into the HLT state must be an external interrupt, NMI, #DB, #MC or pending MTF VM exit"),
    guest("ShutdownInjectExternalInterrupt",
          [](FakeVmcs& f) {
            f.set(F::GUEST_RFLAGS, kIF);
            f.set(F::GUEST_ACTIVITY_STATE, 2);
            f.inject(0, 0x20);
          },
          "an event injected into the shutdown state must be an NMI or #MC"),
    guest("WaitForSipiInjectNmi",
          [](FakeVmcs& f) {
            f.set(F::GUEST_ACTIVITY_STATE, 3);
            f.inject(2, 2);
          },
          "no event may be injected into the wait-for-SIPI state"),
    guest("WaitForSipiWithEntryToSmm",
          [](FakeVmcs& f) {
            f.in_smm = true;
            f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kEntryToSmm);
            f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingBySmi);
            f.set(F::GUEST_ACTIVITY_STATE, 3);
          },
          "guest activity state must not be wait-for-SIPI when entry to SMM is 1"),
    guest("InterruptibilityReservedBit5", [](FakeVmcs& f) { f.set(F::GUEST_INTERRUPTIBILITY_INFO, 1u << 5); },
          "guest interruptibility-state bits 31:4 must be 0 (bit 4 needs SGX)"),
    guest("InterruptibilityEnclaveWithoutSgx",
          [](FakeVmcs& f) { f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kEnclaveInterruption); },
          "guest interruptibility-state bits 31:4 must be 0 (bit 4 needs SGX)"),
    guest("StiAndMovSsBlocking",
          [](FakeVmcs& f) {
            f.set(F::GUEST_RFLAGS, kIF);
            f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingBySti | interruptibility::kBlockingByMovSs);
          },
          "guest interruptibility state must not indicate blocking by both STI and MOV SS"),
    guest("StiBlockingWithIfClear",
          [](FakeVmcs& f) { f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingBySti); },
          "guest blocking by STI requires RFLAGS.IF = 1"),
    guest("ExternalInterruptIntoStiBlocking",
          [](FakeVmcs& f) {
            f.set(F::GUEST_RFLAGS, kIF);
            f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingBySti);
            f.inject(0, 0x30);
          },
          "guest blocking by STI and by MOV SS must be 0 when injecting an external interrupt"),
    guest("NmiIntoMovSsBlocking",
          [](FakeVmcs& f) {
            f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingByMovSs);
            f.inject(2, 2);
          },
          "guest blocking by MOV SS must be 0 when injecting an NMI"),
    guest("SmiBlockingOutsideSmm",
          [](FakeVmcs& f) { f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingBySmi); },
          "guest blocking by SMI must be 0 outside SMM"),
    guest("EntryToSmmWithoutSmiBlocking",
          [](FakeVmcs& f) {
            f.in_smm = true;
            f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kEntryToSmm);
          },
          "guest blocking by SMI must be 1 when entry to SMM is 1"),
    guest("VirtualNmiIntoVirtualNmiBlocking",
          [](FakeVmcs& f) {
            f.on(F::PIN_BASED_VM_EXEC_CONTROL, pin::kNmiExiting | pin::kVirtualNmis);
            f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingByNmi);
            f.inject(2, 2);
          },
          "guest blocking by NMI must be 0 when injecting an NMI with virtual NMIs"),
    guest("NmiIntoStiBlocking",
          [](FakeVmcs& f) {
            f.set(F::GUEST_RFLAGS, kIF);
            f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingBySti);
            f.inject(2, 2);
          },
          "guest blocking by STI must be 0 when injecting an NMI", 3),
    guest("PendingDebugReservedBit4", [](FakeVmcs& f) { f.set(F::GUEST_PENDING_DBG_EXCEPTIONS, 1u << 4); },
          "guest pending debug exceptions bits 63:15, 13 and 11:4 must be 0 (bit 16 needs RTM)"),
    guest("PendingDebugRtmWithoutRtm", [](FakeVmcs& f) { f.set(F::GUEST_PENDING_DBG_EXCEPTIONS, 1u << 16); },
          "guest pending debug exceptions bits 63:15, 13 and 11:4 must be 0 (bit 16 needs RTM)"),
    guest("PendingDebugBit13", [](FakeVmcs& f) { f.set(F::GUEST_PENDING_DBG_EXCEPTIONS, 1u << 13); },
          "guest pending debug exceptions bits 63:15, 13 and 11:4 must be 0 (bit 16 needs RTM)"),
    guest("PendingDebugBsMissingWithTf",
          [](FakeVmcs& f) {
            f.set(F::GUEST_RFLAGS, kIF | rflags::kTF);
            f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingBySti);
          },
          "guest pending debug exceptions BS must be 1 when RFLAGS.TF = 1 and DEBUGCTL.BTF = 0 with blocking by STI "
          "or MOV SS or in HLT"),
    guest("PendingDebugBsWithoutTfInHlt",
          [](FakeVmcs& f) {
            f.set(F::GUEST_ACTIVITY_STATE, 1);
            f.set(F::GUEST_PENDING_DBG_EXCEPTIONS, 1u << 14);
          },
          "guest pending debug exceptions BS must be 0 when RFLAGS.TF = 0 or DEBUGCTL.BTF = 1 with blocking by STI or "
          "MOV SS or in HLT"),
    guest("PendingDebugBsWithBtf",
          [](FakeVmcs& f) {
            f.set(F::GUEST_RFLAGS, rflags::kFixed1 | rflags::kTF);
            f.set(F::GUEST_IA32_DEBUGCTL, 2);
            f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingByMovSs);
            f.set(F::GUEST_PENDING_DBG_EXCEPTIONS, 1u << 14);
          },
          "guest pending debug exceptions BS must be 0 when RFLAGS.TF = 0 or DEBUGCTL.BTF = 1 with blocking by STI or "
          "MOV SS or in HLT"),
    guest("LinkPointerUnaligned", [](FakeVmcs& f) { f.set(F::VMCS_LINK_POINTER, kLink + 8); },
          "VMCS link pointer bits 11:0 must be 0", 4),
    guest("LinkPointerBeyondWidth", [](FakeVmcs& f) { f.set(F::VMCS_LINK_POINTER, 1ull << 40); },
          "VMCS link pointer must be within the physical-address width", 4),
    guest("LinkPointerWrongRevision", [](FakeVmcs& f) { link_to_vmcs(f, kVmcsRevision + 1); },
          "VMCS link pointer must reference a VMCS with the processor's revision identifier", 4),
    guest("LinkPointerOutsideMemory", [](FakeVmcs& f) { f.set(F::VMCS_LINK_POINTER, 0x80000000); },
          "VMCS link pointer must reference a VMCS with the processor's revision identifier", 4),
    guest("LinkPointerShadowWithoutShadowing",
          [](FakeVmcs& f) { link_to_vmcs(f, kVmcsRevision | vmcs_layout::kShadowIndicator); },
          "VMCS link pointer's shadow-VMCS indicator (revision bit 31) must equal VMCS shadowing", 4),
    guest("LinkPointerOrdinaryWithShadowing",
          [](FakeVmcs& f) {
            f.secondary(proc2::kVmcsShadowing);
            f.set(F::VMREAD_BITMAP, 0x6000);
            f.set(F::VMWRITE_BITMAP, 0x7000);
            link_to_vmcs(f, kVmcsRevision);
          },
          "VMCS link pointer's shadow-VMCS indicator (revision bit 31) must equal VMCS shadowing", 4),
    guest("LinkPointerIsCurrentVmcs",
          [](FakeVmcs& f) {
            f.current_vmcs = kLink;
            link_to_vmcs(f, kVmcsRevision);
          },
          "VMCS link pointer must not be the current-VMCS pointer", 4),
    guest("PdpteFieldReservedWithEpt",
          [](FakeVmcs& f) {
            f.seed_pae32(true);
            f.set(F::GUEST_PDPTR2, 0x7000 | pte::kP | pte::kXD);
          },
          "guest PDPTE2 field must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE paging with "
          "EPT)",
          2),
    guest("PdpteFieldBeyondWidthWithEpt",
          [](FakeVmcs& f) {
            f.seed_pae32(true);
            f.set(F::GUEST_PDPTR0, (1ull << 40) | pte::kP);
          },
          "guest PDPTE0 field must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE paging with "
          "EPT)",
          2),
    guest("PdpteAtCr3ReservedWithoutEpt",
          [](FakeVmcs& f) {
            f.seed_pae32(false);
            f.poke<uint64_t>(0x9000 + 8, 0x7000 | pte::kP | pte::kRW);
          },
          "PDPTE1 at guest CR3 must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE paging "
          "without EPT)",
          2),
    guest("PdpteAtCr3OutsideMemory",
          [](FakeVmcs& f) {
            f.seed_pae32(false);
            f.set(F::GUEST_CR3, 0x90000000);
          },
          "PDPTE0 at guest CR3 must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE paging "
          "without EPT)",
          2),
};
INSTANTIATE_TEST_SUITE_P(GuestNonRegister, VmEntryChecksViolation, ::testing::ValuesIn(kGuestNonRegisterViolations),
                         kCaseName);

}  // namespace
}  // namespace nestvm::arch::vmentry_test
