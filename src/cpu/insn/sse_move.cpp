// Instruction class: SSE/MMX data movement. MOVAPS, MOVUPS, MOVAPD, MOVUPD, MOVDQA, MOVDQU
// (XMM <-> XMM/m128), MOVD and MOVQ (XMM, MMX and GPR/memory forms), LDMXCSR, STMXCSR (SDM
// Vol. 2, each instruction's "Operation"; Vol. 1 §9.5.1 for how MMX forms touch x87 state).
// Insn::reg is the destination register, Insn::rm the source register (XMM, MM or GPR number).
#include <array>
#include <cstring>

#include "cpu/fpu.h"
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

using namespace arch;
using Xmm = std::array<uint8_t, 16>;

// ---- 128-bit moves ----------------------------------------------------------------------
// Aligned forms (MOVAPS, MOVAPD, MOVDQA): #GP(0) for a memory operand whose linear address is
// not a multiple of 16, whatever the segment.
inline Status check_align16(Cpu& c, const Insn& i, uint64_t off) {
  return (fpu::linear_address(c, seg_of(i), off) & 15) ? c.fault(Vector::kGP, 0) : Status::kNext;
}

Status mov128_rr(Cpu& c, const Insn& i) {
  const Status st = fpu::check_sse(c);
  if (st == Status::kNext) c.state.fpu.xmm[i.reg] = c.state.fpu.xmm[i.rm];
  return st;
}

template <bool kAligned> Status mov128_rm(Cpu& c, const Insn& i) {
  Status st = fpu::check_sse(c);
  if (st != Status::kNext) return st;
  const uint64_t off = c.effective_address(i);
  if (kAligned && (st = check_align16(c, i, off)) != Status::kNext) return st;
  Xmm v;
  if ((st = c.read(seg_of(i), off, v)) == Status::kNext) c.state.fpu.xmm[i.reg] = v;
  return st;
}

template <bool kAligned> Status mov128_mr(Cpu& c, const Insn& i) {
  Status st = fpu::check_sse(c);
  if (st != Status::kNext) return st;
  const uint64_t off = c.effective_address(i);
  if (kAligned && (st = check_align16(c, i, off)) != Status::kNext) return st;
  return c.write(seg_of(i), off, c.state.fpu.xmm[i.rm]);
}

inline uint8_t xmm_index(const ZydisDecodedOperand& o) { return uint8_t(o.reg.value - ZYDIS_REGISTER_XMM0); }
inline uint8_t mm_index(const ZydisDecodedOperand& o) { return uint8_t(o.reg.value - ZYDIS_REGISTER_MM0); }
inline ZydisRegisterClass reg_class(const ZydisDecodedOperand& o) { return ZydisRegisterGetClass(o.reg.value); }

template <Feature F, bool kAligned> Handler select_mov128(const DecodeInput& in, Insn& i) {
  if (!in.model.has(F)) return nullptr;
  const ZydisDecodedOperand& d = in.ops[0];
  const ZydisDecodedOperand& s = in.ops[1];
  if (is_reg(d) && is_reg(s)) {
    i.reg = xmm_index(d);
    i.rm = xmm_index(s);
    return &mov128_rr;
  }
  if (is_reg(d)) {
    i.reg = xmm_index(d);
    return &mov128_rm<kAligned>;
  }
  i.rm = xmm_index(s);
  return &mov128_mr<kAligned>;
}

// ---- MOVD / MOVQ with XMM registers (SSE2) -----------------------------------------------
// XMM destination: the value is zero-extended to 128 bits.
inline void set_xmm_low(Cpu& c, uint8_t r, uint64_t v) {
  Xmm x{};
  std::memcpy(x.data(), &v, 8);
  c.state.fpu.xmm[r] = x;
}
inline uint64_t xmm_low(const Cpu& c, uint8_t r, unsigned n) {
  uint64_t v = 0;
  std::memcpy(&v, c.state.fpu.xmm[r].data(), n);
  return v;
}

template <unsigned N> struct XmmFromGpr {  // MOVD/MOVQ xmm, r32/r64
  static Status run(Cpu& c, const Insn& i) {
    const Status st = fpu::check_sse(c);
    if (st == Status::kNext) set_xmm_low(c, i.reg, get_reg<N>(c, i.rm));
    return st;
  }
};
template <unsigned N> struct XmmFromMem {  // MOVD xmm, m32; MOVQ xmm, m64
  static Status run(Cpu& c, const Insn& i) {
    Status st = fpu::check_sse(c);
    if (st != Status::kNext) return st;
    uint64_t v;
    if ((st = read_mem<N>(c, i, v)) == Status::kNext) set_xmm_low(c, i.reg, v);
    return st;
  }
};
template <unsigned N> struct GprFromXmm {  // MOVD r32, xmm; MOVQ r64, xmm
  static Status run(Cpu& c, const Insn& i) {
    const Status st = fpu::check_sse(c);
    if (st == Status::kNext) set_reg<N>(c, i.reg, xmm_low(c, i.rm, N));
    return st;
  }
};
template <unsigned N> struct MemFromXmm {  // MOVD m32, xmm; MOVQ m64, xmm
  static Status run(Cpu& c, const Insn& i) {
    const Status st = fpu::check_sse(c);
    return st == Status::kNext ? write_mem<N>(c, i, xmm_low(c, i.rm, N)) : st;
  }
};
Status xmm_from_xmm_q(Cpu& c, const Insn& i) {  // MOVQ xmm, xmm (F3 0F 7E, 66 0F D6)
  const Status st = fpu::check_sse(c);
  if (st == Status::kNext) set_xmm_low(c, i.reg, xmm_low(c, i.rm, 8));
  return st;
}

// ---- MOVD / MOVQ with MMX registers ------------------------------------------------------
// Every MMX form puts the x87 unit in MMX state (TOP = 0, all tags valid) once it completes;
// a write to MMn also sets bits 79:64 of Rn to all 1s (SDM Vol. 1 Table 9-3).
template <unsigned N> struct MmFromGpr {
  static Status run(Cpu& c, const Insn& i) {
    const Status st = fpu::check_mmx(c);
    if (st != Status::kNext) return st;
    fpu::mmx_enter(c.state.fpu);
    fpu::mmx_write(c.state.fpu, i.reg, get_reg<N>(c, i.rm));
    return Status::kNext;
  }
};
template <unsigned N> struct MmFromMem {
  static Status run(Cpu& c, const Insn& i) {
    Status st = fpu::check_mmx(c);
    if (st != Status::kNext) return st;
    uint64_t v;
    if ((st = read_mem<N>(c, i, v)) != Status::kNext) return st;
    fpu::mmx_enter(c.state.fpu);
    fpu::mmx_write(c.state.fpu, i.reg, v);
    return Status::kNext;
  }
};
template <unsigned N> struct GprFromMm {
  static Status run(Cpu& c, const Insn& i) {
    const Status st = fpu::check_mmx(c);
    if (st != Status::kNext) return st;
    set_reg<N>(c, i.reg, fpu::mmx_read(c.state.fpu, i.rm) & size_mask(N));
    fpu::mmx_enter(c.state.fpu);
    return Status::kNext;
  }
};
template <unsigned N> struct MemFromMm {
  static Status run(Cpu& c, const Insn& i) {
    Status st = fpu::check_mmx(c);
    if (st != Status::kNext) return st;
    if ((st = write_mem<N>(c, i, fpu::mmx_read(c.state.fpu, i.rm))) != Status::kNext) return st;
    fpu::mmx_enter(c.state.fpu);
    return Status::kNext;
  }
};
Status mm_from_mm(Cpu& c, const Insn& i) {  // MOVQ mm, mm (0F 6F, 0F 7F)
  const Status st = fpu::check_mmx(c);
  if (st != Status::kNext) return st;
  const uint64_t v = fpu::mmx_read(c.state.fpu, i.rm);
  fpu::mmx_enter(c.state.fpu);
  fpu::mmx_write(c.state.fpu, i.reg, v);
  return Status::kNext;
}

template <template <unsigned> class H> Handler by_size(unsigned bytes) { return bytes == 8 ? &H<8>::run : &H<4>::run; }

// Both mnemonics share the forms: Zydis calls the REX.W forms of 0F 6E/7E "movq".
Handler select_movd_movq(const DecodeInput& in, Insn& i) {
  const ZydisDecodedOperand& d = in.ops[0];
  const ZydisDecodedOperand& s = in.ops[1];
  const bool d_mm = is_reg(d) && reg_class(d) == ZYDIS_REGCLASS_MMX;
  const bool s_mm = is_reg(s) && reg_class(s) == ZYDIS_REGCLASS_MMX;
  const bool d_xmm = is_reg(d) && reg_class(d) == ZYDIS_REGCLASS_XMM;
  const bool s_xmm = is_reg(s) && reg_class(s) == ZYDIS_REGCLASS_XMM;
  if (d_mm || s_mm) {
    if (!in.model.has(Feature::kMmx)) return nullptr;
    if (d_mm && s_mm) {
      i.reg = mm_index(d);
      i.rm = mm_index(s);
      return &mm_from_mm;
    }
    if (d_mm) {
      i.reg = mm_index(d);
      if (is_mem(s)) return by_size<MmFromMem>(s.size / 8);
      i.rm = gpr_index(s.reg.value);
      return by_size<MmFromGpr>(s.size / 8);
    }
    i.rm = mm_index(s);
    if (is_mem(d)) return by_size<MemFromMm>(d.size / 8);
    i.reg = gpr_index(d.reg.value);
    return by_size<GprFromMm>(d.size / 8);
  }
  if (!in.model.has(Feature::kSse2) || !(d_xmm || s_xmm)) return nullptr;
  if (d_xmm && s_xmm) {
    i.reg = xmm_index(d);
    i.rm = xmm_index(s);
    return &xmm_from_xmm_q;
  }
  if (d_xmm) {
    i.reg = xmm_index(d);
    if (is_mem(s)) return by_size<XmmFromMem>(s.size / 8);
    i.rm = gpr_index(s.reg.value);
    return by_size<XmmFromGpr>(s.size / 8);
  }
  i.rm = xmm_index(s);
  if (is_mem(d)) return by_size<MemFromXmm>(d.size / 8);
  i.reg = gpr_index(d.reg.value);
  return by_size<GprFromXmm>(d.size / 8);
}

// ---- LDMXCSR / STMXCSR -------------------------------------------------------------------
Status ldmxcsr(Cpu& c, const Insn& i) {
  Status st = fpu::check_sse(c);
  if (st != Status::kNext) return st;
  uint64_t v;
  if ((st = read_mem<4>(c, i, v)) != Status::kNext) return st;
  if (v & ~uint64_t(fpu::kMxcsrMask)) return c.fault(Vector::kGP, 0);  // reserved bits
  c.state.fpu.mxcsr = uint32_t(v);
  return Status::kNext;
}

Status stmxcsr(Cpu& c, const Insn& i) {
  const Status st = fpu::check_sse(c);
  return st == Status::kNext ? write_mem<4>(c, i, c.state.fpu.mxcsr) : st;
}

template <Feature F, Handler H> Handler when(const DecodeInput& in, Insn&) { return in.model.has(F) ? H : nullptr; }

}  // namespace

void register_sse_move(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_MOVAPS, &select_mov128<Feature::kSse, true>);
  t.add(ZYDIS_MNEMONIC_MOVUPS, &select_mov128<Feature::kSse, false>);
  t.add(ZYDIS_MNEMONIC_MOVAPD, &select_mov128<Feature::kSse2, true>);
  t.add(ZYDIS_MNEMONIC_MOVUPD, &select_mov128<Feature::kSse2, false>);
  t.add(ZYDIS_MNEMONIC_MOVDQA, &select_mov128<Feature::kSse2, true>);
  t.add(ZYDIS_MNEMONIC_MOVDQU, &select_mov128<Feature::kSse2, false>);
  t.add(ZYDIS_MNEMONIC_MOVD, &select_movd_movq);
  t.add(ZYDIS_MNEMONIC_MOVQ, &select_movd_movq);
  t.add(ZYDIS_MNEMONIC_LDMXCSR, &when<Feature::kSse, &ldmxcsr>);
  t.add(ZYDIS_MNEMONIC_STMXCSR, &when<Feature::kSse, &stmxcsr>);
}

}  // namespace nestvm::cpu
