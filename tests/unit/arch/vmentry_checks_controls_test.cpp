// VM-entry checks on the VMX controls (SDM §27.2.1): each single violation is VMfailValid(7)
// with its rule.
#include "unit/arch/vmentry_fake_vmcs.h"

namespace nestvm::arch::vmentry_test {
namespace {

const Violation kControlViolations[] = {
    control("PinAllowed0", [](FakeVmcs& f) { f.set(F::PIN_BASED_VM_EXEC_CONTROL, 0); },
            "pin-based controls must set every bit IA32_VMX_TRUE_PINBASED_CTLS requires (allowed 0-settings)"),
    control("PinAllowed1", [](FakeVmcs& f) { f.on(F::PIN_BASED_VM_EXEC_CONTROL, 1u << 9); },
            "pin-based controls must clear every bit IA32_VMX_TRUE_PINBASED_CTLS does not allow (allowed 1-settings)"),
    control("ProcAllowed0", [](FakeVmcs& f) { f.off(F::CPU_BASED_VM_EXEC_CONTROL, 1u << 1); },
            "primary processor-based controls must set every bit IA32_VMX_TRUE_PROCBASED_CTLS requires (allowed "
            "0-settings)"),
    control("ProcAllowed1", [](FakeVmcs& f) { f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kActivateTertiary); },
            "primary processor-based controls must clear every bit IA32_VMX_TRUE_PROCBASED_CTLS does not allow "
            "(allowed 1-settings)"),
    control("SecondaryAllowed1", [](FakeVmcs& f) { f.secondary(proc2::kTscScaling); },
            "secondary processor-based controls must clear every bit IA32_VMX_PROCBASED_CTLS2 does not allow (allowed "
            "1-settings)"),
    control("Cr3TargetCount", [](FakeVmcs& f) { f.set(F::CR3_TARGET_COUNT, 5); },
            "CR3-target count must not exceed the number IA32_VMX_MISC[24:16] supports"),
    control("IoBitmapAUnaligned",
            [](FakeVmcs& f) {
              f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kUseIoBitmaps);
              f.set(F::IO_BITMAP_A, 0x1010);
              f.set(F::IO_BITMAP_B, 0x2000);
            },
            "I/O-bitmap A address must be 4 KiB aligned and within the physical-address width"),
    control("IoBitmapBBeyondWidth",
            [](FakeVmcs& f) {
              f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kUseIoBitmaps);
              f.set(F::IO_BITMAP_A, 0x1000);
              f.set(F::IO_BITMAP_B, 1ull << 40);
            },
            "I/O-bitmap B address must be 4 KiB aligned and within the physical-address width"),
    control("MsrBitmapUnaligned",
            [](FakeVmcs& f) {
              f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kUseMsrBitmaps);
              f.set(F::MSR_BITMAP, 0x1800);
            },
            "MSR-bitmap address must be 4 KiB aligned and within the physical-address width"),
    control("VirtualApicUnaligned",
            [](FakeVmcs& f) {
              f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kUseTprShadow);
              f.set(F::VIRTUAL_APIC_PAGE_ADDR, 0x6008);
            },
            "virtual-APIC address must be 4 KiB aligned and within the physical-address width"),
    control("TprThresholdHighBits",
            [](FakeVmcs& f) {
              f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kUseTprShadow);
              f.set(F::VIRTUAL_APIC_PAGE_ADDR, 0x6000);
              f.set(F::TPR_THRESHOLD, 0x10);
            },
            "TPR threshold bits 31:4 must be 0 with the TPR shadow and without virtual-interrupt delivery"),
    control("TprThresholdAboveVtpr",
            [](FakeVmcs& f) {
              f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kUseTprShadow);
              f.set(F::VIRTUAL_APIC_PAGE_ADDR, 0x6000);
              f.poke<uint8_t>(0x6080, 0x20);
              f.set(F::TPR_THRESHOLD, 3);
            },
            "TPR threshold bits 3:0 must not exceed VTPR bits 7:4 (virtual-APIC page offset 80H) without APIC-access "
            "virtualization or virtual-interrupt delivery"),
    control("VirtualNmisWithoutNmiExiting", [](FakeVmcs& f) { f.on(F::PIN_BASED_VM_EXEC_CONTROL, pin::kVirtualNmis); },
            "virtual NMIs requires NMI exiting"),
    control("NmiWindowWithoutVirtualNmis",
            [](FakeVmcs& f) { f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kNmiWindowExiting); },
            "NMI-window exiting requires virtual NMIs"),
    control("ApicAccessAddressUnaligned",
            [](FakeVmcs& f) {
              f.secondary(proc2::kVirtualizeApicAccesses);
              f.set(F::APIC_ACCESS_ADDR, 0xfee00800);
            },
            "APIC-access address must be 4 KiB aligned and within the physical-address width"),
    control("X2apicWithoutTprShadow", [](FakeVmcs& f) { f.secondary(proc2::kVirtualizeX2apic); },
            "virtualize x2APIC mode, APIC-register virtualization and virtual-interrupt delivery require the TPR "
            "shadow"),
    control("ApicRegisterVirtualizationWithoutTprShadow",
            [](FakeVmcs& f) { f.secondary(proc2::kApicRegisterVirtualization); },
            "virtualize x2APIC mode, APIC-register virtualization and virtual-interrupt delivery require the TPR "
            "shadow"),
    control("X2apicWithApicAccesses",
            [](FakeVmcs& f) {
              f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kUseTprShadow);
              f.set(F::VIRTUAL_APIC_PAGE_ADDR, 0x6000);
              f.secondary(proc2::kVirtualizeX2apic | proc2::kVirtualizeApicAccesses);
              f.set(F::APIC_ACCESS_ADDR, 0x7000);
            },
            "virtualize x2APIC mode and virtualize APIC accesses must not both be 1"),
    control("VirtualInterruptDeliveryWithoutExternalInterruptExiting",
            [](FakeVmcs& f) {
              f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kUseTprShadow);
              f.set(F::VIRTUAL_APIC_PAGE_ADDR, 0x6000);
              f.secondary(proc2::kVirtualInterruptDelivery);
            },
            "virtual-interrupt delivery requires external-interrupt exiting"),
    control("PostedInterruptsWithoutVid", [](FakeVmcs& f) { f.on(F::PIN_BASED_VM_EXEC_CONTROL, pin::kPostedInterrupts); },
            "process posted interrupts requires virtual-interrupt delivery"),
    control("PostedInterruptsWithoutAck",
            [](FakeVmcs& f) {
              f.on(F::PIN_BASED_VM_EXEC_CONTROL, pin::kPostedInterrupts | pin::kExtIntExiting);
              f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kUseTprShadow);
              f.set(F::VIRTUAL_APIC_PAGE_ADDR, 0x6000);
              f.secondary(proc2::kVirtualInterruptDelivery);
            },
            "process posted interrupts requires acknowledge interrupt on exit"),
    control("PostedInterruptVectorHighBits",
            [](FakeVmcs& f) {
              f.on(F::PIN_BASED_VM_EXEC_CONTROL, pin::kPostedInterrupts | pin::kExtIntExiting);
              f.on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kUseTprShadow);
              f.set(F::VIRTUAL_APIC_PAGE_ADDR, 0x6000);
              f.secondary(proc2::kVirtualInterruptDelivery);
              f.on(F::VM_EXIT_CONTROLS, exit_ctl::kAckIntrOnExit);
              f.set(F::POSTED_INTR_NV, 0x1f0);
            },
            "posted-interrupt notification vector bits 15:8 must be 0"),
    control("VpidZero", [](FakeVmcs& f) { f.secondary(proc2::kEnableVpid); }, "VPID must not be 0 when enable VPID is 1"),
    control("EptpMemoryTypeReserved",
            [](FakeVmcs& f) {
              f.ept();
              f.set(F::EPT_POINTER, (kValidEptp & ~7ull) | 1);
            },
            "EPTP memory type (bits 2:0) must be one IA32_VMX_EPT_VPID_CAP supports (0 UC, 6 WB)"),
    control("EptpMemoryTypeUnsupported",
            [](FakeVmcs& f) {
              f.caps.ept_vpid_cap &= ~ept_vpid_cap::kMemTypeUc;
              f.ept();
              f.set(F::EPT_POINTER, kValidEptp & ~7ull);
            },
            "EPTP memory type (bits 2:0) must be one IA32_VMX_EPT_VPID_CAP supports (0 UC, 6 WB)"),
    control("EptpWalkLength",
            [](FakeVmcs& f) {
              f.ept();
              f.set(F::EPT_POINTER, (kValidEptp & ~0x38ull) | (2 << 3));
            },
            "EPTP page-walk length (bits 5:3) must be 3, a 4-level walk"),
    control("EptpAccessedDirtyUnsupported",
            [](FakeVmcs& f) {
              f.caps.ept_vpid_cap &= ~ept_vpid_cap::kAccessedDirty;
              f.ept();
              f.set(F::EPT_POINTER, kValidEptp | eptp::kAdEnable);
            },
            "EPTP accessed/dirty enable (bit 6) requires IA32_VMX_EPT_VPID_CAP[21]"),
    control("EptpReservedBit8",
            [](FakeVmcs& f) {
              f.ept();
              f.set(F::EPT_POINTER, kValidEptp | 0x100);
            },
            "EPTP reserved bits 11:7 must be 0"),
    control("EptpShadowStackBitWithoutCet",
            [](FakeVmcs& f) {
              f.ept();
              f.set(F::EPT_POINTER, kValidEptp | eptp::kSupervisorShadowStack);
            },
            "EPTP reserved bits 11:7 must be 0"),
    control("EptpBeyondWidth",
            [](FakeVmcs& f) {
              f.ept();
              f.set(F::EPT_POINTER, kValidEptp | (1ull << 40));
            },
            "EPTP must be within the physical-address width"),
    control("PmlWithoutEpt", [](FakeVmcs& f) { f.secondary(proc2::kEnablePml); }, "enable PML requires enable EPT"),
    control("UnrestrictedGuestWithoutEpt", [](FakeVmcs& f) { f.secondary(proc2::kUnrestrictedGuest); },
            "unrestricted guest requires enable EPT"),
    control("ModeBasedExecuteWithoutEpt", [](FakeVmcs& f) { f.secondary(proc2::kModeBasedEptExec); },
            "mode-based execute control for EPT requires enable EPT"),
    control("VmreadBitmapUnaligned",
            [](FakeVmcs& f) {
              f.secondary(proc2::kVmcsShadowing);
              f.set(F::VMREAD_BITMAP, 0x6001);
              f.set(F::VMWRITE_BITMAP, 0x7000);
            },
            "VMREAD-bitmap address must be 4 KiB aligned and within the physical-address width"),
    control("VmwriteBitmapBeyondWidth",
            [](FakeVmcs& f) {
              f.secondary(proc2::kVmcsShadowing);
              f.set(F::VMREAD_BITMAP, 0x6000);
              f.set(F::VMWRITE_BITMAP, 1ull << 45);
            },
            "VMWRITE-bitmap address must be 4 KiB aligned and within the physical-address width"),
    // §27.2.1.2
    control("ExitAllowed0", [](FakeVmcs& f) { f.off(F::VM_EXIT_CONTROLS, 1u << 0); },
            "VM-exit controls must set every bit IA32_VMX_TRUE_EXIT_CTLS requires (allowed 0-settings)"),
    control("ExitAllowed1", [](FakeVmcs& f) { f.on(F::VM_EXIT_CONTROLS, exit_ctl::kClearBndcfgs); },
            "VM-exit controls must clear every bit IA32_VMX_TRUE_EXIT_CTLS does not allow (allowed 1-settings)"),
    control("SavePreemptionTimerWithoutTimer",
            [](FakeVmcs& f) { f.on(F::VM_EXIT_CONTROLS, exit_ctl::kSavePreemptionTimer); },
            "save VMX-preemption-timer value requires activate VMX-preemption timer"),
    control("ExitMsrStoreUnaligned",
            [](FakeVmcs& f) {
              f.set(F::VM_EXIT_MSR_STORE_COUNT, 1);
              f.set(F::VM_EXIT_MSR_STORE_ADDR, 0x7008);
            },
            "VM-exit MSR-store address must be 16-byte aligned and within the physical-address width"),
    control("ExitMsrStoreEndBeyondWidth",
            [](FakeVmcs& f) {
              f.set(F::VM_EXIT_MSR_STORE_COUNT, 0x100);
              f.set(F::VM_EXIT_MSR_STORE_ADDR, (1ull << 40) - 0x800);
            },
            "VM-exit MSR-store area must end within the physical-address width"),
    control("ExitMsrLoadBeyondWidth",
            [](FakeVmcs& f) {
              f.set(F::VM_EXIT_MSR_LOAD_COUNT, 1);
              f.set(F::VM_EXIT_MSR_LOAD_ADDR, 1ull << 41);
            },
            "VM-exit MSR-load address must be 16-byte aligned and within the physical-address width"),
    control("ExitMsrLoadEndBeyondWidth",
            [](FakeVmcs& f) {
              f.set(F::VM_EXIT_MSR_LOAD_COUNT, 2);
              f.set(F::VM_EXIT_MSR_LOAD_ADDR, (1ull << 40) - 0x10);
            },
            "VM-exit MSR-load area must end within the physical-address width"),
    // §27.2.1.3
    control("EntryAllowed0", [](FakeVmcs& f) { f.off(F::VM_ENTRY_CONTROLS, 1u << 0); },
            "VM-entry controls must set every bit IA32_VMX_TRUE_ENTRY_CTLS requires (allowed 0-settings)"),
    control("EntryAllowed1", [](FakeVmcs& f) { f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kLoadBndcfgs); },
            "VM-entry controls must clear every bit IA32_VMX_TRUE_ENTRY_CTLS does not allow (allowed 1-settings)"),
    control("InjectType1", [](FakeVmcs& f) { f.inject(1, 0x20); }, "VM-entry interruption type 1 is reserved"),
    control("InjectOtherEventWithoutMtf",
            [](FakeVmcs& f) {
              f.caps.proc.allowed1 &= ~proc::kMonitorTrapFlag;
              f.inject(7, 0);
            },
            "VM-entry interruption type 7 (other event) requires monitor-trap-flag support"),
    control("InjectNmiVector", [](FakeVmcs& f) { f.inject(2, 3); }, "an injected NMI must have vector 2"),
    control("InjectHardwareExceptionVector", [](FakeVmcs& f) { f.inject(3, 32); },
            "an injected hardware exception must have a vector of 31 or less"),
    control("InjectOtherEventVector", [](FakeVmcs& f) { f.inject(7, 1); },
            "an injected other event must have vector 0 (pending MTF VM exit)"),
    control("InjectGpWithoutErrorCode", [](FakeVmcs& f) { f.inject(3, 13, false); },
            "deliver-error-code must be 1 for a hardware exception with an error code (8, 10-14, 17) unless the guest "
            "is in real mode"),
    control("InjectUdWithErrorCode", [](FakeVmcs& f) { f.inject(3, 6, true); },
            "deliver-error-code must be 0 for a real-mode guest, an event that is not a hardware exception, or a vector "
            "without an error code"),
    control("InjectExternalInterruptWithErrorCode", [](FakeVmcs& f) { f.inject(0, 0x20, true); },
            "deliver-error-code must be 0 for a real-mode guest, an event that is not a hardware exception, or a vector "
            "without an error code"),
    control("InjectErrorCodeIntoRealMode",
            [](FakeVmcs& f) {
              f.seed_unrestricted_real_mode();
              f.inject(3, 13, true);
            },
            "deliver-error-code must be 0 for a real-mode guest, an event that is not a hardware exception, or a vector "
            "without an error code"),
    control("InjectReservedBits",
            [](FakeVmcs& f) {
              f.inject(3, 6);
              f.on(F::VM_ENTRY_INTR_INFO_FIELD, 1u << 12);
            },
            "VM-entry interruption-information bits 30:12 must be 0"),
    control("InjectErrorCodeHighBits",
            [](FakeVmcs& f) {
              f.inject(3, 13, true);
              f.set(F::VM_ENTRY_EXCEPTION_ERROR_CODE, 0x10000);
            },
            "VM-entry exception error code bits 31:16 must be 0"),
    control("InjectSoftwareInterruptLength0", [](FakeVmcs& f) { f.inject(4, 0x80); },
            "VM-entry instruction length must be 1-15 (0 only with IA32_VMX_MISC[30]) for a software interrupt, "
            "software exception or privileged software exception"),
    control("InjectSoftwareExceptionLength16",
            [](FakeVmcs& f) {
              f.inject(6, 3);
              f.set(F::VM_ENTRY_INSTRUCTION_LEN, 16);
            },
            "VM-entry instruction length must be 1-15 (0 only with IA32_VMX_MISC[30]) for a software interrupt, "
            "software exception or privileged software exception"),
    control("InjectPrivilegedSoftwareExceptionLength0", [](FakeVmcs& f) { f.inject(5, 1); },
            "VM-entry instruction length must be 1-15 (0 only with IA32_VMX_MISC[30]) for a software interrupt, "
            "software exception or privileged software exception"),
    control("EntryMsrLoadUnaligned",
            [](FakeVmcs& f) {
              f.set(F::VM_ENTRY_MSR_LOAD_COUNT, 1);
              f.set(F::VM_ENTRY_MSR_LOAD_ADDR, 0x7004);
            },
            "VM-entry MSR-load address must be 16-byte aligned and within the physical-address width"),
    control("EntryMsrLoadEndBeyondWidth",
            [](FakeVmcs& f) {
              f.set(F::VM_ENTRY_MSR_LOAD_COUNT, 512);
              f.set(F::VM_ENTRY_MSR_LOAD_ADDR, (1ull << 40) - 0x1000);
            },
            "VM-entry MSR-load area must end within the physical-address width"),
    control("EntryToSmmOutsideSmm", [](FakeVmcs& f) { f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kEntryToSmm); },
            "entry to SMM must be 0 outside SMM"),
    control("DeactivateDualMonitorOutsideSmm",
            [](FakeVmcs& f) { f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kDeactivateDualMonitor); },
            "deactivate dual-monitor treatment must be 0 outside SMM"),
    control("EntryToSmmAndDeactivateDualMonitor",
            [](FakeVmcs& f) {
              f.in_smm = true;
              f.on(F::VM_ENTRY_CONTROLS, entry_ctl::kEntryToSmm | entry_ctl::kDeactivateDualMonitor);
            },
            "entry to SMM and deactivate dual-monitor treatment must not both be 1"),
};
INSTANTIATE_TEST_SUITE_P(Controls, VmEntryChecksViolation, ::testing::ValuesIn(kControlViolations),
                         kCaseName);

}  // namespace
}  // namespace nestvm::arch::vmentry_test
