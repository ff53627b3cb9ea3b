// VM entry through the silicon (cpu/vmx/vm_entry.cpp): how the results of the checks of SDM
// Chapter 27 are applied. VMfailValid leaves the processor in root operation with the error in
// the VMCS; a VM-entry failure records exit reason and qualification, loads host state, restores
// NMI blocking and processes the VM-exit MSR-load list (§27.8); MSR loading stops at the first
// bad entry (§27.4).
#include <gtest/gtest.h>

#include <string>

#include "arch/cr.h"
#include "arch/msr_index.h"
#include "arch/paging.h"
#include "unit/cpu/vmx/vmx_test_machine.h"

namespace nestvm::test {
namespace {

using arch::VmcsField;
using arch::VmxError;
using Kind = cpu::VmxResult::Kind;
namespace intr_info = arch::intr_info;
namespace interruptibility = arch::interruptibility;

constexpr uint64_t kHostRip = 0xdead0000;  // setup_guest64's host RIP and RSP
constexpr uint64_t kHostRsp = 0x70000;
constexpr uint64_t kPage = 0xe000;         // a spare page for tables the tests build

class VmEntry : public ::testing::Test {
 protected:
  void SetUp() override {
    m.setup_guest64(vmx_layout::kGuestCode);
    m.load_code(vmx_layout::kGuestCode, "1: jmp 1b", 64);
  }
  // Expects a VM-entry failure with this basic reason and qualification, and host state loaded.
  void expect_entry_failure(const cpu::VmxResult& r, uint32_t reason, uint64_t qualification, const std::string& rule) {
    ASSERT_EQ(r.kind, Kind::kEntryFailed) << r.rule;
    EXPECT_EQ(std::string(r.rule), rule);
    EXPECT_EQ(m.exit_reason(), reason | arch::kExitReasonFailedEntry);
    EXPECT_EQ(m.exit_qualification(), qualification);
    EXPECT_FALSE(m.cpu.vmx_non_root());
    EXPECT_EQ(m.cpu.state.rip, kHostRip);
    EXPECT_EQ(m.cpu.state.gpr[cpu::kRsp], kHostRsp);
    EXPECT_TRUE(m.cpu.state.msr.efer & arch::efer::kLMA);  // host address-space size 1
  }
  void msr_entry(uint64_t area, unsigned k, uint32_t index, uint64_t value) {
    m.poke<uint32_t>(area + 16 * k, index);
    m.poke<uint32_t>(area + 16 * k + 4, 0);
    m.poke<uint64_t>(area + 16 * k + 8, value);
  }
  VmxTestMachine m;
};

TEST_F(VmEntry, ValidVmcsEnters) {
  const cpu::VmxResult r = m.enter();
  EXPECT_TRUE(r.ok()) << r.rule;
  EXPECT_EQ(std::string(r.rule), "");
  EXPECT_TRUE(m.cpu.vmx_non_root());
  EXPECT_EQ(m.cpu.state.rip, vmx_layout::kGuestCode);
}

TEST_F(VmEntry, InvalidControlIsVmFailValid7) {
  m.set_control(VmcsField::CPU_BASED_VM_EXEC_CONTROL, arch::proc::kNmiWindowExiting);
  const uint64_t rip = m.cpu.state.rip;
  const cpu::VmxResult r = m.enter();
  EXPECT_EQ(r.kind, Kind::kFailValid);
  EXPECT_EQ(r.error, VmxError::ENTRY_INVALID_CONTROL_FIELD);
  EXPECT_EQ(std::string(r.rule), "NMI-window exiting requires virtual NMIs");
  EXPECT_EQ(m.vmread(VmcsField::VM_INSTRUCTION_ERROR), 7u);
  EXPECT_FALSE(m.cpu.vmx_non_root());
  EXPECT_EQ(m.cpu.state.rip, rip);  // nothing was loaded
  // The VMCS stays clear: a corrected VMLAUNCH succeeds.
  m.set_control(VmcsField::CPU_BASED_VM_EXEC_CONTROL, arch::proc::kNmiWindowExiting, false);
  EXPECT_TRUE(m.enter().ok());
}

TEST_F(VmEntry, TprThresholdIsCheckedAgainstTheVirtualApicPage) {
  m.set_control(VmcsField::CPU_BASED_VM_EXEC_CONTROL, arch::proc::kUseTprShadow);
  m.vmwrite(VmcsField::VIRTUAL_APIC_PAGE_ADDR, kPage);
  m.poke<uint8_t>(kPage + 0x80, 0x20);  // VTPR: priority class 2
  m.vmwrite(VmcsField::TPR_THRESHOLD, 3);
  const cpu::VmxResult r = m.enter();
  EXPECT_EQ(r.kind, Kind::kFailValid);
  EXPECT_EQ(r.error, VmxError::ENTRY_INVALID_CONTROL_FIELD);
  EXPECT_EQ(std::string(r.rule),
            "TPR threshold bits 3:0 must not exceed VTPR bits 7:4 (virtual-APIC page offset 80H) without APIC-access "
            "virtualization or virtual-interrupt delivery");
  m.vmwrite(VmcsField::TPR_THRESHOLD, 2);
  EXPECT_TRUE(m.enter().ok());
}

TEST_F(VmEntry, InvalidHostStateIsVmFailValid8) {
  m.vmwrite(VmcsField::HOST_TR_SELECTOR, 0);
  const cpu::VmxResult r = m.enter();
  EXPECT_EQ(r.kind, Kind::kFailValid);
  EXPECT_EQ(r.error, VmxError::ENTRY_INVALID_HOST_STATE_FIELD);
  EXPECT_EQ(std::string(r.rule), "host TR selector must not be 0");
  EXPECT_EQ(m.vmread(VmcsField::VM_INSTRUCTION_ERROR), 8u);
  EXPECT_FALSE(m.cpu.vmx_non_root());
}

TEST_F(VmEntry, InvalidGuestStateFailsWithExitReason33AndLoadsHostState) {
  m.vmwrite(VmcsField::GUEST_CS_AR_BYTES, 0xa093);  // a data segment in CS
  m.vmwrite(VmcsField::GUEST_RFLAGS, 0x202);
  const cpu::VmxResult r = m.enter();
  expect_entry_failure(r, 33, 0, "guest CS.AR type must be 9, 11, 13 or 15 when not unrestricted");
  // §27.8: the guest-state area is not modified, and the VMCS stays clear.
  EXPECT_EQ(m.guest_rip(), vmx_layout::kGuestCode);
  EXPECT_EQ(m.vmread(VmcsField::GUEST_RFLAGS), 0x202u);
  EXPECT_EQ(m.cpu.vm_enter(false).kind, Kind::kEntryFailed);  // not "VMLAUNCH with non-clear VMCS"
}

TEST_F(VmEntry, InvalidLinkPointerHasQualification4) {
  m.vmwrite(VmcsField::VMCS_LINK_POINTER, vmx_layout::kVmcs);  // the current VMCS itself
  expect_entry_failure(m.enter(), 33, 4, "VMCS link pointer must not be the current-VMCS pointer");
}

TEST_F(VmEntry, LinkPointerToAnotherVmcsEnters) {
  m.poke<uint32_t>(vmx_layout::kVmcs2, arch::kVmcsRevision);
  m.vmwrite(VmcsField::VMCS_LINK_POINTER, vmx_layout::kVmcs2);
  const cpu::VmxResult r = m.enter();
  EXPECT_TRUE(r.ok()) << r.rule;
}

TEST_F(VmEntry, NmiIntoStiBlockingHasQualification3AndKeepsTheEvent) {
  m.vmwrite(VmcsField::GUEST_RFLAGS, 0x202);
  m.vmwrite(VmcsField::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingBySti);
  const uint32_t nmi = intr_info::make(2, 2, false);
  m.vmwrite(VmcsField::VM_ENTRY_INTR_INFO_FIELD, nmi);
  expect_entry_failure(m.enter(), 33, 3, "guest blocking by STI must be 0 when injecting an NMI");
  EXPECT_EQ(m.vmread(VmcsField::VM_ENTRY_INTR_INFO_FIELD), nmi);  // valid bit not cleared (§27.8)
}

TEST_F(VmEntry, BadPdpteOfAPaeGuestHasQualification2) {
  // A 32-bit PAE guest whose PDPT (at CR3, no EPT) has a present entry with reserved bit 5 set.
  m.set_control(VmcsField::VM_ENTRY_CONTROLS, arch::entry_ctl::kIa32eModeGuest, false);
  m.vmwrite(VmcsField::GUEST_CS_SELECTOR, sel::kCode32);
  m.vmwrite(VmcsField::GUEST_CS_AR_BYTES, 0xc09b);
  m.vmwrite(VmcsField::GUEST_CR3, kPage);
  m.poke<uint64_t>(kPage + 8, 0x300000 | arch::pte::kP | (1u << 5));
  expect_entry_failure(m.enter(), 33, 2,
                       "PDPTE1 at guest CR3 must have no reserved bit set (2:1, 8:5, 63:MAXPHYADDR) when present (PAE "
                       "paging without EPT)");
  // With the entry fixed the same guest enters in PAE mode.
  m.poke<uint64_t>(kPage + 8, 0x300000 | arch::pte::kP);
  const cpu::VmxResult r = m.enter();
  EXPECT_TRUE(r.ok()) << r.rule;
  EXPECT_EQ(m.cpu.state.pdpte[1], 0x300000 | arch::pte::kP);
}

TEST_F(VmEntry, MsrLoadStopsAtTheFirstBadEntry) {
  const uint64_t star = 0x0023001000000000ull;
  msr_entry(vmx_layout::kMsrArea, 0, arch::msr_index(arch::Msr::kIA32_STAR), star);
  msr_entry(vmx_layout::kMsrArea, 1, arch::msr_index(arch::Msr::kIA32_FS_BASE), 0x1000);
  m.vmwrite(VmcsField::VM_ENTRY_MSR_LOAD_ADDR, vmx_layout::kMsrArea);
  m.vmwrite(VmcsField::VM_ENTRY_MSR_LOAD_COUNT, 2);
  // NMI blocking is what it was before the entry, whatever the guest state said (§27.8).
  m.vmwrite(VmcsField::GUEST_INTERRUPTIBILITY_INFO, interruptibility::kBlockingByNmi);
  ASSERT_FALSE(m.cpu.state.nmi_blocking);
  expect_entry_failure(m.enter(), 34, 2, "VM-entry MSR-load entry must not load IA32_FS_BASE or IA32_GS_BASE");
  EXPECT_EQ(m.cpu.state.msr.star, star);  // the first entry was loaded and stays
  EXPECT_FALSE(m.cpu.state.nmi_blocking);
}

TEST_F(VmEntry, MsrLoadValueWrmsrRejectsFailsTheEntry) {
  msr_entry(vmx_layout::kMsrArea, 0, arch::msr_index(arch::Msr::kIA32_PAT), 0x02);  // PAT type 2 is reserved
  m.vmwrite(VmcsField::VM_ENTRY_MSR_LOAD_ADDR, vmx_layout::kMsrArea);
  m.vmwrite(VmcsField::VM_ENTRY_MSR_LOAD_COUNT, 1);
  expect_entry_failure(m.enter(), 34, 1, "VM-entry MSR-load entry must hold a value WRMSR accepts for that MSR");
}

TEST_F(VmEntry, MsrLoadListLoadsGuestMsrs) {
  const uint64_t lstar = 0xffffffff81000000ull;
  msr_entry(vmx_layout::kMsrArea, 0, arch::msr_index(arch::Msr::kIA32_LSTAR), lstar);
  m.vmwrite(VmcsField::VM_ENTRY_MSR_LOAD_ADDR, vmx_layout::kMsrArea);
  m.vmwrite(VmcsField::VM_ENTRY_MSR_LOAD_COUNT, 1);
  const cpu::VmxResult r = m.enter();
  EXPECT_TRUE(r.ok()) << r.rule;
  EXPECT_EQ(m.cpu.state.msr.lstar, lstar);
}

TEST_F(VmEntry, EntryFailureProcessesTheExitMsrLoadList) {
  const uint64_t lstar = 0xffffffff81234560ull;
  msr_entry(vmx_layout::kMsrArea, 0, arch::msr_index(arch::Msr::kIA32_LSTAR), lstar);
  m.vmwrite(VmcsField::VM_EXIT_MSR_LOAD_ADDR, vmx_layout::kMsrArea);
  m.vmwrite(VmcsField::VM_EXIT_MSR_LOAD_COUNT, 1);
  m.vmwrite(VmcsField::GUEST_RFLAGS, 0);  // bit 1 clear
  expect_entry_failure(m.enter(), 33, 0, "guest RFLAGS bit 1 must be 1");
  EXPECT_EQ(m.cpu.state.msr.lstar, lstar);
  EXPECT_EQ(m.cpu.current_vmcs().abort_indicator(), 0u);
}

TEST_F(VmEntry, FailedExitMsrLoadAfterEntryFailureIsVmxAbort4) {
  msr_entry(vmx_layout::kMsrArea, 0, arch::msr_index(arch::Msr::kIA32_GS_BASE), 0);
  m.vmwrite(VmcsField::VM_EXIT_MSR_LOAD_ADDR, vmx_layout::kMsrArea);
  m.vmwrite(VmcsField::VM_EXIT_MSR_LOAD_COUNT, 1);
  m.vmwrite(VmcsField::GUEST_RFLAGS, 0);
  const cpu::VmxResult r = m.enter();
  EXPECT_EQ(r.kind, Kind::kEntryFailed);
  EXPECT_EQ(m.cpu.current_vmcs().abort_indicator(), 4u);
  EXPECT_EQ(m.cpu.state.activity, cpu::Activity::kShutdown);
}

}  // namespace
}  // namespace nestvm::test
