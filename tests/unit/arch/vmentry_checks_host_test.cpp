// VM-entry checks on the host-state area (SDM §27.2.2-27.2.4): each single violation is
// VMfailValid(8) with its rule.
#include "unit/arch/vmentry_fake_vmcs.h"

namespace nestvm::arch::vmentry_test {
namespace {

// Leaves a 64-bit host for a 32-bit one (the processor outside IA-32e mode).
void host32(FakeVmcs& f) {
  f.in_ia32e_mode = false;
  f.off(F::VM_EXIT_CONTROLS, exit_ctl::kHostAddrSpaceSize);
  f.off(F::VM_ENTRY_CONTROLS, entry_ctl::kIa32eModeGuest);
  f.set(F::HOST_RIP, 0x100000);
}

const Violation kHostViolations[] = {
    host("Cr0Fixed0", [](FakeVmcs& f) { f.off(F::HOST_CR0, cr0::kNE); },
         "host CR0 must set every bit IA32_VMX_CR0_FIXED0 requires"),
    host("Cr0Fixed1", [](FakeVmcs& f) { f.on(F::HOST_CR0, 1ull << 32); },
         "host CR0 must clear every bit IA32_VMX_CR0_FIXED1 does not allow"),
    host("Cr4Fixed0", [](FakeVmcs& f) { f.off(F::HOST_CR4, cr4::kVMXE); },
         "host CR4 must set every bit IA32_VMX_CR4_FIXED0 requires"),
    host("Cr4Fixed1", [](FakeVmcs& f) { f.on(F::HOST_CR4, cr4::kLA57); },
         "host CR4 must clear every bit IA32_VMX_CR4_FIXED1 does not allow"),
    host("Cr3BeyondWidth", [](FakeVmcs& f) { f.set(F::HOST_CR3, 1ull << 40); },
         "host CR3 must be within the physical-address width"),
    host("SysenterEsp", [](FakeVmcs& f) { f.set(F::HOST_IA32_SYSENTER_ESP, 0x0000800000000000ull); },
         "host IA32_SYSENTER_ESP must be canonical"),
    host("SysenterEip", [](FakeVmcs& f) { f.set(F::HOST_IA32_SYSENTER_EIP, 0xffff7fffffffffffull); },
         "host IA32_SYSENTER_EIP must be canonical"),
    host("PerfGlobalCtrl",
         [](FakeVmcs& f) {
           f.on(F::VM_EXIT_CONTROLS, exit_ctl::kLoadPerfGlobalCtrl);
           f.set(F::HOST_IA32_PERF_GLOBAL_CTRL, 1);
         },
         "host IA32_PERF_GLOBAL_CTRL reserved bits must be 0 when load IA32_PERF_GLOBAL_CTRL is 1"),
    host("Pat",
         [](FakeVmcs& f) {
           f.on(F::VM_EXIT_CONTROLS, exit_ctl::kLoadPat);
           f.set(F::HOST_IA32_PAT, 0x0007040600070402ull);
         },
         "host IA32_PAT entries must each be 0, 1, 4, 5, 6 or 7 when load IA32_PAT is 1"),
    host("EferReserved",
         [](FakeVmcs& f) {
           f.on(F::VM_EXIT_CONTROLS, exit_ctl::kLoadEfer);
           f.on(F::HOST_IA32_EFER, efer::kSVME);
         },
         "host IA32_EFER reserved bits must be 0 when load IA32_EFER is 1"),
    host("EferLma",
         [](FakeVmcs& f) {
           f.on(F::VM_EXIT_CONTROLS, exit_ctl::kLoadEfer);
           f.set(F::HOST_IA32_EFER, efer::kLME);
         },
         "host IA32_EFER.LMA must equal host address-space size when load IA32_EFER is 1"),
    host("EferLme",
         [](FakeVmcs& f) {
           f.on(F::VM_EXIT_CONTROLS, exit_ctl::kLoadEfer);
           f.set(F::HOST_IA32_EFER, efer::kLMA);
         },
         "host IA32_EFER.LME must equal host address-space size when load IA32_EFER is 1"),
    host("EsRpl", [](FakeVmcs& f) { f.set(F::HOST_ES_SELECTOR, 0x13); }, "host ES selector RPL and TI must be 0"),
    host("CsTi", [](FakeVmcs& f) { f.set(F::HOST_CS_SELECTOR, 0x0c); }, "host CS selector RPL and TI must be 0"),
    host("SsRpl", [](FakeVmcs& f) { f.set(F::HOST_SS_SELECTOR, 0x11); }, "host SS selector RPL and TI must be 0"),
    host("DsTi", [](FakeVmcs& f) { f.set(F::HOST_DS_SELECTOR, 0x14); }, "host DS selector RPL and TI must be 0"),
    host("FsRpl", [](FakeVmcs& f) { f.set(F::HOST_FS_SELECTOR, 3); }, "host FS selector RPL and TI must be 0"),
    host("GsTi", [](FakeVmcs& f) { f.set(F::HOST_GS_SELECTOR, 4); }, "host GS selector RPL and TI must be 0"),
    host("TrRpl", [](FakeVmcs& f) { f.set(F::HOST_TR_SELECTOR, 0x42); }, "host TR selector RPL and TI must be 0"),
    host("CsZero", [](FakeVmcs& f) { f.set(F::HOST_CS_SELECTOR, 0); }, "host CS selector must not be 0"),
    host("TrZero", [](FakeVmcs& f) { f.set(F::HOST_TR_SELECTOR, 0); }, "host TR selector must not be 0"),
    host("SsZeroIn32BitHost",
         [](FakeVmcs& f) {
           host32(f);
           f.set(F::HOST_SS_SELECTOR, 0);
         },
         "host SS selector must not be 0 when host address-space size is 0"),
    host("FsBase", [](FakeVmcs& f) { f.set(F::HOST_FS_BASE, 1ull << 47); }, "host FS base must be canonical"),
    host("GsBase", [](FakeVmcs& f) { f.set(F::HOST_GS_BASE, 0x8000000000000000ull); }, "host GS base must be canonical"),
    host("GdtrBase", [](FakeVmcs& f) { f.set(F::HOST_GDTR_BASE, 1ull << 50); }, "host GDTR base must be canonical"),
    host("IdtrBase", [](FakeVmcs& f) { f.set(F::HOST_IDTR_BASE, 1ull << 48); }, "host IDTR base must be canonical"),
    host("TrBase", [](FakeVmcs& f) { f.set(F::HOST_TR_BASE, 0xfff0000000000000ull); }, "host TR base must be canonical"),
    host("AddressSpaceSize0InIa32eMode",
         [](FakeVmcs& f) {
           f.off(F::VM_EXIT_CONTROLS, exit_ctl::kHostAddrSpaceSize);
           f.off(F::VM_ENTRY_CONTROLS, entry_ctl::kIa32eModeGuest);
         },
         "host address-space size must be 1 when the processor is in IA-32e mode"),
    host("Ia32eGuestOutsideIa32eMode",
         [](FakeVmcs& f) {
           f.in_ia32e_mode = false;
           f.off(F::VM_EXIT_CONTROLS, exit_ctl::kHostAddrSpaceSize);
         },
         "IA-32e mode guest must be 0 when the processor is outside IA-32e mode"),
    host("AddressSpaceSize1OutsideIa32eMode",
         [](FakeVmcs& f) {
           f.in_ia32e_mode = false;
           f.off(F::VM_ENTRY_CONTROLS, entry_ctl::kIa32eModeGuest);
         },
         "host address-space size must be 0 when the processor is outside IA-32e mode"),
    host("PcideIn32BitHost",
         [](FakeVmcs& f) {
           host32(f);
           f.on(F::HOST_CR4, cr4::kPCIDE);
         },
         "host CR4.PCIDE must be 0 when host address-space size is 0"),
    host("RipHighIn32BitHost",
         [](FakeVmcs& f) {
           host32(f);
           f.set(F::HOST_RIP, 1ull << 32);
         },
         "host RIP bits 63:32 must be 0 when host address-space size is 0"),
    host("PaeClearIn64BitHost", [](FakeVmcs& f) { f.off(F::HOST_CR4, cr4::kPAE); },
         "host CR4.PAE must be 1 when host address-space size is 1"),
    host("RipNonCanonicalIn64BitHost", [](FakeVmcs& f) { f.set(F::HOST_RIP, 0x0000800000000000ull); },
         "host RIP must be canonical when host address-space size is 1"),
};
INSTANTIATE_TEST_SUITE_P(Host, VmEntryChecksViolation, ::testing::ValuesIn(kHostViolations),
                         kCaseName);

}  // namespace
}  // namespace nestvm::arch::vmentry_test
