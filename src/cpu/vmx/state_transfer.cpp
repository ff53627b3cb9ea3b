// Moving processor state between the VMCS and the processor: loading guest state at VM entry
// (SDM Vol. 3 §27.3.2), saving it at VM exit (§28.3) and loading host state (§28.5).
#include "arch/cr.h"
#include "arch/vmcs.h"
#include "cpu/cpu.h"

namespace nestvm::cpu {

using namespace arch;

namespace {

constexpr VmcsField kGuestPdptes[4] = {VmcsField::GUEST_PDPTR0, VmcsField::GUEST_PDPTR1, VmcsField::GUEST_PDPTR2,
                                       VmcsField::GUEST_PDPTR3};

Segment& segment_slot(CpuState& s, unsigned i) { return i < 6 ? s.seg[i] : (i == 6 ? s.ldtr : s.tr); }

}  // namespace

void Cpu::vmx_load_guest_state(VmcsRegion& v) {
  CpuState& s = state;
  const uint32_t entry = uint32_t(v.read(VmcsField::VM_ENTRY_CONTROLS));
  s.cr0 = v.read(VmcsField::GUEST_CR0) | cr0::kET;
  s.cr3 = v.read(VmcsField::GUEST_CR3);
  s.cr4 = v.read(VmcsField::GUEST_CR4);
  if (entry & entry_ctl::kLoadDebugControls) {
    s.dr7 = v.read(VmcsField::GUEST_DR7);
    s.msr.debugctl = v.read(VmcsField::GUEST_IA32_DEBUGCTL);
  }
  s.msr.sysenter_cs = v.read(VmcsField::GUEST_SYSENTER_CS);
  s.msr.sysenter_esp = v.read(VmcsField::GUEST_SYSENTER_ESP);
  s.msr.sysenter_eip = v.read(VmcsField::GUEST_SYSENTER_EIP);
  if (entry & entry_ctl::kLoadPerfGlobalCtrl) s.msr.perf_global_ctrl = v.read(VmcsField::GUEST_IA32_PERF_GLOBAL_CTRL);
  if (entry & entry_ctl::kLoadPat) s.msr.pat = v.read(VmcsField::GUEST_IA32_PAT);
  if (entry & entry_ctl::kLoadEfer) {
    s.msr.efer = v.read(VmcsField::GUEST_IA32_EFER);
  } else {
    // Without "load IA32_EFER", LMA and LME follow "IA-32e mode guest" (SDM §27.3.2.1).
    const uint64_t lm = efer::kLMA | efer::kLME;
    s.msr.efer = (s.msr.efer & ~lm) | ((entry & entry_ctl::kIa32eModeGuest) ? lm : 0);
  }
  for (unsigned i = 0; i < 8; ++i) {
    Segment& seg = segment_slot(s, i);
    seg.selector = uint16_t(v.read(kGuestSegmentFields[i].selector));
    seg.base = v.read(kGuestSegmentFields[i].base);
    seg.limit = uint32_t(v.read(kGuestSegmentFields[i].limit));
    seg.ar = uint32_t(v.read(kGuestSegmentFields[i].ar)) & 0x1f0ff;
  }
  s.gdtr = {v.read(VmcsField::GUEST_GDTR_BASE), uint16_t(v.read(VmcsField::GUEST_GDTR_LIMIT))};
  s.idtr = {v.read(VmcsField::GUEST_IDTR_BASE), uint16_t(v.read(VmcsField::GUEST_IDTR_LIMIT))};
  s.rip = v.read(VmcsField::GUEST_RIP);
  s.gpr[kRsp] = v.read(VmcsField::GUEST_RSP);
  set_rflags(v.read(VmcsField::GUEST_RFLAGS));
  const uint32_t intr = uint32_t(v.read(VmcsField::GUEST_INTERRUPTIBILITY_INFO));
  s.sti_blocking = intr & interruptibility::kBlockingBySti;
  s.movss_blocking = intr & interruptibility::kBlockingByMovSs;
  s.nmi_blocking = intr & interruptibility::kBlockingByNmi;
  s.activity = Activity(v.read(VmcsField::GUEST_ACTIVITY_STATE) & 3);
  // PDPTEs: from the VMCS with EPT, else from guest memory at CR3 (SDM §27.3.2.4).
  const bool pae = (s.cr0 & cr0::kPG) && (s.cr4 & cr4::kPAE) && !(s.msr.efer & efer::kLMA);
  if (pae) {
    const bool ept = (uint32_t(v.read(VmcsField::CPU_BASED_VM_EXEC_CONTROL)) & proc::kActivateSecondary) &&
                     (uint32_t(v.read(VmcsField::SECONDARY_VM_EXEC_CONTROL)) & proc2::kEnableEpt);
    if (ept) for (unsigned k = 0; k < 4; ++k) s.pdpte[k] = v.read(kGuestPdptes[k]);
    else load_pdptes(s.cr3);
  }
  lf.op = FlagOp::kMaterialized;
  refresh_mode();
}

void Cpu::vmx_save_guest_state(VmcsRegion& v) {
  const CpuState& s = state;
  const uint32_t exit = uint32_t(v.read(VmcsField::VM_EXIT_CONTROLS));
  v.write(VmcsField::GUEST_CR0, s.cr0);
  v.write(VmcsField::GUEST_CR3, s.cr3);
  v.write(VmcsField::GUEST_CR4, s.cr4);
  if (exit & exit_ctl::kSaveDebugControls) {
    v.write(VmcsField::GUEST_DR7, s.dr7);
    v.write(VmcsField::GUEST_IA32_DEBUGCTL, s.msr.debugctl);
  }
  v.write(VmcsField::GUEST_SYSENTER_CS, s.msr.sysenter_cs);
  v.write(VmcsField::GUEST_SYSENTER_ESP, s.msr.sysenter_esp);
  v.write(VmcsField::GUEST_SYSENTER_EIP, s.msr.sysenter_eip);
  if (exit & exit_ctl::kSavePat) v.write(VmcsField::GUEST_IA32_PAT, s.msr.pat);
  if (exit & exit_ctl::kSaveEfer) v.write(VmcsField::GUEST_IA32_EFER, s.msr.efer);
  for (unsigned i = 0; i < 8; ++i) {
    const Segment& seg = i < 6 ? s.seg[i] : (i == 6 ? s.ldtr : s.tr);
    v.write(kGuestSegmentFields[i].selector, seg.selector);
    v.write(kGuestSegmentFields[i].base, seg.base);
    v.write(kGuestSegmentFields[i].limit, seg.limit);
    v.write(kGuestSegmentFields[i].ar, seg.ar);
  }
  v.write(VmcsField::GUEST_GDTR_BASE, s.gdtr.base);
  v.write(VmcsField::GUEST_GDTR_LIMIT, s.gdtr.limit);
  v.write(VmcsField::GUEST_IDTR_BASE, s.idtr.base);
  v.write(VmcsField::GUEST_IDTR_LIMIT, s.idtr.limit);
  v.write(VmcsField::GUEST_RIP, s.rip);
  v.write(VmcsField::GUEST_RSP, s.gpr[kRsp]);
  v.write(VmcsField::GUEST_RFLAGS, rflags());
  v.write(VmcsField::GUEST_INTERRUPTIBILITY_INFO,
          (s.sti_blocking ? interruptibility::kBlockingBySti : 0) |
              (s.movss_blocking ? interruptibility::kBlockingByMovSs : 0) |
              (s.nmi_blocking ? interruptibility::kBlockingByNmi : 0));
  v.write(VmcsField::GUEST_ACTIVITY_STATE, uint32_t(s.activity));
  // "IA-32e mode guest" records EFER.LMA at every exit (SDM §28.2, IA32_VMX_MISC[5]).
  uint32_t entry = uint32_t(v.read(VmcsField::VM_ENTRY_CONTROLS));
  entry = (s.msr.efer & efer::kLMA) ? (entry | entry_ctl::kIa32eModeGuest) : (entry & ~entry_ctl::kIa32eModeGuest);
  v.write(VmcsField::VM_ENTRY_CONTROLS, entry);
  const bool pae = (s.cr0 & cr0::kPG) && (s.cr4 & cr4::kPAE) && !(s.msr.efer & efer::kLMA);
  if (pae && vmx_.ctl.has2(proc2::kEnableEpt))
    for (unsigned k = 0; k < 4; ++k) v.write(kGuestPdptes[k], s.pdpte[k]);
}

void Cpu::vmx_load_host_state(VmcsRegion& v) {
  CpuState& s = state;
  const uint32_t exit = uint32_t(v.read(VmcsField::VM_EXIT_CONTROLS));
  const bool host64 = exit & exit_ctl::kHostAddrSpaceSize;
  // CR0.ET, CD and NW keep their values; CR4.VMXE stays set (SDM §28.5.1).
  const uint64_t keep0 = cr0::kCD | cr0::kNW;
  s.cr0 = (v.read(VmcsField::HOST_CR0) & ~keep0 & ~cr0::kET) | (s.cr0 & keep0) | cr0::kET;
  s.cr3 = v.read(VmcsField::HOST_CR3);
  s.cr4 = v.read(VmcsField::HOST_CR4) | cr4::kVMXE;
  s.dr7 = 0x400;
  s.msr.debugctl = 0;
  s.msr.sysenter_cs = v.read(VmcsField::HOST_IA32_SYSENTER_CS);
  s.msr.sysenter_esp = v.read(VmcsField::HOST_IA32_SYSENTER_ESP);
  s.msr.sysenter_eip = v.read(VmcsField::HOST_IA32_SYSENTER_EIP);
  if (exit & exit_ctl::kLoadPerfGlobalCtrl) s.msr.perf_global_ctrl = v.read(VmcsField::HOST_IA32_PERF_GLOBAL_CTRL);
  if (exit & exit_ctl::kLoadPat) s.msr.pat = v.read(VmcsField::HOST_IA32_PAT);
  if (exit & exit_ctl::kLoadEfer) s.msr.efer = v.read(VmcsField::HOST_IA32_EFER);
  const uint64_t lm = efer::kLMA | efer::kLME;
  s.msr.efer = (s.msr.efer & ~lm) | (host64 ? lm : 0);
  // Segments (SDM §28.5.2): flat, present, accessed; CS 64-bit when the host is.
  Segment& cs = s.seg[unsigned(SegReg::kCS)];
  cs = {uint16_t(v.read(VmcsField::HOST_CS_SELECTOR)), 0, 0xffffffff,
        ar::kAccessed | ar::kReadable | ar::kCode | ar::kS | ar::kP | ar::kG | (host64 ? ar::kL : ar::kDB)};
  const VmcsField data_sel[] = {VmcsField::HOST_ES_SELECTOR, VmcsField::HOST_CS_SELECTOR, VmcsField::HOST_SS_SELECTOR,
                                VmcsField::HOST_DS_SELECTOR, VmcsField::HOST_FS_SELECTOR, VmcsField::HOST_GS_SELECTOR};
  for (SegReg r : {SegReg::kES, SegReg::kSS, SegReg::kDS, SegReg::kFS, SegReg::kGS}) {
    Segment& seg = s.seg[unsigned(r)];
    seg.selector = uint16_t(v.read(data_sel[unsigned(r)]));
    seg.base = 0;
    seg.limit = 0xffffffff;
    seg.ar = ar::kAccessed | ar::kWritable | ar::kS | ar::kP | ar::kDB | ar::kG;
    if (selector_is_null(seg.selector) && r != SegReg::kSS) seg.ar |= ar::kUnusable;
  }
  s.seg[unsigned(SegReg::kFS)].base = v.read(VmcsField::HOST_FS_BASE);
  s.seg[unsigned(SegReg::kGS)].base = v.read(VmcsField::HOST_GS_BASE);
  s.tr = {uint16_t(v.read(VmcsField::HOST_TR_SELECTOR)), v.read(VmcsField::HOST_TR_BASE), 0x67,
          ar::kP | sys_type::kTss32Busy};
  s.ldtr = {0, 0, 0, ar::kUnusable};
  s.gdtr = {v.read(VmcsField::HOST_GDTR_BASE), 0xffff};
  s.idtr = {v.read(VmcsField::HOST_IDTR_BASE), 0xffff};
  s.rip = v.read(VmcsField::HOST_RIP);
  s.gpr[kRsp] = v.read(VmcsField::HOST_RSP);
  set_rflags(rflags::kFixed1);
  s.sti_blocking = s.movss_blocking = false;
  s.activity = Activity::kActive;
  const bool pae = (s.cr0 & cr0::kPG) && (s.cr4 & cr4::kPAE) && !host64;
  if (pae) load_pdptes(s.cr3);
  refresh_mode();
}

}  // namespace nestvm::cpu
