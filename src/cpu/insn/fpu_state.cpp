// Instruction class: x87/SSE state management. FXSAVE, FXSAVE64, FXRSTOR, FXRSTOR64, XSAVE,
// XSAVE64, XSAVEOPT, XSAVEOPT64, XRSTOR, XRSTOR64, XGETBV, XSETBV, and the x87 control
// instructions FNINIT, FNSTSW, FNSTCW, FLDCW, FWAIT, EMMS (SDM Vol. 2, each instruction's
// "Operation"; Vol. 1 Chapter 10.5 and Chapter 13 for the save-area formats).
#include <array>
#include <cstring>

#include "cpu/fpu.h"
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

// XMM registers the save instructions cover: XMM8-XMM15 exist only in 64-bit mode.
inline unsigned xmm_count(const Cpu& c) { return c.in_64bit_mode() ? 16 : 8; }

// A save area whose whole extent has been checked for writing (segment limit, paging) before
// any part of it is written; then only the parts the instruction defines are stored, so bytes
// it leaves alone (FXSAVE's 464-511 "available to software", XSAVE's unsaved components) are
// never rewritten.
template <size_t N> struct SaveArea {
  Cpu::RmwRef<std::array<uint8_t, N>> ref;

  Status map(Cpu& c, SegReg s, uint64_t off) { return c.rmw_ref(s, off, ref); }
  uint64_t la(const Cpu& c, unsigned off) const {
    return c.in_64bit_mode() ? ref.la + off : (ref.la + off) & 0xffffffffull;
  }
  void store(Cpu& c, unsigned off, const uint8_t* p, unsigned n) const {
    if (ref.host) {
      std::memcpy(ref.host->data() + off, p, n);
      return;
    }
    uint8_t tmp[N];
    std::memcpy(tmp, p, n);
    c.access_slow(la(c, off), tmp, n, AccessKind::kWrite, c.mmu_idx(), SegReg::kNone);
  }
  void load(Cpu& c, unsigned off, uint8_t* p, unsigned n) const {
    if (ref.host) std::memcpy(p, ref.host->data() + off, n);
    else c.access_slow(la(c, off), p, n, AccessKind::kRead, c.mmu_idx(), SegReg::kNone);
  }
};

// The operand's offset, after the alignment check: #GP(0) unless the linear address is a
// multiple of `align`, whatever the segment.
inline Status aligned_operand(Cpu& c, const Insn& i, uint64_t align, uint64_t& off) {
  off = c.effective_address(i);
  return (fpu::linear_address(c, seg_of(i), off) & (align - 1)) ? c.fault(Vector::kGP, 0) : Status::kNext;
}

// ---- FXSAVE / FXRSTOR -------------------------------------------------------------------
// FXSAVE writes bytes 0-159 (x87), 24-31 (MXCSR, MXCSR_MASK) and the XMM registers it covers;
// bytes 416-511 are left alone, as are 288-415 outside 64-bit mode.
template <bool kRexW> Status fxsave(Cpu& c, const Insn& i) {
  Status st = fpu::check_fxsr(c);
  if (st != Status::kNext) return st;
  uint64_t off;
  if ((st = aligned_operand(c, i, 16, off)) != Status::kNext) return st;
  SaveArea<fpu::kImageBytes> area;
  if ((st = area.map(c, seg_of(i), off)) != Status::kNext) return st;
  const unsigned nxmm = xmm_count(c);
  uint8_t img[fpu::kXmmOffset + 16 * 16];
  fpu::save_x87(c.state.fpu, img, kRexW);
  fpu::save_mxcsr(c.state.fpu, img);
  fpu::save_xmm(c.state.fpu, img, nxmm);
  area.store(c, 0, img, fpu::kXmmOffset + 16 * nxmm);
  return Status::kNext;
}

// FXRSTOR: the whole image is read and MXCSR checked against MXCSR_MASK before any register
// changes (#GP(0) for reserved bits).
template <bool kRexW> Status fxrstor(Cpu& c, const Insn& i) {
  Status st = fpu::check_fxsr(c);
  if (st != Status::kNext) return st;
  uint64_t off;
  if ((st = aligned_operand(c, i, 16, off)) != Status::kNext) return st;
  std::array<uint8_t, fpu::kImageBytes> img;
  if ((st = c.read(seg_of(i), off, img)) != Status::kNext) return st;
  const uint32_t mxcsr = fpu::image_mxcsr(img.data());
  if (mxcsr & ~fpu::kMxcsrMask) return c.fault(Vector::kGP, 0);
  fpu::load_x87(c.state.fpu, img.data(), kRexW);
  c.state.fpu.mxcsr = mxcsr;
  fpu::load_xmm(c.state.fpu, img.data(), xmm_count(c));
  return Status::kNext;
}

// ---- XSAVE / XSAVEOPT / XRSTOR (SDM Vol. 1 §13.7-13.9) ----------------------------------
// The XSAVE feature set: #UD if CR4.OSXSAVE = 0, then #NM if CR0.TS = 1 (CR0.EM plays no part).
inline Status check_xsave(Cpu& c) {
  if (!(c.state.cr4 & cr4::kOSXSAVE)) return c.fault(Vector::kUD);
  return (c.state.cr0 & cr0::kTS) ? c.fault(Vector::kNM) : Status::kNext;
}

// The requested-feature bitmap: EDX:EAX AND XCR0.
inline uint64_t rfbm(const Cpu& c) {
  return ((uint64_t(uint32_t(c.state.gpr[kRdx])) << 32) | uint32_t(c.state.gpr[kRax])) & c.state.xcr0;
}

// XSAVE stores each requested component and sets XSTATE_BV[i] = XINUSE[i] for requested i,
// keeping the other XSTATE_BV bits; it writes nothing else of the header. XSAVEOPT (kOpt) uses
// the init optimization: a requested component in its initial configuration is not written.
// MXCSR belongs to no component here: it is stored whenever RFBM[1] or RFBM[2] is set.
template <bool kRexW, bool kOpt> Status xsave(Cpu& c, const Insn& i) {
  Status st = check_xsave(c);
  if (st != Status::kNext) return st;
  uint64_t off;
  if ((st = aligned_operand(c, i, 64, off)) != Status::kNext) return st;
  SaveArea<fpu::kXsaveBytes> area;
  if ((st = area.map(c, seg_of(i), off)) != Status::kNext) return st;
  const uint64_t req = rfbm(c);
  const unsigned nxmm = xmm_count(c);
  const uint64_t inuse = fpu::xinuse(c.state.fpu, nxmm);
  const FpuState& f = c.state.fpu;
  uint8_t img[fpu::kXmmOffset + 16 * 16];
  if ((req & xcr0::kX87) && (!kOpt || (inuse & xcr0::kX87))) {
    fpu::save_x87(f, img, kRexW);
    area.store(c, 0, img, 24);
    area.store(c, 32, img + 32, 128);
  }
  if (req & (xcr0::kSSE | xcr0::kAVX)) {
    fpu::save_mxcsr(f, img);
    area.store(c, 24, img + 24, 8);
  }
  if ((req & xcr0::kSSE) && (!kOpt || (inuse & xcr0::kSSE))) {
    fpu::save_xmm(f, img, nxmm);
    area.store(c, fpu::kXmmOffset, img + fpu::kXmmOffset, 16 * nxmm);
  }
  uint64_t bv;
  area.load(c, fpu::kXsaveHeader, reinterpret_cast<uint8_t*>(&bv), 8);
  bv = (bv & ~req) | (inuse & req);
  area.store(c, fpu::kXsaveHeader, reinterpret_cast<const uint8_t*>(&bv), 8);
  return Status::kNext;
}

// XRSTOR, standard form only (XSAVEC is not offered, so XCOMP_BV must be 0). #GP(0) if
// XSTATE_BV has a bit XCR0 lacks, if header bytes 23:8 are not zero, or if MXCSR would be
// loaded with a reserved bit set; all checked before anything is loaded. A requested component
// whose XSTATE_BV bit is 0 is initialized; MXCSR is loaded whenever RFBM[1] or RFBM[2] is set,
// whatever XSTATE_BV says.
template <bool kRexW> Status xrstor(Cpu& c, const Insn& i) {
  Status st = check_xsave(c);
  if (st != Status::kNext) return st;
  uint64_t off;
  if ((st = aligned_operand(c, i, 64, off)) != Status::kNext) return st;
  std::array<uint8_t, fpu::kXsaveBytes> img;
  if ((st = c.read(seg_of(i), off, img)) != Status::kNext) return st;
  uint64_t hdr[3];
  std::memcpy(hdr, img.data() + fpu::kXsaveHeader, sizeof hdr);
  const uint64_t xstate_bv = hdr[0];
  if ((xstate_bv & ~c.state.xcr0) || hdr[1] || hdr[2]) return c.fault(Vector::kGP, 0);
  const uint64_t req = rfbm(c);
  const uint32_t mxcsr = fpu::image_mxcsr(img.data());
  const bool load_mxcsr = req & (xcr0::kSSE | xcr0::kAVX);
  if (load_mxcsr && (mxcsr & ~fpu::kMxcsrMask)) return c.fault(Vector::kGP, 0);
  FpuState& f = c.state.fpu;
  const unsigned nxmm = xmm_count(c);
  if (req & xcr0::kX87) {
    if (xstate_bv & xcr0::kX87) fpu::load_x87(f, img.data(), kRexW);
    else fpu::init_x87(f);
  }
  if (load_mxcsr) f.mxcsr = mxcsr;
  if (req & xcr0::kSSE) {
    if (xstate_bv & xcr0::kSSE) fpu::load_xmm(f, img.data(), nxmm);
    else for (unsigned r = 0; r < nxmm; ++r) f.xmm[r].fill(0);
  }
  return Status::kNext;
}

// XGETBV: ECX = 0 reads XCR0; ECX = 1 reads XCR0 AND XINUSE where the model has XGETBV_ECX_1.
template <bool kEcx1> Status xgetbv(Cpu& c, const Insn&) {
  if (!(c.state.cr4 & cr4::kOSXSAVE)) return c.fault(Vector::kUD);
  const uint32_t ecx = uint32_t(c.state.gpr[kRcx]);
  uint64_t v;
  if (ecx == 0) v = c.state.xcr0;
  else if (kEcx1 && ecx == 1) v = c.state.xcr0 & fpu::xinuse(c.state.fpu, xmm_count(c));
  else return c.fault(Vector::kGP, 0);
  c.state.gpr[kRax] = uint32_t(v);
  c.state.gpr[kRdx] = v >> 32;
  return Status::kNext;
}

// XSETBV: CPL 0, ECX = 0 (XCR0 is the only extended control register); the value's checks
// are set_xcr0's. In VMX non-root operation it exits unconditionally (SDM §26.1.2) after the #UD
// and the CPL check, before the checks of ECX and the value (§26.1.1).
Status xsetbv(Cpu& c, const Insn& i) {
  if (!(c.state.cr4 & cr4::kOSXSAVE)) return c.fault(Vector::kUD);
  if (c.cpl() != 0) return c.fault(Vector::kGP, 0);
  if (c.vmx_non_root()) return c.vm_exit_for(i, ExitReason::XSETBV);
  if (uint32_t(c.state.gpr[kRcx]) != 0) return c.fault(Vector::kGP, 0);
  return c.set_xcr0((uint64_t(uint32_t(c.state.gpr[kRdx])) << 32) | uint32_t(c.state.gpr[kRax]));
}

// ---- x87 control instructions -------------------------------------------------------------
// The no-wait forms (FNINIT, FNSTSW, FNSTCW) do not look at pending exceptions; FLDCW, FWAIT
// and EMMS do. None of them updates FIP/FDP/FOP (they are control instructions).
Status fninit(Cpu& c, const Insn&) {
  const Status st = fpu::check_x87(c);
  if (st != Status::kNext) return st;
  FpuState& f = c.state.fpu;
  f.fcw = fpu::kFcwInit;
  f.fsw = 0;
  f.ftw = 0xffff;
  f.fop = 0;
  f.fip = f.fdp = 0;
  f.fcs = f.fds = 0;
  return Status::kNext;
}

Status fnstsw_ax(Cpu& c, const Insn&) {
  const Status st = fpu::check_x87(c);
  if (st == Status::kNext) set_reg<2>(c, kRax, c.state.fpu.fsw);
  return st;
}

template <bool kControlWord> Status fnst_m16(Cpu& c, const Insn& i) {
  const Status st = fpu::check_x87(c);
  if (st != Status::kNext) return st;
  return write_mem<2>(c, i, kControlWord ? c.state.fpu.fcw : c.state.fpu.fsw);
}

// FLDCW: a newly unmasked exception flag sets ES/B, to be reported by the next waiting
// instruction (SDM Vol. 2 FLDCW).
Status fldcw(Cpu& c, const Insn& i) {
  Status st = fpu::check_x87(c);
  if (st != Status::kNext || (st = fpu::check_pending(c)) != Status::kNext) return st;
  uint64_t v;
  if ((st = read_mem<2>(c, i, v)) != Status::kNext) return st;
  FpuState& f = c.state.fpu;
  f.fcw = uint16_t((v & fpu::kFcwDefined) | fpu::kFcwFixed1);
  f.fsw = fpu::with_summary(f.fsw, f.fcw);
  return Status::kNext;
}

Status fwait(Cpu& c, const Insn&) {
  const Status st = fpu::check_wait(c);
  return st == Status::kNext ? fpu::check_pending(c) : st;
}

// FNOP: no operation, but an x87 instruction that waits (#NM, then #MF for a pending exception)
// and, not being a control instruction, records its opcode and address in FOP and FIP/FCS
// (SDM Vol. 2 FNOP, Vol. 1 §8.1.8). FOP holds the low 3 bits of D9 and the ModR/M byte D0.
Status fnop(Cpu& c, const Insn&) {
  Status st = fpu::check_x87(c);
  if (st != Status::kNext || (st = fpu::check_pending(c)) != Status::kNext) return st;
  FpuState& f = c.state.fpu;
  f.fop = 0x1d0;
  f.fip = c.state.rip;
  f.fcs = c.state.seg[unsigned(SegReg::kCS)].selector;
  return Status::kNext;
}

// EMMS: every tag empty, and TOP = 0 as after any MMX instruction (SDM Vol. 1 Table 9-3).
Status emms(Cpu& c, const Insn&) {
  const Status st = fpu::check_mmx(c);
  if (st != Status::kNext) return st;
  c.state.fpu.ftw = 0xffff;
  c.state.fpu.fsw &= uint16_t(~fpu::kFswTop);
  return Status::kNext;
}

template <Feature F, Handler H> Handler when(const DecodeInput& in, Insn&) { return in.model.has(F) ? H : nullptr; }

Handler select_fnstsw(const DecodeInput& in, Insn&) {
  if (!in.model.has(Feature::kFpu)) return nullptr;
  return is_mem(in.ops[0]) ? &fnst_m16<false> : &fnstsw_ax;
}

Handler select_xgetbv(const DecodeInput& in, Insn&) {
  if (!in.model.has(Feature::kXsave)) return nullptr;
  return in.model.has(Feature::kXgetbv1) ? &xgetbv<true> : &xgetbv<false>;
}

}  // namespace

void register_fpu_state(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_FXSAVE, &when<Feature::kFxsr, &fxsave<false>>);
  t.add(ZYDIS_MNEMONIC_FXSAVE64, &when<Feature::kFxsr, &fxsave<true>>);
  t.add(ZYDIS_MNEMONIC_FXRSTOR, &when<Feature::kFxsr, &fxrstor<false>>);
  t.add(ZYDIS_MNEMONIC_FXRSTOR64, &when<Feature::kFxsr, &fxrstor<true>>);
  t.add(ZYDIS_MNEMONIC_XSAVE, &when<Feature::kXsave, &xsave<false, false>>);
  t.add(ZYDIS_MNEMONIC_XSAVE64, &when<Feature::kXsave, &xsave<true, false>>);
  t.add(ZYDIS_MNEMONIC_XSAVEOPT, &when<Feature::kXsaveopt, &xsave<false, true>>);
  t.add(ZYDIS_MNEMONIC_XSAVEOPT64, &when<Feature::kXsaveopt, &xsave<true, true>>);
  t.add(ZYDIS_MNEMONIC_XRSTOR, &when<Feature::kXsave, &xrstor<false>>);
  t.add(ZYDIS_MNEMONIC_XRSTOR64, &when<Feature::kXsave, &xrstor<true>>);
  t.add(ZYDIS_MNEMONIC_XGETBV, &select_xgetbv);
  t.add(ZYDIS_MNEMONIC_XSETBV, &when<Feature::kXsave, &xsetbv>);
  t.add(ZYDIS_MNEMONIC_FNINIT, &when<Feature::kFpu, &fninit>);
  t.add(ZYDIS_MNEMONIC_FNSTSW, &select_fnstsw);
  t.add(ZYDIS_MNEMONIC_FNSTCW, &when<Feature::kFpu, &fnst_m16<true>>);
  t.add(ZYDIS_MNEMONIC_FLDCW, &when<Feature::kFpu, &fldcw>);
  t.add(ZYDIS_MNEMONIC_FWAIT, &when<Feature::kFpu, &fwait>);
  t.add(ZYDIS_MNEMONIC_FNOP, &when<Feature::kFpu, &fnop>);
  t.add(ZYDIS_MNEMONIC_EMMS, &when<Feature::kMmx, &emms>);
}

}  // namespace nestvm::cpu
