// Instruction class: MUL, IMUL (one-, two- and three-operand forms), DIV, IDIV (SDM Vol. 2).
//
// Flags: MUL and IMUL define CF = OF = "the upper half is significant"; SF ZF AF PF are
// undefined. DIV and IDIV leave all six undefined. nestvm makes them deterministic, with the
// values Intel processors produce (checked against the host in tests/unit/cpu):
//   MUL/IMUL: SF from the most significant bit of the low half of the product (the part
//   written to AL/AX/EAX/RAX or the destination), ZF = 0, AF = 0, PF from that half's low byte.
//   DIV/IDIV: the status flags are unchanged.
#include <type_traits>

#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

using namespace arch::rflags;

// The signed 2N-byte product of two N-byte operands, split into halves (zero-extended).
template <bool Signed, unsigned N>
inline void mul_wide(uint64_t a, uint64_t b, uint64_t& lo, uint64_t& hi) {
  if constexpr (N == 8) {
    unsigned __int128 p;
    if (Signed) p = static_cast<unsigned __int128>(__int128(int64_t(a)) * __int128(int64_t(b)));
    else p = static_cast<unsigned __int128>(a) * b;
    lo = uint64_t(p);
    hi = uint64_t(p >> 64);
  } else {
    const uint64_t p = Signed ? uint64_t(sign_extend(a, N) * sign_extend(b, N))
                              : (a & size_mask(N)) * (b & size_mask(N));
    lo = p & size_mask(N);
    hi = (p >> (4 * N) >> (4 * N)) & size_mask(N);  // two shifts: 8 * N may be 64
  }
}

// CF = OF = whether the high half carries information: unsigned, not zero; signed, not the
// sign extension of the low half. SF ZF AF PF: see the file comment.
template <bool Signed, unsigned N>
inline void mul_flags(Cpu& c, uint64_t lo, uint64_t hi) {
  const bool wide = Signed ? hi != (lo & sign_bit(N) ? size_mask(N) : 0) : hi != 0;
  c.set_status_flags((wide ? kCF | kOF : 0) | (lo & sign_bit(N) ? kSF : 0) |
                     (__builtin_parity(unsigned(lo & 0xff)) ? 0 : kPF));
}

template <unsigned N>
inline Status read_src(Cpu& c, const Insn& i, bool mem, uint64_t& v) {
  if (mem) return read_mem<N>(c, i, v);
  v = get_reg<N>(c, i.rm);
  return Status::kNext;
}

// MUL/IMUL r/m: AX = AL * src, DX:AX, EDX:EAX or RDX:RAX = rAX * src.
template <bool Signed, bool Mem>
struct MulA {
  template <unsigned N> struct H {
    static Status run(Cpu& c, const Insn& i) {
      uint64_t src;
      const Status st = read_src<N>(c, i, Mem, src);
      if (st != Status::kNext) return st;
      uint64_t lo, hi;
      mul_wide<Signed, N>(get_reg<N>(c, kRax), src, lo, hi);
      if (N == 1) {
        set_reg<2>(c, kRax, (hi << 8) | lo);
      } else {
        set_reg<N>(c, kRax, lo);
        set_reg<N>(c, kRdx, hi);
      }
      mul_flags<Signed, N>(c, lo, hi);
      return Status::kNext;
    }
  };
};

// IMUL r, r/m (two operands) and IMUL r, r/m, imm (three): the product truncated to N bytes.
template <bool Mem, bool Imm>
struct ImulR {
  template <unsigned N> struct H {
    static Status run(Cpu& c, const Insn& i) {
      uint64_t src;
      const Status st = read_src<N>(c, i, Mem, src);
      if (st != Status::kNext) return st;
      uint64_t lo, hi;
      mul_wide<true, N>(Imm ? i.imm : get_reg<N>(c, i.reg), src, lo, hi);
      set_reg<N>(c, i.reg, lo);
      mul_flags<true, N>(c, lo, hi);
      return Status::kNext;
    }
  };
};

// DIV/IDIV r/m: rDX:rAX (AX for bytes) divided by src; quotient to rAX (AL), remainder to
// rDX (AH). #DE if the divisor is 0 or the quotient does not fit in N bytes (SDM Vol. 2 DIV,
// IDIV: "If the quotient is too large for the designated register, #DE"), including the most
// negative dividend divided by -1.
template <bool Signed, bool Mem>
struct Div {
  template <unsigned N> struct H {
    static Status run(Cpu& c, const Insn& i) {
      uint64_t src;
      const Status st = read_src<N>(c, i, Mem, src);
      if (st != Status::kNext) return st;
      if (src == 0) return c.fault(arch::Vector::kDE);
      const uint64_t lo = N == 1 ? c.state.gpr[kRax] & 0xff : get_reg<N>(c, kRax);
      const uint64_t hi = N == 1 ? (c.state.gpr[kRax] >> 8) & 0xff : get_reg<N>(c, kRdx);
      uint64_t q, r;
      if (!Signed) {
        if (hi >= src) return c.fault(arch::Vector::kDE);  // the quotient needs more than N bytes
        if constexpr (N == 8) {
          const unsigned __int128 n = (static_cast<unsigned __int128>(hi) << 64) | lo;
          q = uint64_t(n / src);
          r = uint64_t(n % src);
        } else {
          const uint64_t n = (hi << (8 * N)) | lo;
          q = n / src;
          r = n % src;
        }
      } else {
        // The dividend as a signed 2N-byte value; the quotient must fit in N signed bytes.
        using W = std::conditional_t<N == 8, __int128, int64_t>;
        const W n = N == 8 ? W(static_cast<__int128>((static_cast<unsigned __int128>(hi) << 64) | lo))
                           : W(sign_extend((hi << (4 * N) << (4 * N)) | lo, 2 * N));
        const W d = W(sign_extend(src, N));
        const W min = -(W(1) << (8 * N - 1)), max = (W(1) << (8 * N - 1)) - 1;
        W nq;
        if (d == -1) {
          // Negating the most negative dividend would overflow the host type: check first.
          if (n < -max || n > -min) return c.fault(arch::Vector::kDE);
          nq = -n;
        } else {
          nq = n / d;
          if (nq < min || nq > max) return c.fault(arch::Vector::kDE);
        }
        q = uint64_t(nq) & size_mask(N);
        r = uint64_t(d == -1 ? 0 : n % d) & size_mask(N);
      }
      if (N == 1) {
        set_reg<2>(c, kRax, (r << 8) | q);
      } else {
        set_reg<N>(c, kRax, q);
        set_reg<N>(c, kRdx, r);
      }
      return Status::kNext;
    }
  };
};

template <bool Signed>
Handler select_mul_a(const DecodeInput& in, Insn& i) {
  const ZydisDecodedOperand& s = in.ops[0];
  const unsigned n = s.size / 8;
  if (is_reg(s)) {
    i.rm = reg_operand(s);
    return sized<MulA<Signed, false>::template H>(n);
  }
  return sized<MulA<Signed, true>::template H>(n);
}

Handler select_mul(const DecodeInput& in, Insn& i) { return select_mul_a<false>(in, i); }

Handler select_imul(const DecodeInput& in, Insn& i) {
  if (in.visible() == 1) return select_mul_a<true>(in, i);
  // IMUL r, r/m [, imm]: no byte form.
  const ZydisDecodedOperand& s = in.ops[1];
  const unsigned n = in.ops[0].size / 8;
  i.reg = reg_operand(in.ops[0]);
  const bool imm = in.visible() == 3;
  if (is_reg(s)) {
    i.rm = reg_operand(s);
    return imm ? sized_wdq<ImulR<false, true>::template H>(n) : sized_wdq<ImulR<false, false>::template H>(n);
  }
  return imm ? sized_wdq<ImulR<true, true>::template H>(n) : sized_wdq<ImulR<true, false>::template H>(n);
}

template <bool Signed>
Handler select_div(const DecodeInput& in, Insn& i) {
  const ZydisDecodedOperand& s = in.ops[0];
  const unsigned n = s.size / 8;
  if (is_reg(s)) {
    i.rm = reg_operand(s);
    return sized<Div<Signed, false>::template H>(n);
  }
  return sized<Div<Signed, true>::template H>(n);
}

}  // namespace

void register_muldiv(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_MUL, &select_mul);
  t.add(ZYDIS_MNEMONIC_IMUL, &select_imul);
  t.add(ZYDIS_MNEMONIC_DIV, &select_div<false>);
  t.add(ZYDIS_MNEMONIC_IDIV, &select_div<true>);
}

}  // namespace nestvm::cpu
