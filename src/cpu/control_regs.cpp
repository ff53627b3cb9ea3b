// Writes to CR0, CR3, CR4, CR8, EFER and XCR0: the checks of SDM Vol. 2 "MOV-Move to/from
// Control Registers", "WRMSR" and "XSETBV", and the TLB rules of SDM Vol. 3 §4.10.4.1.
#include "arch/cr.h"
#include "cpu/cpu.h"

namespace nestvm::cpu {

using namespace arch;

uint64_t Cpu::cr4_valid_bits() const {
  uint64_t v = cr4::kVME | cr4::kPVI | cr4::kTSD | cr4::kDE | cr4::kPSE | cr4::kPAE | cr4::kMCE |
               cr4::kPGE | cr4::kPCE | cr4::kOSFXSR | cr4::kOSXMMEXCPT;
  if (model_.has(Feature::kUmip)) v |= cr4::kUMIP;
  // In VMX non-root operation CR4.VMXE is 1 (IA32_VMX_CR4_FIXED0) whatever CPUID tells the guest.
  if (model_.has(Feature::kVmx) || vmx_.non_root) v |= cr4::kVMXE;
  if (model_.has(Feature::kFsgsbase)) v |= cr4::kFSGSBASE;
  if (model_.has(Feature::kPcid)) v |= cr4::kPCIDE;
  if (model_.has(Feature::kXsave)) v |= cr4::kOSXSAVE;
  if (model_.has(Feature::kSmep)) v |= cr4::kSMEP;
  if (model_.has(Feature::kSmap)) v |= cr4::kSMAP;
  if (model_.has(Feature::kPku)) v |= cr4::kPKE;
  return v;
}

uint64_t Cpu::efer_valid_bits() const {
  uint64_t v = 0;
  if (model_.has(Feature::kSyscall)) v |= efer::kSCE;
  if (model_.has(Feature::kLm)) v |= efer::kLME | efer::kLMA;
  if (model_.has(Feature::kNx)) v |= efer::kNXE;
  if (model_.has(Feature::kSvm)) v |= efer::kSVME;
  return v;
}

Status Cpu::set_cr0(uint64_t v) {
  const uint64_t old = state.cr0;
  if (v >> 32) return fault(Vector::kGP, 0);
  v = (v & cr0::kDefined) | cr0::kET;  // reserved bits 31:0 are ignored; ET is hardwired to 1
  if ((v & cr0::kPG) && !(v & cr0::kPE)) return fault(Vector::kGP, 0);
  if ((v & cr0::kNW) && !(v & cr0::kCD)) return fault(Vector::kGP, 0);
  const bool pg_on = (v & cr0::kPG) && !(old & cr0::kPG);
  const bool pg_off = !(v & cr0::kPG) && (old & cr0::kPG);
  uint64_t efer = state.msr.efer;
  if (pg_on && (efer & efer::kLME)) {
    // Activating IA-32e mode (SDM Vol. 3 §10.8.5): needs PAE and a CS that is not 64-bit.
    if (!(state.cr4 & cr4::kPAE)) return fault(Vector::kGP, 0);
    if (state.seg[unsigned(SegReg::kCS)].ar & ar::kL) return fault(Vector::kGP, 0);
    efer |= efer::kLMA;
  }
  if (pg_off) {
    if (in_64bit_mode()) return fault(Vector::kGP, 0);
    if (state.cr4 & cr4::kPCIDE) return fault(Vector::kGP, 0);
    efer &= ~efer::kLMA;
  }
  if ((v & cr0::kPG) && (state.cr4 & cr4::kPAE) && !(efer & efer::kLMA) &&
      ((v ^ old) & (cr0::kPG | cr0::kCD | cr0::kNW)))
    if (const Status st = load_pdptes_checked(state.cr3); st != Status::kNext) return st;
  state.cr0 = v;
  state.msr.efer = efer;
  if ((v ^ old) & (cr0::kPG | cr0::kWP | cr0::kPE)) tlb_.flush_all();
  refresh_mode();
  return Status::kNext;
}

Status Cpu::set_cr3(uint64_t v) {
  const bool pcide = state.cr4 & cr4::kPCIDE;
  // Bit 63 is the no-flush hint only with CR4.PCIDE = 1 (SDM Vol. 3 §4.10.4.1); otherwise it is a
  // reserved bit above MAXPHYADDR and the write is #GP(0) (SDM Vol. 3 Table 4-12).
  const bool no_flush = pcide && (v & cr3::kNoFlush);
  if (pcide) v &= ~cr3::kNoFlush;
  if (long_mode()) {
    if (v & ~((1ull << model_.maxphyaddr()) - 1)) return fault(Vector::kGP, 0);
  } else {
    v &= 0xffffffffull;
  }
  if (paging_mode_ == PagingMode::kPae)
    if (const Status st = load_pdptes_checked(v); st != Status::kNext) return st;
  state.cr3 = v;
  const uint16_t new_pcid = pcide ? uint16_t(v & cr3::kPcidMask) : 0;
  if (!pcide) tlb_.flush_nonglobal();
  else if (!no_flush) tlb_.flush_pcid(new_pcid);
  tlb_.set_pcid(new_pcid);  // global translations follow the PCID
  pcid_ = new_pcid;
  // Linear addresses may now map other code, even when no TLB entry was flushed (PCID no-flush
  // switch): links between decoded blocks must not survive the write.
  tlb_.bump_epoch();
  return Status::kNext;
}

Status Cpu::set_cr4(uint64_t v) {
  const uint64_t old = state.cr4;
  if (v & ~cr4_valid_bits()) return fault(Vector::kGP, 0);
  if (long_mode() && !(v & cr4::kPAE)) return fault(Vector::kGP, 0);
  if ((v & cr4::kPCIDE) && !(old & cr4::kPCIDE) && (!long_mode() || (state.cr3 & cr3::kPcidMask)))
    return fault(Vector::kGP, 0);
  if ((state.cr0 & cr0::kPG) && (v & cr4::kPAE) && !long_mode() &&
      ((v ^ old) & (cr4::kPAE | cr4::kPGE | cr4::kPSE | cr4::kSMEP)))
    if (const Status st = load_pdptes_checked(state.cr3); st != Status::kNext) return st;
  state.cr4 = v;
  if (((v ^ old) & cr4::kFlushAll) || ((old & cr4::kPCIDE) && !(v & cr4::kPCIDE))) tlb_.flush_all();
  refresh_mode();
  return Status::kNext;
}

Status Cpu::set_cr8(uint64_t v) {
  if (v & ~0xfull) return fault(Vector::kGP, 0);
  state.cr8 = v;
  return Status::kNext;
}

Status Cpu::set_efer(uint64_t v) {
  if (v & ~efer_valid_bits()) return fault(Vector::kGP, 0);
  const uint64_t old = state.msr.efer;
  // LME may not change while paging is on (SDM Vol. 3 §10.8.5); LMA is the processor's to set.
  if ((state.cr0 & cr0::kPG) && ((v ^ old) & efer::kLME)) return fault(Vector::kGP, 0);
  v = (v & ~efer::kLMA) | (old & efer::kLMA);
  state.msr.efer = v;
  if ((v ^ old) & efer::kNXE) tlb_.flush_all();
  refresh_mode();
  return Status::kNext;
}

Status Cpu::set_xcr0(uint64_t v) {
  // SDM Vol. 2 XSETBV: bit 0 must be 1; AVX needs SSE; bits the processor lacks are reserved.
  // The processor supports the components CPUID.(EAX=0DH,ECX=0):EDX:EAX reports, of those whose
  // state the core carries (FpuState: x87 and SSE).
  const CpuidResult d = model_.cpuid(0xd, 0);
  const uint64_t supported = ((uint64_t(d.edx) << 32) | d.eax) & (xcr0::kX87 | xcr0::kSSE);
  if (!(v & xcr0::kX87) || (v & ~supported) || ((v & xcr0::kAVX) && !(v & xcr0::kSSE)))
    return fault(Vector::kGP, 0);
  state.xcr0 = v;
  return Status::kNext;
}

}  // namespace nestvm::cpu
