// vmcs02, the VMCS the silicon runs L2 on (KVM's prepare_vmcs02, sync_vmcs02_to_vmcs12 and
// load_vmcs12_host_state): L2's state and L1's controls from vmcs12, merged with what L0 needs
// from vmcs01 (its exits for external interrupts, NMIs and I/O, its MSR intercepts, EPT, its
// host state). One vmcs02 per vCPU, reused: guest-state fields are copied only when vmcs12 says
// they are dirty (written by L1 since vmcs02 last held them), controls are merged on every
// entry (a few dozen fields, some depending on L0's state).
#include <algorithm>

#include "arch/cr.h"
#include "arch/msr_index.h"
#include "arch/segment.h"
#include "arch/vmentry_checks.h"
#include "cpu/msr_file.h"
#include "hv/nested/nested_vmx.h"
#include "hv/vcpu.h"
#include "hv/vm.h"

namespace nestvm::hv::nested {

using namespace arch;
using F = VmcsField;

namespace {

// Guest-state fields vmcs02 does not take from vmcs12 as they are: computed from both levels
// (CRs, EFER, PAT, debug controls), owned by L0 (the link pointer, the preemption timer).
bool computed_guest_field(VmcsField f) {
  switch (f) {
    case F::GUEST_CR0: case F::GUEST_CR4: case F::GUEST_IA32_EFER: case F::GUEST_IA32_PAT:
    case F::GUEST_DR7: case F::GUEST_IA32_DEBUGCTL: case F::VMCS_LINK_POINTER:
    case F::VMX_PREEMPTION_TIMER_VALUE: case F::GUEST_PDPTR0: case F::GUEST_PDPTR1:
    case F::GUEST_PDPTR2: case F::GUEST_PDPTR3:
      return true;
    default: return false;
  }
}

// The fields that a reflected exit writes back: everything in the guest-state area.
bool guest_field(const VmcsFieldInfo& i) { return i.type() == VmcsType::kGuest; }

}  // namespace

// L1's current value of an MSR VM entry may load for L2 when vmcs12 does not ask to: what vmcs01
// runs L1 with.
static cpu::VmcsRegion vmcs01_of(Vcpu& v) { return cpu::VmcsRegion(v.vm().host().frame(v.vmcs01_hpa())); }

void NestedVmx::prepare_vmcs02_controls() {
  Vcpu& v = vcpu_;
  const Vmcs12& c12 = cached_vmcs12;
  cpu::VmcsRegion v01 = vmcs01_of(v);
  // Pin-based: L1's, plus L0's exits for its own interrupts and NMIs; the preemption timer is
  // armed later for both levels (finish_l2_entry).
  const uint32_t pin01 = uint32_t(v01.read(F::PIN_BASED_VM_EXEC_CONTROL)) & ~pin::kPreemptionTimer;
  const uint32_t pin12 = uint32_t(c12.read(F::PIN_BASED_VM_EXEC_CONTROL)) & ~(pin::kPreemptionTimer | pin::kPostedInterrupts);
  v.vmwrite(F::PIN_BASED_VM_EXEC_CONTROL, pin01 | pin12);
  // Processor-based: L1's, plus L0's HLT, CR8-load and I/O exits and its MSR bitmap. Every port
  // belongs to L0's devices, so I/O exits unconditionally and L1's I/O bitmaps are consulted
  // when routing (nested_exit.cpp); the interrupt and NMI windows are L0's until
  // finish_l2_entry adds L1's.
  const uint32_t proc12 = uint32_t(c12.read(F::CPU_BASED_VM_EXEC_CONTROL));
  uint32_t proc01 = uint32_t(v01.read(F::CPU_BASED_VM_EXEC_CONTROL)) & ~(proc::kIntrWindowExiting | proc::kNmiWindowExiting);
  // With L1's TPR shadow, L2's CR8 accesses go to the virtual-APIC page, not to L1's TPR.
  if (proc12 & proc::kUseTprShadow) proc01 &= ~(proc::kCr8LoadExiting | proc::kCr8StoreExiting);
  uint32_t proc02 = (proc12 | proc01 | proc::kUncondIoExiting | proc::kUseMsrBitmaps | proc::kActivateSecondary) &
                    ~(proc::kUseIoBitmaps | proc::kIntrWindowExiting | proc::kNmiWindowExiting);
  v.vmwrite(F::CPU_BASED_VM_EXEC_CONTROL, proc02);
  // Secondary: L1's (already checked against what L1 was offered), with EPT (EPT02, or EPT01
  // when L1 does not use EPT: L2-physical is then L1-physical) and L2's own VPID; VMCS
  // shadowing and VM functions are L0's business, not L2's.
  const uint32_t proc2_12 = (proc12 & proc::kActivateSecondary) ? uint32_t(c12.read(F::SECONDARY_VM_EXEC_CONTROL)) : 0;
  uint32_t proc2 = (proc2_12 & ~(proc2::kVmcsShadowing | proc2::kEnableVmfunc | proc2::kEnablePml)) |
                   proc2::kEnableEpt | proc2::kEnableVpid;
  v.vmwrite(F::SECONDARY_VM_EXEC_CONTROL, proc2);
  const bool ept12 = proc2_12 & proc2::kEnableEpt;
  uint64_t eptp02 = v01.read(F::EPT_POINTER);
  if (ept12) {
    eptp02 = ept02->eptp02(c12.read(F::EPT_POINTER));
  }
  v.vmwrite(F::EPT_POINTER, eptp02);
  v.vmwrite(F::VIRTUAL_PROCESSOR_ID, vpid02);
  // Addresses L1 gives in L1-physical memory become host-physical for the silicon.
  GuestMemory& mem = v.vm().mem();
  if (proc12 & proc::kUseTprShadow) {
    v.vmwrite(F::VIRTUAL_APIC_PAGE_ADDR, mem.backing(c12.read(F::VIRTUAL_APIC_PAGE_ADDR)));
    v.vmwrite(F::TPR_THRESHOLD, c12.read(F::TPR_THRESHOLD));
  }
  if (proc2_12 & proc2::kVirtualizeApicAccesses)
    v.vmwrite(F::APIC_ACCESS_ADDR, mem.backing(c12.read(F::APIC_ACCESS_ADDR)));
  v.vmwrite(F::EXCEPTION_BITMAP, c12.read(F::EXCEPTION_BITMAP) | v01.read(F::EXCEPTION_BITMAP));
  v.vmwrite(F::PAGE_FAULT_ERROR_CODE_MASK, c12.read(F::PAGE_FAULT_ERROR_CODE_MASK));
  v.vmwrite(F::PAGE_FAULT_ERROR_CODE_MATCH, c12.read(F::PAGE_FAULT_ERROR_CODE_MATCH));
  // CR0/CR4: a bit either level owns exits; L2 reads, for a bit L1 owns, L1's read shadow, and
  // for one only L0 owns, its own value (KVM's nested_read_cr0/cr4).
  for (auto [mask, shadow, guest, l0] :
       {std::tuple{F::CR0_GUEST_HOST_MASK, F::CR0_READ_SHADOW, F::GUEST_CR0, kL0OwnedCr0},
        std::tuple{F::CR4_GUEST_HOST_MASK, F::CR4_READ_SHADOW, F::GUEST_CR4, kL0OwnedCr4}}) {
    const uint64_t m12 = c12.read(mask);
    v.vmwrite(mask, m12 | l0);
    v.vmwrite(shadow, (c12.read(guest) & ~m12) | (c12.read(shadow) & m12));
  }
  v.vmwrite(F::CR3_TARGET_COUNT, c12.read(F::CR3_TARGET_COUNT));
  for (F t : {F::CR3_TARGET_VALUE0, F::CR3_TARGET_VALUE1, F::CR3_TARGET_VALUE2, F::CR3_TARGET_VALUE3})
    v.vmwrite(t, c12.read(t));
  v.vmwrite(F::TSC_OFFSET, (proc12 & proc::kUseTscOffsetting) ? c12.read(F::TSC_OFFSET) : 0);
  v.vmwrite(F::PLE_GAP, c12.read(F::PLE_GAP));
  v.vmwrite(F::PLE_WINDOW, c12.read(F::PLE_WINDOW));
  v.vmwrite(F::XSS_EXIT_BITMAP, c12.read(F::XSS_EXIT_BITMAP));
  v.vmwrite(F::MSR_BITMAP, msr_bitmap02_hpa);
  // Exit and entry controls: L0's (EFER, PAT and debug controls always saved and loaded, so
  // that vmcs02 holds L2's values whatever L1 asked), with L2's IA-32e mode. L1's MSR lists
  // are processed by L0 (nested_entry.cpp, nested_exit.cpp), none by the silicon.
  v.vmwrite(F::VM_EXIT_CONTROLS, v01.read(F::VM_EXIT_CONTROLS) | exit_ctl::kSaveDebugControls);
  const uint64_t entry01 = v01.read(F::VM_ENTRY_CONTROLS) & ~uint64_t(entry_ctl::kIa32eModeGuest);
  v.vmwrite(F::VM_ENTRY_CONTROLS, entry01 | entry_ctl::kLoadDebugControls |
                                      (c12.read(F::VM_ENTRY_CONTROLS) & entry_ctl::kIa32eModeGuest));
  v.vmwrite(F::VM_EXIT_MSR_STORE_COUNT, 0);
  v.vmwrite(F::VM_EXIT_MSR_LOAD_COUNT, 0);
  v.vmwrite(F::VM_ENTRY_MSR_LOAD_COUNT, 0);
  // The event L1 injects into L2 (SDM §27.6).
  v.vmwrite(F::VM_ENTRY_INTR_INFO_FIELD, c12.read(F::VM_ENTRY_INTR_INFO_FIELD));
  v.vmwrite(F::VM_ENTRY_EXCEPTION_ERROR_CODE, c12.read(F::VM_ENTRY_EXCEPTION_ERROR_CODE));
  v.vmwrite(F::VM_ENTRY_INSTRUCTION_LEN, c12.read(F::VM_ENTRY_INSTRUCTION_LEN));
}

// L0's and L1's MSR bitmaps merged (SDM §25.6.9): an MSR exits if either level intercepts it,
// so that an access L1 lets through costs no exit to L1, and one only L0 watches stays in L0.
// Re-merged at every entry: L1 may change its bitmap in memory between entries.
void NestedVmx::merge_msr_bitmaps() {
  HostMemory& host = vcpu_.vm().host();
  auto* dst = reinterpret_cast<uint64_t*>(host.frame(msr_bitmap02_hpa));
  const auto* l0 = reinterpret_cast<const uint64_t*>(host.frame(vcpu_.msr_bitmap01_hpa()));
  const uint32_t proc12 = uint32_t(cached_vmcs12.read(F::CPU_BASED_VM_EXEC_CONTROL));
  uint64_t l1[512];
  // Without L1's MSR bitmaps every MSR access exits to L1 (SDM §26.1.3); an L1 bitmap outside
  // RAM reads as all ones.
  if (!(proc12 & proc::kUseMsrBitmaps) || !vcpu_.vm().mem().read(cached_vmcs12.read(F::MSR_BITMAP), l1, sizeof l1))
    std::fill(std::begin(l1), std::end(l1), ~0ull);
  for (unsigned i = 0; i < 512; ++i) dst[i] = l0[i] | l1[i];
}

void NestedVmx::prepare_vmcs02() {
  Vcpu& v = vcpu_;
  Vmcs12& c12 = cached_vmcs12;
  cpu::VmcsRegion v01 = vmcs01_of(v);
  if (vmcs02_vmptr != current_vmptr) {
    c12.mark_all_dirty();
    vmcs02_vmptr = current_vmptr;
  }
  // Guest state: the fields L1 wrote since vmcs02 last held them.
  if (c12.any_dirty()) {
    for (const VmcsFieldInfo& i : vmcs_fields()) {
      if (!guest_field(i) || computed_guest_field(i.field) || !c12.dirty(i.field)) continue;
      v.vmwrite(i.field, c12.read(i.field));
    }
  }
  const uint32_t entry12 = uint32_t(c12.read(F::VM_ENTRY_CONTROLS));
  // CR0.NE and CR4.VMXE stay set under L0 (VMX operation); vmcs12's values already have them
  // (its CR0/CR4 fixed bits), so L2 reads what L1 gave it.
  v.vmwrite(F::GUEST_CR0, c12.read(F::GUEST_CR0) | kL0OwnedCr0);
  v.vmwrite(F::GUEST_CR4, c12.read(F::GUEST_CR4) | kL0OwnedCr4);
  // EFER, PAT and the debug controls: vmcs12's if L1 loads them, else L1's, with EFER.LMA/LME
  // following "IA-32e mode guest" (SDM §27.3.2.1).
  uint64_t efer = (entry12 & entry_ctl::kLoadEfer) ? c12.read(F::GUEST_IA32_EFER) : v.guest_efer();
  const uint64_t lm = efer::kLMA | efer::kLME;
  if (!(entry12 & entry_ctl::kLoadEfer))
    efer = (efer & ~lm) | ((entry12 & entry_ctl::kIa32eModeGuest) ? lm : 0);
  v.vmwrite(F::GUEST_IA32_EFER, efer);
  v.vmwrite(F::GUEST_IA32_PAT, (entry12 & entry_ctl::kLoadPat) ? c12.read(F::GUEST_IA32_PAT) : v01.read(F::GUEST_IA32_PAT));
  const bool dbg = entry12 & entry_ctl::kLoadDebugControls;
  v.vmwrite(F::GUEST_DR7, dbg ? c12.read(F::GUEST_DR7) : v01.read(F::GUEST_DR7));
  v.vmwrite(F::GUEST_IA32_DEBUGCTL, dbg ? c12.read(F::GUEST_IA32_DEBUGCTL) : v01.read(F::GUEST_IA32_DEBUGCTL));
  v.vmwrite(F::VMCS_LINK_POINTER, ~0ull);
  // PAE paging: with EPT12 the PDPTEs are vmcs12's (SDM §27.3.2.4); without, hardware would load
  // them from L2's CR3 in L1-physical memory, which is what vmcs02 (on EPT01) must hold.
  const uint32_t proc12 = uint32_t(c12.read(F::CPU_BASED_VM_EXEC_CONTROL));
  const bool ept12 = (proc12 & proc::kActivateSecondary) &&
                     (c12.read(F::SECONDARY_VM_EXEC_CONTROL) & proc2::kEnableEpt);
  const F pdptr[4] = {F::GUEST_PDPTR0, F::GUEST_PDPTR1, F::GUEST_PDPTR2, F::GUEST_PDPTR3};
  const uint64_t cr0 = c12.read(F::GUEST_CR0), cr4 = c12.read(F::GUEST_CR4);
  const bool pae = (cr0 & cr0::kPG) && (cr4 & cr4::kPAE) && !(entry12 & entry_ctl::kIa32eModeGuest);
  uint64_t pdptes[4] = {};
  if (pae && !ept12) (void)v.vm().mem().read(c12.read(F::GUEST_CR3) & ~0x1full, pdptes, sizeof pdptes);
  for (int k = 0; k < 4; ++k) v.vmwrite(pdptr[k], ept12 ? c12.read(pdptr[k]) : pdptes[k]);
  prepare_vmcs02_controls();
  merge_msr_bitmaps();
  c12.clear_dirty();
}

// Exit information and L2's state into vmcs12 (SDM §28.2, §28.3; KVM's sync_vmcs02_to_vmcs12
// and prepare_vmcs12). vmcs02 keeps them: nothing becomes dirty for the next entry.
void NestedVmx::sync_vmcs02_to_vmcs12(uint32_t reason, uint64_t qualification) {
  Vcpu& v = vcpu_;
  Vmcs12& c12 = cached_vmcs12;
  const uint32_t exit12 = uint32_t(c12.read(F::VM_EXIT_CONTROLS));
  for (const VmcsFieldInfo& i : vmcs_fields()) {
    if (!guest_field(i) || computed_guest_field(i.field)) continue;
    c12.write(i.field, v.vmread(i.field));
  }
  // CR0/CR4: the bits L1 owns L2 cannot have changed (their writes exit to L1).
  for (auto [mask, guest] : {std::pair{F::CR0_GUEST_HOST_MASK, F::GUEST_CR0}, std::pair{F::CR4_GUEST_HOST_MASK, F::GUEST_CR4}}) {
    const uint64_t m12 = c12.read(mask);
    c12.write(guest, (v.vmread(guest) & ~m12) | (c12.read(guest) & m12));
  }
  for (F p : {F::GUEST_PDPTR0, F::GUEST_PDPTR1, F::GUEST_PDPTR2, F::GUEST_PDPTR3}) c12.write(p, v.vmread(p));
  // §28.3.1 (as the silicon does for vmcs02): "IA-32e mode guest" takes L2's EFER.LMA, which
  // L2 may have changed by enabling or disabling paging.
  const uint64_t ia32e = v.vmread(F::VM_ENTRY_CONTROLS) & entry_ctl::kIa32eModeGuest;
  c12.write(F::VM_ENTRY_CONTROLS, (c12.read(F::VM_ENTRY_CONTROLS) & ~uint64_t(entry_ctl::kIa32eModeGuest)) | ia32e);
  if (exit12 & exit_ctl::kSaveEfer) c12.write(F::GUEST_IA32_EFER, v.vmread(F::GUEST_IA32_EFER));
  if (exit12 & exit_ctl::kSavePat) c12.write(F::GUEST_IA32_PAT, v.vmread(F::GUEST_IA32_PAT));
  if (exit12 & exit_ctl::kSaveDebugControls) {
    c12.write(F::GUEST_DR7, v.vmread(F::GUEST_DR7));
    c12.write(F::GUEST_IA32_DEBUGCTL, v.vmread(F::GUEST_IA32_DEBUGCTL));
  }
  if (exit12 & exit_ctl::kSavePreemptionTimer) c12.write(F::VMX_PREEMPTION_TIMER_VALUE, l1_timer_remaining());
  // §28.2: exit information.
  c12.write(F::VM_EXIT_REASON, reason);
  c12.write(F::EXIT_QUALIFICATION, qualification);
  for (F f : {F::GUEST_LINEAR_ADDRESS, F::GUEST_PHYSICAL_ADDRESS, F::VM_EXIT_INSTRUCTION_LEN, F::VMX_INSTRUCTION_INFO,
              F::VM_EXIT_INTR_INFO, F::VM_EXIT_INTR_ERROR_CODE, F::IDT_VECTORING_INFO_FIELD,
              F::IDT_VECTORING_ERROR_CODE, F::IO_RCX, F::IO_RSI, F::IO_RDI, F::IO_RIP})
    c12.write(f, v.vmread(f));
  // §28.2.4: every VM exit clears the valid bit of the VM-entry interruption information.
  c12.write(F::VM_ENTRY_INTR_INFO_FIELD, c12.read(F::VM_ENTRY_INTR_INFO_FIELD) & ~uint64_t(intr_info::kValid));
  c12.clear_dirty();
}

// L1's state after a VM exit from L2, from vmcs12's host-state area into vmcs01 (SDM §28.5;
// KVM's load_vmcs12_host_state). vmcs01 must be current. GPRs other than RSP are the silicon's
// and stay as L2 left them, as on hardware.
void NestedVmx::load_vmcs12_host_state() {
  Vcpu& v = vcpu_;
  const Vmcs12& c12 = cached_vmcs12;
  const uint32_t exit12 = uint32_t(c12.read(F::VM_EXIT_CONTROLS));
  const bool host64 = exit12 & exit_ctl::kHostAddrSpaceSize;
  Vcpu::ControlRegs c;
  // §28.5.1: CR0.ET, CD and NW keep their values; CR4.VMXE stays set (L1 is in VMX operation).
  const uint64_t old_cr0 = v.guest_cr0();
  const uint64_t keep0 = cr0::kCD | cr0::kNW | cr0::kET;
  c.cr0 = (c12.read(F::HOST_CR0) & ~keep0) | (old_cr0 & keep0);
  c.cr3 = c12.read(F::HOST_CR3);
  c.cr4 = c12.read(F::HOST_CR4) | cr4::kVMXE;
  uint64_t efer = (exit12 & exit_ctl::kLoadEfer) ? c12.read(F::HOST_IA32_EFER) : v.guest_efer();
  const uint64_t lm = efer::kLMA | efer::kLME;
  c.efer = (efer & ~lm) | (host64 ? lm : 0);
  if ((c.cr0 & cr0::kPG) && (c.cr4 & cr4::kPAE) && !host64) {
    uint64_t p[4] = {};
    (void)v.vm().mem().read(c.cr3 & ~0x1full, p, sizeof p);
    c.pdptes = {p[0], p[1], p[2], p[3]};
  }
  v.set_control_regs(c);
  v.vmwrite(F::GUEST_DR7, 0x400);
  v.vmwrite(F::GUEST_IA32_DEBUGCTL, 0);
  v.vmwrite(F::GUEST_SYSENTER_CS, c12.read(F::HOST_IA32_SYSENTER_CS));
  v.vmwrite(F::GUEST_SYSENTER_ESP, c12.read(F::HOST_IA32_SYSENTER_ESP));
  v.vmwrite(F::GUEST_SYSENTER_EIP, c12.read(F::HOST_IA32_SYSENTER_EIP));
  if (exit12 & exit_ctl::kLoadPat) v.vmwrite(F::GUEST_IA32_PAT, c12.read(F::HOST_IA32_PAT));
  if (exit12 & exit_ctl::kLoadPerfGlobalCtrl) v.vmwrite(F::GUEST_IA32_PERF_GLOBAL_CTRL, c12.read(F::HOST_IA32_PERF_GLOBAL_CTRL));
  // §28.5.2: segments flat and present; CS 64-bit when the host is; a null data selector makes
  // its segment unusable (SS excepted); LDTR unusable; TR busy 32-bit TSS; GDTR/IDTR limit FFFF.
  const uint32_t cs_ar = ar::kAccessed | ar::kReadable | ar::kCode | ar::kS | ar::kP | ar::kG | (host64 ? ar::kL : ar::kDB);
  const F host_sel[6] = {F::HOST_ES_SELECTOR, F::HOST_CS_SELECTOR, F::HOST_SS_SELECTOR,
                         F::HOST_DS_SELECTOR, F::HOST_FS_SELECTOR, F::HOST_GS_SELECTOR};
  for (unsigned r = 0; r < 6; ++r) {
    const VmcsSegmentFields& g = kGuestSegmentFields[r];
    const uint16_t sel = uint16_t(c12.read(host_sel[r]));
    uint32_t a = ar::kAccessed | ar::kWritable | ar::kS | ar::kP | ar::kDB | ar::kG;
    if (r == unsigned(SegReg::kCS)) a = cs_ar;
    else if ((sel & ~3u) == 0 && r != unsigned(SegReg::kSS)) a |= ar::kUnusable;
    v.vmwrite(g.selector, sel);
    v.vmwrite(g.base, 0);
    v.vmwrite(g.limit, 0xffffffff);
    v.vmwrite(g.ar, a);
  }
  v.vmwrite(F::GUEST_FS_BASE, c12.read(F::HOST_FS_BASE));
  v.vmwrite(F::GUEST_GS_BASE, c12.read(F::HOST_GS_BASE));
  v.vmwrite(F::GUEST_TR_SELECTOR, c12.read(F::HOST_TR_SELECTOR));
  v.vmwrite(F::GUEST_TR_BASE, c12.read(F::HOST_TR_BASE));
  v.vmwrite(F::GUEST_TR_LIMIT, 0x67);
  v.vmwrite(F::GUEST_TR_AR_BYTES, ar::kP | sys_type::kTss32Busy);
  v.vmwrite(F::GUEST_LDTR_SELECTOR, 0);
  v.vmwrite(F::GUEST_LDTR_BASE, 0);
  v.vmwrite(F::GUEST_LDTR_LIMIT, 0);
  v.vmwrite(F::GUEST_LDTR_AR_BYTES, ar::kUnusable);
  v.vmwrite(F::GUEST_GDTR_BASE, c12.read(F::HOST_GDTR_BASE));
  v.vmwrite(F::GUEST_GDTR_LIMIT, 0xffff);
  v.vmwrite(F::GUEST_IDTR_BASE, c12.read(F::HOST_IDTR_BASE));
  v.vmwrite(F::GUEST_IDTR_LIMIT, 0xffff);
  v.vmwrite(F::GUEST_RIP, c12.read(F::HOST_RIP));
  v.vmwrite(F::GUEST_RSP, c12.read(F::HOST_RSP));
  v.vmwrite(F::GUEST_RFLAGS, rflags::kFixed1);
  v.vmwrite(F::GUEST_INTERRUPTIBILITY_INFO, 0);
  v.vmwrite(F::GUEST_ACTIVITY_STATE, 0);
  v.vmwrite(F::GUEST_PENDING_DBG_EXCEPTIONS, 0);
  v.vmwrite(F::VM_ENTRY_INTR_INFO_FIELD, 0);
}

}  // namespace nestvm::hv::nested
