// Instruction class: SHL/SAL SHR SAR ROL ROR RCL RCR SHLD SHRD (SDM Vol. 2, "SAL/SAR/SHL/SHR",
// "RCL/RCR/ROL/ROR", "SHLD", "SHRD").
//
// Common rules: the count (1, CL or imm8) is masked to 5 bits, 6 bits for 64-bit operands; a
// masked count of 0 changes no flags. Shifts record lazy flags (FlagOp::kShl/kShr/kSar);
// rotates and double shifts materialize theirs. Where the SDM leaves a flag undefined, the
// values are those of the Intel processors nestvm is checked against (see the comments).
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

using arch::rflags::kCF;
using arch::rflags::kOF;

enum class ShOp : uint8_t { kRol, kRor, kRcl, kRcr, kShl, kShr, kSar };

template <unsigned N>
constexpr unsigned count_mask() { return N == 8 ? 0x3f : 0x1f; }

template <unsigned N>
constexpr bool msb(uint64_t v) { return (v >> (8 * N - 1)) & 1; }

// Replaces CF and OF, keeping the other status flags (rotates affect only CF and OF).
inline void set_cf_of(Cpu& c, bool cf, bool of) {
  c.set_status_flags((c.rflags() & ~(kCF | kOF)) | (cf ? kCF : 0) | (of ? kOF : 0));
}

// All six status flags of a shift result: SF ZF PF from it, AF (undefined) 0 as on Intel.
template <unsigned N>
inline void set_shift_flags(Cpu& c, uint64_t r, bool cf, bool of) {
  using namespace arch::rflags;
  c.set_status_flags((cf ? kCF : 0) | (of ? kOF : 0) | (r == 0 ? kZF : 0) | (msb<N>(r) ? kSF : 0) |
                     (__builtin_parity(unsigned(r & 0xff)) ? 0 : kPF));
}

// op(v) by `count` (masked and non-zero) on N bytes; records the flags.
//
// OF is defined for 1-bit shifts and rotates only. For larger counts Intel processors report
// the OF of the first 1-bit step, which is what every formula below computes for any count:
// left shifts and rotates MSB(DEST) XOR MSB-1(DEST), SHR MSB(DEST), SAR 0, ROR LSB(DEST) XOR
// MSB(DEST), RCR MSB(DEST) XOR CF (DEST and CF before the instruction). The exception: ROL and
// ROR of a register by an immediate count greater than 1 leave OF unchanged (KeepOf).
template <ShOp Op, unsigned N, bool KeepOf>
inline uint64_t shift(Cpu& c, uint64_t v, unsigned count) {
  constexpr unsigned kBits = 8 * N;
  const uint64_t x = v & size_mask(N);
  const bool of_left = msb<N>(x) != msb<N>(x << 1);
  switch (Op) {
    case ShOp::kShl: {
      const uint64_t r = (x << count) & size_mask(N);  // count <= 63: defined for 8/16-bit counts > size
      // Lazy kShl derives OF from the result, which is the first step's OF only for count 1.
      if (count == 1) c.set_lazy(FlagOp::kShl, N, r, x, count);
      else set_shift_flags<N>(c, r, count <= kBits && ((x >> (kBits - count)) & 1), of_left);
      return r;
    }
    case ShOp::kShr: {
      const uint64_t r = x >> count;
      c.set_lazy(FlagOp::kShr, N, r, x, count);
      return r;
    }
    case ShOp::kSar: {
      const uint64_t r = uint64_t(sign_extend(x, N) >> count) & size_mask(N);
      c.set_lazy(FlagOp::kSar, N, r, x, count);
      return r;
    }
    case ShOp::kRol: {
      // SDM ROL: tempCOUNT = count MOD SIZE; CF = LSB(result) whenever the masked count is
      // non-zero, even when tempCOUNT is 0.
      const unsigned k = count & (kBits - 1);
      const uint64_t r = k ? ((x << k) | (x >> (kBits - k))) & size_mask(N) : x;
      set_cf_of(c, r & 1, !KeepOf || count == 1 ? of_left : (c.rflags() & kOF) != 0);
      return r;
    }
    case ShOp::kRor: {
      // SDM ROR: CF = MSB(result).
      const unsigned k = count & (kBits - 1);
      const uint64_t r = k ? ((x >> k) | (x << (kBits - k))) & size_mask(N) : x;
      set_cf_of(c, msb<N>(r), !KeepOf || count == 1 ? (x & 1) != msb<N>(x) : (c.rflags() & kOF) != 0);
      return r;
    }
    case ShOp::kRcl: {
      // SDM RCL: a rotate of the SIZE+1 bits CF:DEST, tempCOUNT = count MOD 9 / MOD 17 for
      // 8/16-bit operands. tempCOUNT = 0 leaves the operand and the flags unchanged.
      const unsigned k = N == 1 ? count % 9 : N == 2 ? count % 17 : count;
      if (k == 0) return x;
      const uint64_t cin = c.cf();
      const uint64_t r = ((x << k) | (cin << (k - 1)) | (k > 1 ? x >> (kBits + 1 - k) : 0)) & size_mask(N);
      set_cf_of(c, (x >> (kBits - k)) & 1, of_left);
      return r;
    }
    case ShOp::kRcr: {
      const unsigned k = N == 1 ? count % 9 : N == 2 ? count % 17 : count;
      if (k == 0) return x;
      const uint64_t cin = c.cf();
      const uint64_t r = ((x >> k) | (cin << (kBits - k)) | (k > 1 ? x << (kBits + 1 - k) : 0)) & size_mask(N);
      set_cf_of(c, (x >> (k - 1)) & 1, msb<N>(x) != bool(cin));
      return r;
    }
  }
  return x;
}

template <unsigned N>
inline unsigned shift_count(const Cpu& c, const Insn& i, bool cl) {
  return unsigned(cl ? c.state.gpr[kRcx] : i.imm) & count_mask<N>();
}

template <ShOp Op, bool Cl>
struct Shift {
  template <unsigned N> struct R {
    static Status run(Cpu& c, const Insn& i) {
      const unsigned count = shift_count<N>(c, i, Cl);
      const uint64_t v = get_reg<N>(c, i.reg);
      // A 32-bit destination is written (upper half zeroed) even when the count is 0.
      set_reg<N>(c, i.reg, count ? shift<Op, N, !Cl>(c, v, count) : v);
      return Status::kNext;
    }
  };
  template <unsigned N> struct M {
    static Status run(Cpu& c, const Insn& i) {
      using T = uint_t<N>;
      Cpu::RmwRef<T> ref;
      const Status st = c.rmw_ref<T>(seg_of(i), c.effective_address(i), ref);
      if (st != Status::kNext) return st;
      const unsigned count = shift_count<N>(c, i, Cl);
      const T old = c.rmw_load(ref);
      if (count) c.rmw_store(ref, T(shift<Op, N, false>(c, old, count)));
      return Status::kNext;
    }
  };

  static Handler select(const DecodeInput& in, Insn& i) {
    const ZydisDecodedOperand& d = in.ops[0];
    const unsigned n = d.size / 8;
    if (is_reg(d)) {
      i.reg = reg_operand(d);
      return sized<R>(n);
    }
    return sized<M>(n);
  }
};

template <ShOp Op>
Handler select_shift(const DecodeInput& in, Insn& i) {
  // The count operand: CL, or an immediate (the D0/D1 forms carry an implicit immediate 1).
  return is_reg(in.ops[1]) ? Shift<Op, true>::select(in, i) : Shift<Op, false>::select(in, i);
}

// SHLD/SHRD (SDM Vol. 2): the destination shifted by `count` (masked, non-zero), filled from
// the source. For 16-bit operands the masked count can exceed 16 (undefined in the SDM);
// Intel processors since the P6 then shift the 48-bit DEST:SRC:DEST, which these formulas do
// for every count.
template <bool Left, unsigned N>
inline uint64_t double_shift(Cpu& c, uint64_t dst, uint64_t src, unsigned count) {
  const uint64_t d = dst & size_mask(N), s = src & size_mask(N);
  uint64_t r;
  bool cf;
  if (N == 2) {
    const uint64_t w = (d << 32) | (s << 16) | d;
    r = Left ? (w << count) >> 32 : w >> count;
    cf = Left ? (w >> (48 - count)) & 1 : (w >> (count - 1)) & 1;
  } else if (N == 4) {
    const uint64_t w = Left ? (d << 32) | s : (s << 32) | d;
    r = Left ? (w << count) >> 32 : w >> count;
    cf = Left ? (w >> (64 - count)) & 1 : (w >> (count - 1)) & 1;
  } else {
    r = Left ? (d << count) | (s >> (64 - count)) : (d >> count) | (s << (64 - count));
    cf = Left ? (d >> (64 - count)) & 1 : (d >> (count - 1)) & 1;
  }
  r &= size_mask(N);
  // SF ZF PF from the result, CF the last bit shifted out, AF (undefined) 0. OF, defined for
  // count 1 (sign change), is that of the first 1-bit step for any count, as on Intel: SHLD
  // MSB(DEST) XOR MSB-1(DEST), SHRD MSB(DEST) XOR LSB(SRC).
  using namespace arch::rflags;
  const bool of = Left ? msb<N>(d) != msb<N>(d << 1) : msb<N>(d) != (s & 1);
  c.set_status_flags((cf ? kCF : 0) | (of ? kOF : 0) | (r == 0 ? kZF : 0) | (msb<N>(r) ? kSF : 0) |
                     (__builtin_parity(unsigned(r & 0xff)) ? 0 : kPF));
  return r;
}

template <bool Left, bool Cl>
struct DoubleShift {
  template <unsigned N> struct R {
    static Status run(Cpu& c, const Insn& i) {
      const unsigned count = shift_count<N>(c, i, Cl);
      const uint64_t v = get_reg<N>(c, i.rm);
      set_reg<N>(c, i.rm, count ? double_shift<Left, N>(c, v, get_reg<N>(c, i.reg), count) : v);
      return Status::kNext;
    }
  };
  template <unsigned N> struct M {
    static Status run(Cpu& c, const Insn& i) {
      using T = uint_t<N>;
      Cpu::RmwRef<T> ref;
      const Status st = c.rmw_ref<T>(seg_of(i), c.effective_address(i), ref);
      if (st != Status::kNext) return st;
      const unsigned count = shift_count<N>(c, i, Cl);
      const T old = c.rmw_load(ref);
      if (count) c.rmw_store(ref, T(double_shift<Left, N>(c, old, get_reg<N>(c, i.reg), count)));
      return Status::kNext;
    }
  };

  static Handler select(const DecodeInput& in, Insn& i) {
    // ops: destination (r/m), source (ModRM.reg), count (CL or imm8).
    const ZydisDecodedOperand& d = in.ops[0];
    i.reg = reg_operand(in.ops[1]);
    const unsigned n = d.size / 8;
    if (is_reg(d)) {
      i.rm = reg_operand(d);
      return sized_wdq<R>(n);
    }
    return sized_wdq<M>(n);
  }
};

template <bool Left>
Handler select_double_shift(const DecodeInput& in, Insn& i) {
  return is_reg(in.ops[2]) ? DoubleShift<Left, true>::select(in, i) : DoubleShift<Left, false>::select(in, i);
}

}  // namespace

void register_shift(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_SHL, &select_shift<ShOp::kShl>);
  t.add(ZYDIS_MNEMONIC_SHR, &select_shift<ShOp::kShr>);
  t.add(ZYDIS_MNEMONIC_SAR, &select_shift<ShOp::kSar>);
  t.add(ZYDIS_MNEMONIC_ROL, &select_shift<ShOp::kRol>);
  t.add(ZYDIS_MNEMONIC_ROR, &select_shift<ShOp::kRor>);
  t.add(ZYDIS_MNEMONIC_RCL, &select_shift<ShOp::kRcl>);
  t.add(ZYDIS_MNEMONIC_RCR, &select_shift<ShOp::kRcr>);
  t.add(ZYDIS_MNEMONIC_SHLD, &select_double_shift<true>);
  t.add(ZYDIS_MNEMONIC_SHRD, &select_double_shift<false>);
}

}  // namespace nestvm::cpu
