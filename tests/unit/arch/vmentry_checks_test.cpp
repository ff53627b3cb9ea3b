// The VM-entry checks (arch/vmentry_checks.h) as pure functions on a fake VMCS
// (vmentry_fake_vmcs.h): a valid VMCS and its valid variants pass, the checks run in the SDM's
// order, and the MSR-load entries of §27.4. The single violations of each family are in
// vmentry_checks_{controls,host,guest,segments}_test.cpp.
#include "unit/arch/vmentry_fake_vmcs.h"

namespace nestvm::arch::vmentry_test {
namespace {

TEST(VmEntryChecks, ValidGuest64PassesEveryFamily) {
  FakeVmcs f;
  const VmEntryEnv env = f.env();
  EXPECT_TRUE(check_vmx_controls(env).ok()) << check_vmx_controls(env).rule;
  EXPECT_TRUE(check_host_state(env).ok()) << check_host_state(env).rule;
  EXPECT_TRUE(check_guest_state(env).ok()) << check_guest_state(env).rule;
  EXPECT_TRUE(check_vm_entry(env).ok());
}

// Valid variants of the seed that exercise conditional rules on their permitted side.
struct ValidCase {
  std::string name;
  std::function<void(FakeVmcs&)> setup;
};
void PrintTo(const ValidCase& c, std::ostream* os) { *os << c.name; }
class VmEntryChecksValid : public ::testing::TestWithParam<ValidCase> {};

TEST_P(VmEntryChecksValid, Enters) {
  FakeVmcs f;
  GetParam().setup(f);
  const VmEntryCheck r = check_vm_entry(f.env());
  EXPECT_TRUE(r.ok()) << r.rule;
}

const ValidCase kValidCases[] = {
    {"UnrestrictedRealMode", [](FakeVmcs& f) { f.seed_unrestricted_real_mode(); }},
    {"Virtual8086", [](FakeVmcs& f) { f.seed_v86(); }},
    {"Pae32WithoutEpt", [](FakeVmcs& f) { f.seed_pae32(false); }},
    {"Pae32WithEptAndNotPresentGarbage",
     [](FakeVmcs& f) {
       f.seed_pae32(true);
       f.set(F::GUEST_PDPTR0, ~1ull);  // not present: the other bits are ignored
     }},
    {"Compatibility32BitCode", [](FakeVmcs& f) { f.cs(0x18, 0, 0xffffffff, 0xc09b); }},
    {"SecondaryControlsIgnoredWithoutActivation",
     [](FakeVmcs& f) { f.set(F::SECONDARY_VM_EXEC_CONTROL, proc2::kUnrestrictedGuest | proc2::kTscScaling); }},
    {"TprThresholdEqualToVtpr",
     [](FakeVmcs& f) {
       f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kUseTprShadow);
       f.set(F::VIRTUAL_APIC_PAGE_ADDR, 0x6000);
       f.poke<uint8_t>(0x6080, 0x30);
       f.set(F::TPR_THRESHOLD, 3);
     }},
    {"VirtualApicPageOutsideMemoryReadsAllOnes",
     [](FakeVmcs& f) {
       f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kUseTprShadow);
       f.set(F::VIRTUAL_APIC_PAGE_ADDR, 0x80000000);
       f.set(F::TPR_THRESHOLD, 15);
     }},
    {"MsrAreaAddressIgnoredWithZeroCount", [](FakeVmcs& f) { f.set(F::VM_ENTRY_MSR_LOAD_ADDR, 0x7); }},
    {"ErrorCodeOptionalWithBasicBit56",
     [](FakeVmcs& f) {
       f.caps.basic |= vmx_basic::kNoErrorCodeCheck;
       f.inject(3, 13, false);
     }},
    {"SoftwareInterruptLength0WithMiscBit30",
     [](FakeVmcs& f) {
       f.caps.misc |= 1ull << 30;
       f.inject(4, 0x80);
     }},
    {"ExternalInterruptIntoHlt",
     [](FakeVmcs& f) {
       f.set(F::GUEST_RFLAGS, rflags::kFixed1 | rflags::kIF);
       f.set(F::GUEST_ACTIVITY_STATE, 1);
       f.inject(0, 0x20);
     }},
    {"MachineCheckIntoShutdown",
     [](FakeVmcs& f) {
       f.set(F::GUEST_ACTIVITY_STATE, 2);
       f.inject(3, 18);
     }},
    {"PendingMtfIntoHlt",
     [](FakeVmcs& f) {
       f.set(F::GUEST_ACTIVITY_STATE, 1);
       f.inject(7, 0);
     }},
    {"BsWithTfWhileBlockingBySti",
     [](FakeVmcs& f) {
       f.set(F::GUEST_RFLAGS, rflags::kFixed1 | rflags::kIF | rflags::kTF);
       f.set(F::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingBySti);
       f.set(F::GUEST_PENDING_DBG_EXCEPTIONS, 1ull << 14);
     }},
    {"BsWithoutBlockingIsNotChecked", [](FakeVmcs& f) { f.set(F::GUEST_PENDING_DBG_EXCEPTIONS, 1ull << 14); }},
    {"DataSegmentDplBelowRplForUnrestrictedGuest",
     [](FakeVmcs& f) {
       f.seed_unrestricted_real_mode();
       f.set(F::GUEST_DS_SELECTOR, 3);
     }},
    {"UnusableDataSegmentIsNotChecked",
     [](FakeVmcs& f) {
       f.segment(F::GUEST_DS_SELECTOR, F::GUEST_DS_BASE, F::GUEST_DS_LIMIT, F::GUEST_DS_AR_BYTES, 0, 1ull << 40, 7,
                 ar::kUnusable | 0x1f00);
     }},
    {"LinkPointerToShadowVmcsWithShadowing",
     [](FakeVmcs& f) {
       f.secondary(proc2::kVmcsShadowing);
       f.set(F::VMREAD_BITMAP, 0x6000);
       f.set(F::VMWRITE_BITMAP, 0x7000);
       f.poke<uint32_t>(kLink, kVmcsRevision | vmcs_layout::kShadowIndicator);
       f.set(F::VMCS_LINK_POINTER, kLink);
     }},
    {"LinkPointerToOrdinaryVmcs",
     [](FakeVmcs& f) {
       f.poke<uint32_t>(kLink, kVmcsRevision);
       f.set(F::VMCS_LINK_POINTER, kLink);
     }},
    {"LoadedMsrsWithValidValues",
     [](FakeVmcs& f) {
       f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kLoadEfer | entry_ctl::kLoadPat | entry_ctl::kLoadDebugControls);
       f.on(F::VM_EXIT_CONTROLS, exit_ctl::kLoadEfer | exit_ctl::kLoadPat);
       f.set(F::GUEST_IA32_DEBUGCTL, 3);
     }},
    {"EptWithAccessedDirtyFlags", [](FakeVmcs& f) {
       f.ept();
       f.set(F::EPT_POINTER, kValidEptp | eptp::kAdEnable);
     }},
};
INSTANTIATE_TEST_SUITE_P(Variants, VmEntryChecksValid, ::testing::ValuesIn(kValidCases),
                         kCaseName);


TEST_P(VmEntryChecksViolation, FailsWithTheRule) {
  const Violation& v = GetParam();
  FakeVmcs f;
  v.mutate(f);
  const VmEntryEnv env = f.env();
  const VmEntryCheck r = check_vm_entry(env);
  ASSERT_EQ(r.kind, v.kind) << r.rule;
  if (v.kind == VmEntryCheck::Kind::kFailValid) {
    EXPECT_EQ(uint32_t(r.error), v.error_or_reason);
  } else {
    EXPECT_EQ(r.exit_reason, v.error_or_reason);
    EXPECT_EQ(r.qualification, v.qualification);
  }
  EXPECT_EQ(std::string(r.rule), v.rule);
  EXPECT_NE(std::string(r.section), "");
  // The family that owns the rule reports it on its own.
  const VmEntryCheck family = v.error_or_reason == 7   ? check_vmx_controls(env)
                              : v.error_or_reason == 8 ? check_host_state(env)
                                                       : check_guest_state(env);
  EXPECT_EQ(std::string(family.rule), v.rule);
}

// §27.4
struct MsrCase {
  std::string name;
  MsrListEntry entry;
  uint32_t index;
  std::string rule;  // empty: the entry passes
};
void PrintTo(const MsrCase& c, std::ostream* os) { *os << c.name; }
class VmEntryChecksMsrLoad : public ::testing::TestWithParam<MsrCase> {};

TEST_P(VmEntryChecksMsrLoad, ChecksTheEntry) {
  const MsrCase& m = GetParam();
  FakeVmcs f;
  const VmEntryCheck r = check_msr_load_entry(f.env(), m.entry, m.index);
  if (m.rule.empty()) {
    EXPECT_TRUE(r.ok()) << r.rule;
    return;
  }
  ASSERT_EQ(r.kind, VmEntryCheck::Kind::kEntryFailure);
  EXPECT_EQ(r.exit_reason, 34u | kExitReasonFailedEntry);
  EXPECT_EQ(r.qualification, m.index);
  EXPECT_EQ(std::string(r.rule), m.rule);
  EXPECT_EQ(std::string(r.section), "27.4");
}

const MsrCase kMsrCases[] = {
    {"Star", {msr_index(Msr::kIA32_STAR), 0, 0x0023001000000000ull}, 1, ""},
    {"FsBase", {msr_index(Msr::kIA32_FS_BASE), 0, 0}, 2,
     "VM-entry MSR-load entry must not load IA32_FS_BASE or IA32_GS_BASE"},
    {"GsBase", {msr_index(Msr::kIA32_GS_BASE), 0, 0}, 1,
     "VM-entry MSR-load entry must not load IA32_FS_BASE or IA32_GS_BASE"},
    {"X2apicTpr", {0x808, 0, 0}, 3, "VM-entry MSR-load entry must not load an x2APIC MSR (800H-8FFH)"},
    {"X2apicLast", {0x8ff, 0, 0}, 1, "VM-entry MSR-load entry must not load an x2APIC MSR (800H-8FFH)"},
    {"SmmMonitorCtl", {0x9b, 0, 0}, 1, "VM-entry MSR-load entry must not load IA32_SMM_MONITOR_CTL outside SMM"},
    {"MicrocodeTrigger", {0x79, 0, 0}, 1,
     "VM-entry MSR-load entry must not load IA32_BIOS_UPDT_TRIG or IA32_BIOS_SIGN_ID (model-specific)"},
    {"ReservedBits", {msr_index(Msr::kIA32_STAR), 1, 0}, 4, "VM-entry MSR-load entry bits 63:32 must be 0"},
    {"PastTheMaximum", {msr_index(Msr::kIA32_STAR), 0, 0}, 513,
     "VM-entry MSR-load list must not exceed 512 * (IA32_VMX_MISC[27:25] + 1) entries"},
};
INSTANTIATE_TEST_SUITE_P(Entries, VmEntryChecksMsrLoad, ::testing::ValuesIn(kMsrCases),
                         kCaseName);

TEST(VmEntryChecks, SmmMonitorCtlLoadsInSmm) {
  FakeVmcs f;
  f.in_smm = true;
  EXPECT_TRUE(check_msr_load_entry(f.env(), {0x9b, 0, 1}, 1).ok());
}

TEST(VmEntryChecks, MsrListMaximumFollowsMiscBits27to25) {
  VmxCapabilities caps = test_caps();
  EXPECT_EQ(msr_list_max(caps), 512u);
  caps.misc |= 3ull << 25;
  EXPECT_EQ(msr_list_max(caps), 2048u);
}

TEST(VmEntryChecks, WrmsrRejectionNamesTheEntry) {
  const VmEntryCheck r = msr_load_write_failure(7);
  EXPECT_EQ(r.kind, VmEntryCheck::Kind::kEntryFailure);
  EXPECT_EQ(r.exit_reason, 34u | kExitReasonFailedEntry);
  EXPECT_EQ(r.qualification, 7u);
  EXPECT_EQ(std::string(r.rule), "VM-entry MSR-load entry must hold a value WRMSR accepts for that MSR");
}

TEST(VmEntryChecks, MsrListEntriesAreReadFromMemory) {
  FakeVmcs f;
  f.poke<uint32_t>(0x7010, 0xc0000081);
  f.poke<uint32_t>(0x7014, 5);
  f.poke<uint64_t>(0x7018, 0x1122334455667788ull);
  const MsrListEntry e = read_msr_list_entry(f.env(), 0x7000, 1);
  EXPECT_EQ(e.index, 0xc0000081u);
  EXPECT_EQ(e.reserved, 5u);
  EXPECT_EQ(e.value, 0x1122334455667788ull);
  // Beyond memory: all ones, which the checks reject.
  const MsrListEntry none = read_msr_list_entry(f.env(), 0x80000000, 0);
  EXPECT_EQ(none.index, 0xffffffffu);
  EXPECT_FALSE(check_msr_load_entry(f.env(), none, 1).ok());
}

TEST(VmEntryChecks, ControlsAreCheckedBeforeHostAndGuestState) {
  FakeVmcs f;
  f.set(F::CR3_TARGET_COUNT, 9);
  f.set(F::HOST_CS_SELECTOR, 0);
  f.set(F::GUEST_RFLAGS, 0);
  EXPECT_EQ(check_vm_entry(f.env()).error, VmxError::ENTRY_INVALID_CONTROL_FIELD);
  f.set(F::CR3_TARGET_COUNT, 0);
  EXPECT_EQ(check_vm_entry(f.env()).error, VmxError::ENTRY_INVALID_HOST_STATE_FIELD);
  f.set(F::HOST_CS_SELECTOR, 8);
  EXPECT_EQ(check_vm_entry(f.env()).kind, VmEntryCheck::Kind::kEntryFailure);
}

}  // namespace
}  // namespace nestvm::arch::vmentry_test
