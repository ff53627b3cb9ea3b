// A fake VMCS for the pure tests of the VM-entry checks (arch/vmentry_checks.h): a map from
// field to value seeded with a valid 64-bit guest and host, a small physical memory,
// capabilities shaped like nestvm's silicon, and the parameterized harness that checks one
// violation: its error number or exit reason, qualification and rule in words.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "arch/cr.h"
#include "arch/msr_index.h"
#include "arch/paging.h"
#include "arch/rflags.h"
#include "arch/segment.h"
#include "arch/vmentry_checks.h"

namespace nestvm::arch::vmentry_test {

using F = VmcsField;

inline VmxCapabilities test_caps() {
  VmxCapabilities c;
  c.maxphyaddr = 40;
  c.basic = kVmcsRevision | (uint64_t(4096) << vmx_basic::kRegionSizeShift) | (6ull << vmx_basic::kMemTypeShift) |
            vmx_basic::kInsOutsInfo | vmx_basic::kTrueControls;
  c.pin = {pin::kDefault1, pin::kDefault1 | pin::kExtIntExiting | pin::kNmiExiting | pin::kVirtualNmis |
                               pin::kPreemptionTimer | pin::kPostedInterrupts};
  const uint32_t proc0 = proc::kDefault1 & ~(proc::kCr3LoadExiting | proc::kCr3StoreExiting);
  c.proc = {proc0, ~proc::kActivateTertiary};
  c.proc2 = {0, proc2::kVirtualizeApicAccesses | proc2::kEnableEpt | proc2::kDescriptorTableExiting |
                    proc2::kEnableRdtscp | proc2::kVirtualizeX2apic | proc2::kEnableVpid | proc2::kWbinvdExiting |
                    proc2::kUnrestrictedGuest | proc2::kApicRegisterVirtualization |
                    proc2::kVirtualInterruptDelivery | proc2::kPauseLoopExiting | proc2::kVmcsShadowing |
                    proc2::kEnablePml | proc2::kModeBasedEptExec};
  const uint32_t exit0 = exit_ctl::kDefault1 & ~exit_ctl::kSaveDebugControls;
  c.exit = {exit0, exit0 | exit_ctl::kSaveDebugControls | exit_ctl::kHostAddrSpaceSize | exit_ctl::kLoadPerfGlobalCtrl |
                       exit_ctl::kAckIntrOnExit | exit_ctl::kSavePat | exit_ctl::kLoadPat | exit_ctl::kSaveEfer |
                       exit_ctl::kLoadEfer | exit_ctl::kSavePreemptionTimer};
  const uint32_t entry0 = entry_ctl::kDefault1 & ~entry_ctl::kLoadDebugControls;
  c.entry = {entry0, entry0 | entry_ctl::kLoadDebugControls | entry_ctl::kIa32eModeGuest | entry_ctl::kEntryToSmm |
                         entry_ctl::kDeactivateDualMonitor | entry_ctl::kLoadPerfGlobalCtrl | entry_ctl::kLoadPat |
                         entry_ctl::kLoadEfer};
  // Activity states HLT, shutdown, wait-for-SIPI; 4 CR3 targets; MSR lists of 512 entries.
  c.misc = 5 | (1ull << 5) | (7ull << 6) | (4ull << 16) | (1ull << 29);
  c.cr0_fixed0 = cr0::kPE | cr0::kNE | cr0::kPG;
  c.cr0_fixed1 = 0xffffffff;
  c.cr4_fixed0 = cr4::kVMXE;
  c.cr4_fixed1 = 0x7ff | cr4::kVMXE | cr4::kFSGSBASE | cr4::kPCIDE | cr4::kOSXSAVE | cr4::kSMEP | cr4::kSMAP;
  using namespace ept_vpid_cap;
  c.ept_vpid_cap = kExecuteOnly | kPageWalk4 | kMemTypeUc | kMemTypeWb | kPde2M | kPdpte1G | kInvept | kAccessedDirty;
  return c;
}

inline constexpr uint64_t kValidEptp = 0x50000 | eptp::kMemTypeWb | (3 << eptp::kWalkLengthShift);
inline constexpr uint64_t kCr0 = cr0::kPE | cr0::kET | cr0::kNE | cr0::kPG;
inline constexpr uint64_t kLink = 0x5000;  // a VMCS region in the fake memory

// A VMCS as a map, physical memory as a vector, and the processor facts of VmEntryEnv.
struct FakeVmcs {
  std::map<VmcsField, uint64_t> fields;
  VmxCapabilities caps = test_caps();
  std::vector<uint8_t> mem = std::vector<uint8_t>(1 << 20);
  bool in_ia32e_mode = true;
  bool in_smm = false;
  uint64_t current_vmcs = 0x8000;

  FakeVmcs() { seed_guest64_host64(); }

  uint64_t get(F f) const {
    auto it = fields.find(f);
    return it == fields.end() ? 0 : it->second;
  }
  void set(F f, uint64_t v) { fields[f] = v & vmcs_field_info(f).mask(); }
  void on(F f, uint64_t bits) { set(f, get(f) | bits); }
  void off(F f, uint64_t bits) { set(f, get(f) & ~bits); }
  template <typename T> void poke(uint64_t pa, T v) { std::memcpy(&mem[pa], &v, sizeof v); }

  VmEntryEnv env() const {
    VmEntryEnv e;
    e.read = [this](F f) { return get(f); };
    e.read_phys = [this](uint64_t pa, void* out, size_t len) {
      if (pa + len > mem.size()) return false;
      std::memcpy(out, &mem[pa], len);
      return true;
    };
    e.caps = &caps;
    e.in_ia32e_mode = in_ia32e_mode;
    e.in_smm = in_smm;
    e.current_vmcs = current_vmcs;
    return e;
  }

  void segment(F sel, F base, F limit, F ar, uint16_t s, uint64_t b, uint32_t l, uint32_t a) {
    set(sel, s);
    set(base, b);
    set(limit, l);
    set(ar, a);
  }
  void data_segments(uint16_t s, uint64_t b, uint32_t l, uint32_t a) {
    segment(F::GUEST_SS_SELECTOR, F::GUEST_SS_BASE, F::GUEST_SS_LIMIT, F::GUEST_SS_AR_BYTES, s, b, l, a);
    segment(F::GUEST_DS_SELECTOR, F::GUEST_DS_BASE, F::GUEST_DS_LIMIT, F::GUEST_DS_AR_BYTES, s, b, l, a);
    segment(F::GUEST_ES_SELECTOR, F::GUEST_ES_BASE, F::GUEST_ES_LIMIT, F::GUEST_ES_AR_BYTES, s, b, l, a);
    segment(F::GUEST_FS_SELECTOR, F::GUEST_FS_BASE, F::GUEST_FS_LIMIT, F::GUEST_FS_AR_BYTES, s, b, l, a);
    segment(F::GUEST_GS_SELECTOR, F::GUEST_GS_BASE, F::GUEST_GS_LIMIT, F::GUEST_GS_AR_BYTES, s, b, l, a);
  }
  void cs(uint16_t s, uint64_t b, uint32_t l, uint32_t a) {
    segment(F::GUEST_CS_SELECTOR, F::GUEST_CS_BASE, F::GUEST_CS_LIMIT, F::GUEST_CS_AR_BYTES, s, b, l, a);
  }
  void tr(uint16_t s, uint64_t b, uint32_t l, uint32_t a) {
    segment(F::GUEST_TR_SELECTOR, F::GUEST_TR_BASE, F::GUEST_TR_LIMIT, F::GUEST_TR_AR_BYTES, s, b, l, a);
  }
  void ldtr(uint16_t s, uint64_t b, uint32_t l, uint32_t a) {
    segment(F::GUEST_LDTR_SELECTOR, F::GUEST_LDTR_BASE, F::GUEST_LDTR_LIMIT, F::GUEST_LDTR_AR_BYTES, s, b, l, a);
  }
  // "Activate secondary controls" with these secondary controls.
  void secondary(uint32_t bits) {
    on(F::CPU_BASED_VM_EXEC_CONTROL, proc::kActivateSecondary);
    on(F::SECONDARY_VM_EXEC_CONTROL, bits);
  }
  void ept() {
    secondary(proc2::kEnableEpt);
    set(F::EPT_POINTER, kValidEptp);
  }
  void inject(unsigned type, uint8_t vector, bool error_code = false) {
    set(F::VM_ENTRY_INTR_INFO_FIELD, intr_info::make(vector, type, error_code));
  }

  // A 64-bit guest at CPL 0 with flat segments and a 64-bit host, minimal controls.
  void seed_guest64_host64() {
    set(F::PIN_BASED_VM_EXEC_CONTROL, caps.pin.allowed0);
    set(F::CPU_BASED_VM_EXEC_CONTROL, caps.proc.allowed0);
    set(F::VM_EXIT_CONTROLS, caps.exit.allowed0 | exit_ctl::kHostAddrSpaceSize);
    set(F::VM_ENTRY_CONTROLS, caps.entry.allowed0 | entry_ctl::kIa32eModeGuest);
    set(F::VMCS_LINK_POINTER, ~0ull);
    set(F::GUEST_CR0, kCr0);
    set(F::GUEST_CR3, 0x1000);
    set(F::GUEST_CR4, cr4::kPAE | cr4::kVMXE);
    set(F::GUEST_DR7, 0x400);
    set(F::GUEST_RFLAGS, rflags::kFixed1);
    set(F::GUEST_RIP, 0x100000);
    set(F::GUEST_RSP, 0x8000);
    cs(0x08, 0, 0xffffffff, 0xa09b);  // 64-bit code, DPL 0
    data_segments(0x10, 0, 0xffffffff, 0xc093);
    tr(0x40, 0x3000, 0x67, 0x8b);
    ldtr(0, 0, 0, ar::kUnusable);
    set(F::GUEST_GDTR_BASE, 0x2000);
    set(F::GUEST_GDTR_LIMIT, 0x4f);
    set(F::GUEST_IDTR_BASE, 0x4000);
    set(F::GUEST_IDTR_LIMIT, 0xfff);
    set(F::GUEST_IA32_EFER, efer::kLME | efer::kLMA);
    set(F::GUEST_IA32_PAT, 0x0007040600070406ull);
    set(F::HOST_CR0, kCr0);
    set(F::HOST_CR3, 0x1000);
    set(F::HOST_CR4, cr4::kPAE | cr4::kVMXE);
    set(F::HOST_CS_SELECTOR, 0x08);
    set(F::HOST_SS_SELECTOR, 0x10);
    set(F::HOST_DS_SELECTOR, 0x10);
    set(F::HOST_ES_SELECTOR, 0x10);
    set(F::HOST_TR_SELECTOR, 0x40);
    set(F::HOST_TR_BASE, 0x3000);
    set(F::HOST_GDTR_BASE, 0x2000);
    set(F::HOST_IDTR_BASE, 0x4000);
    set(F::HOST_RIP, 0xffffffff81000000ull);
    set(F::HOST_RSP, 0x7000);
    set(F::HOST_IA32_EFER, efer::kLME | efer::kLMA);
    set(F::HOST_IA32_PAT, 0x0007040600070406ull);
  }
  // A real-mode guest under "unrestricted guest" (with EPT), as after reset.
  void seed_unrestricted_real_mode() {
    ept();
    secondary(proc2::kUnrestrictedGuest);
    off(F::VM_ENTRY_CONTROLS, entry_ctl::kIa32eModeGuest);
    set(F::GUEST_CR0, cr0::kET | cr0::kNE);
    set(F::GUEST_CR3, 0);
    set(F::GUEST_CR4, cr4::kVMXE);
    cs(0xf000, 0xf0000, 0xffff, 0x9b);
    data_segments(0, 0, 0xffff, 0x93);
    tr(0, 0, 0xffff, 0x8b);
    set(F::GUEST_RIP, 0xfff0);
  }
  // A virtual-8086 guest under 32-bit paging.
  void seed_v86() {
    off(F::VM_ENTRY_CONTROLS, entry_ctl::kIa32eModeGuest);
    set(F::GUEST_CR4, cr4::kVMXE);
    set(F::GUEST_RFLAGS, rflags::kFixed1 | rflags::kVM);
    cs(0x1000, 0x10000, 0xffff, 0xf3);
    data_segments(0x2000, 0x20000, 0xffff, 0xf3);
    set(F::GUEST_RIP, 0x100);
  }
  // A 32-bit protected-mode guest with PAE paging; its PDPTEs come from the VMCS with EPT, else
  // from the (zeroed, not present) table at CR3.
  void seed_pae32(bool with_ept) {
    off(F::VM_ENTRY_CONTROLS, entry_ctl::kIa32eModeGuest);
    set(F::GUEST_CR3, 0x9000);
    cs(0x18, 0, 0xffffffff, 0xc09b);
    if (with_ept) ept();
  }
};

// One violation, and what it must produce.
struct Violation {
  std::string name;
  std::function<void(FakeVmcs&)> mutate;
  VmEntryCheck::Kind kind;
  uint32_t error_or_reason;  // VM-instruction error (kFailValid) or exit reason (kEntryFailure)
  uint64_t qualification;
  std::string rule;
};
inline Violation control(std::string name, std::function<void(FakeVmcs&)> m, std::string rule) {
  return {std::move(name), std::move(m), VmEntryCheck::Kind::kFailValid, 7, 0, std::move(rule)};
}
inline Violation host(std::string name, std::function<void(FakeVmcs&)> m, std::string rule) {
  return {std::move(name), std::move(m), VmEntryCheck::Kind::kFailValid, 8, 0, std::move(rule)};
}
inline Violation guest(std::string name, std::function<void(FakeVmcs&)> m, std::string rule, uint64_t qual = 0) {
  return {std::move(name), std::move(m), VmEntryCheck::Kind::kEntryFailure, 33u | kExitReasonFailedEntry, qual,
          std::move(rule)};
}

inline void PrintTo(const Violation& v, std::ostream* os) { *os << v.name; }
// TEST_P in vmentry_checks_test.cpp; each family's file instantiates it with its violations.
class VmEntryChecksViolation : public ::testing::TestWithParam<Violation> {};

// Names parameterized cases after their `name`.
inline constexpr auto kCaseName = [](const auto& info) { return info.param.name; };

}  // namespace nestvm::arch::vmentry_test
