// Instruction class: bit manipulation. BMI1 (ANDN BEXTR BLSI BLSMSK BLSR), BMI2 (BZHI MULX
// PDEP PEXT RORX SARX SHLX SHRX) and ADX (ADCX ADOX) (SDM Vol. 2). All but ADCX/ADOX are
// VEX-encoded with 32- or 64-bit operands; Zydis lists every register operand, VEX.vvvv
// included, in ops[].
//
// Operand fields: Insn::reg = the first (ModRM.reg) operand, Insn::rm = the r/m register when
// it is not memory, Insn::aux = the VEX.vvvv register.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

using namespace arch::rflags;

enum class BmiOp : uint8_t {
  kAndn, kBextr, kBlsi, kBlsmsk, kBlsr,                // BMI1
  kBzhi, kMulx, kPdep, kPext, kRorx, kSarx, kShlx, kShrx,  // BMI2
  kAdcx, kAdox,                                          // ADX
};

template <unsigned N>
inline uint64_t zf_sf(uint64_t r) {
  return (r == 0 ? kZF : 0) | (r & sign_bit(N) ? kSF : 0);
}

inline uint64_t pdep(uint64_t src, uint64_t mask) {
  uint64_t r = 0;
  for (uint64_t bit = 1; mask; bit <<= 1) {
    const uint64_t low = mask & -mask;  // lowest remaining mask bit receives the next source bit
    if (src & bit) r |= low;
    mask ^= low;
  }
  return r;
}

inline uint64_t pext(uint64_t src, uint64_t mask) {
  uint64_t r = 0;
  for (uint64_t bit = 1; mask; bit <<= 1) {
    const uint64_t low = mask & -mask;
    if (src & low) r |= bit;
    mask ^= low;
  }
  return r;
}

// `rm` is the r/m operand's value (register or memory), `v` the VEX.vvvv register's. Writes
// the destination Insn::reg (and for MULX, Insn::aux) and the flags.
template <BmiOp Op, unsigned N>
inline void bmi(Cpu& c, const Insn& i, uint64_t rm) {
  constexpr unsigned kBits = 8 * N;
  const uint64_t mask = size_mask(N);
  const uint64_t v = get_reg<N>(c, i.aux);
  uint64_t r = 0;
  switch (Op) {
    case BmiOp::kAndn:
      // SDM ANDN: SF ZF from the result, OF CF cleared; AF PF undefined (Intel: 0).
      r = ~v & rm & mask;
      c.set_status_flags(zf_sf<N>(r));
      break;
    case BmiOp::kBextr: {
      // SDM BEXTR: START = SRC2[7:0], LEN = SRC2[15:8], bits past the operand read as 0.
      // ZF from the result, CF OF cleared; AF SF PF undefined (Intel: 0).
      const unsigned start = v & 0xff, len = (v >> 8) & 0xff;
      r = start >= kBits ? 0 : rm >> start;
      if (len < kBits) r &= (1ull << len) - 1;
      c.set_status_flags(r == 0 ? kZF : 0);
      break;
    }
    case BmiOp::kBlsi:
      // SDM BLSI: ZF SF from the result, CF = (source != 0), OF cleared; AF PF undefined (0).
      r = (0 - rm) & rm & mask;
      c.set_status_flags(zf_sf<N>(r) | (rm != 0 ? kCF : 0));
      break;
    case BmiOp::kBlsmsk:
      // SDM BLSMSK: SF from the result, ZF and OF cleared, CF = (source = 0); AF PF undefined (0).
      r = ((rm - 1) ^ rm) & mask;
      c.set_status_flags((r & sign_bit(N) ? kSF : 0) | (rm == 0 ? kCF : 0));
      break;
    case BmiOp::kBlsr:
      // SDM BLSR: ZF SF from the result, CF = (source = 0), OF cleared; AF PF undefined (0).
      r = (rm - 1) & rm & mask;
      c.set_status_flags(zf_sf<N>(r) | (rm == 0 ? kCF : 0));
      break;
    case BmiOp::kBzhi: {
      // SDM BZHI: N = SRC2[7:0]; bits N and up cleared when N < size; CF = (N > size - 1).
      // ZF SF from the result, OF cleared; AF PF undefined (0).
      const unsigned n = v & 0xff;
      r = n < kBits ? rm & ((1ull << n) - 1) : rm;
      c.set_status_flags(zf_sf<N>(r) | (n > kBits - 1 ? kCF : 0));
      break;
    }
    case BmiOp::kMulx: {
      // SDM MULX: unsigned rDX * r/m, no flags; the low half goes to the VEX.vvvv register
      // first, then the high half to ModRM.reg (which wins if they are the same register).
      uint64_t lo, hi;
      if constexpr (N == 8) {
        const unsigned __int128 p = static_cast<unsigned __int128>(c.state.gpr[kRdx]) * rm;
        lo = uint64_t(p);
        hi = uint64_t(p >> 64);
      } else {
        const uint64_t p = (c.state.gpr[kRdx] & mask) * rm;
        lo = p & mask;
        hi = p >> 32;
      }
      set_reg<N>(c, i.aux, lo);
      r = hi;
      break;
    }
    case BmiOp::kPdep: r = pdep(v, rm); break;  // no flags
    case BmiOp::kPext: r = pext(v, rm); break;
    case BmiOp::kRorx: {
      const unsigned k = unsigned(i.imm) & (kBits - 1);
      r = k ? ((rm >> k) | (rm << (kBits - k))) & mask : rm;
      break;
    }
    case BmiOp::kSarx: r = uint64_t(sign_extend(rm, N) >> (v & (kBits - 1))) & mask; break;
    case BmiOp::kShlx: r = (rm << (v & (kBits - 1))) & mask; break;
    case BmiOp::kShrx: r = rm >> (v & (kBits - 1)); break;
    case BmiOp::kAdcx:
    case BmiOp::kAdox: {
      // SDM ADCX/ADOX: an unsigned add with carry through CF (ADCX) or OF (ADOX) only; the
      // other flags are unchanged.
      const uint64_t flag = Op == BmiOp::kAdcx ? kCF : kOF;
      const uint64_t f = c.rflags();
      const uint64_t a = get_reg<N>(c, i.reg);
      const uint64_t cin = (f & flag) ? 1 : 0;
      r = (a + rm + cin) & mask;
      const bool cout = cin ? r <= a : r < a;
      c.set_status_flags((f & ~flag) | (cout ? flag : 0));
      break;
    }
  }
  set_reg<N>(c, i.reg, r);
}

template <BmiOp Op, bool Mem>
struct Bmi {
  template <unsigned N> struct H {
    static Status run(Cpu& c, const Insn& i) {
      uint64_t rm;
      if (Mem) {
        const Status st = read_mem<N>(c, i, rm);
        if (st != Status::kNext) return st;
      } else {
        rm = get_reg<N>(c, i.rm);
      }
      bmi<Op, N>(c, i, rm);
      return Status::kNext;
    }
  };
  // SDM Vol. 2 §2.5: VEX-encoded GPR instructions are not supported in real and virtual-8086
  // mode. Zydis rejects VEX in real mode; virtual-8086 code decodes as 16-bit protected mode
  // code does, so 16-bit code checks at run time.
  template <unsigned N> struct NotV86 {
    static Status run(Cpu& c, const Insn& i) {
      if (c.v86_mode()) return c.fault(arch::Vector::kUD);
      return H<N>::run(c, i);
    }
  };
  static Handler sized(unsigned n, bool check_v86) {
    if (check_v86) return n == 8 ? &NotV86<8>::run : &NotV86<4>::run;
    return n == 8 ? &H<8>::run : &H<4>::run;
  }
};

constexpr Feature feature_of(BmiOp op) {
  return op <= BmiOp::kBlsr ? Feature::kBmi1 : op <= BmiOp::kShrx ? Feature::kBmi2 : Feature::kAdx;
}

// Which ops[] entry is the r/m operand and which is VEX.vvvv (SDM Vol. 2 operand encoding tables).
struct Layout { uint8_t rm; uint8_t vvvv; };
constexpr Layout layout_of(BmiOp op) {
  switch (op) {
    case BmiOp::kAndn: case BmiOp::kPdep: case BmiOp::kPext: return {2, 1};  // VEX: r, vvvv, r/m
    case BmiOp::kBlsi: case BmiOp::kBlsmsk: case BmiOp::kBlsr: return {1, 0};  // vvvv, r/m
    case BmiOp::kMulx: return {2, 1};                                             // r (hi), vvvv (lo), r/m
    case BmiOp::kRorx: case BmiOp::kAdcx: case BmiOp::kAdox: return {1, 0xff};   // r, r/m (no vvvv)
    default: return {1, 2};                                                       // r, r/m, vvvv
  }
}

template <BmiOp Op>
Handler select_bmi(const DecodeInput& in, Insn& i) {
  if (!in.model.has(feature_of(Op))) return nullptr;
  constexpr Layout l = layout_of(Op);
  const ZydisDecodedOperand& rm = in.ops[l.rm];
  i.reg = reg_operand(in.ops[0]);  // the destination (VEX.vvvv for BLSI BLSMSK BLSR)
  if (l.vvvv != 0xff) i.aux = reg_operand(in.ops[l.vvvv]);
  const unsigned n = in.ops[0].size / 8;
  const bool check_v86 = in.zi.encoding == ZYDIS_INSTRUCTION_ENCODING_VEX && in.mode == ZYDIS_MACHINE_MODE_LEGACY_16;
  if (is_reg(rm)) {
    i.rm = reg_operand(rm);
    return Bmi<Op, false>::sized(n, check_v86);
  }
  return Bmi<Op, true>::sized(n, check_v86);
}

}  // namespace

void register_bmi(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_ANDN, &select_bmi<BmiOp::kAndn>);
  t.add(ZYDIS_MNEMONIC_BEXTR, &select_bmi<BmiOp::kBextr>);
  t.add(ZYDIS_MNEMONIC_BLSI, &select_bmi<BmiOp::kBlsi>);
  t.add(ZYDIS_MNEMONIC_BLSMSK, &select_bmi<BmiOp::kBlsmsk>);
  t.add(ZYDIS_MNEMONIC_BLSR, &select_bmi<BmiOp::kBlsr>);
  t.add(ZYDIS_MNEMONIC_BZHI, &select_bmi<BmiOp::kBzhi>);
  t.add(ZYDIS_MNEMONIC_MULX, &select_bmi<BmiOp::kMulx>);
  t.add(ZYDIS_MNEMONIC_PDEP, &select_bmi<BmiOp::kPdep>);
  t.add(ZYDIS_MNEMONIC_PEXT, &select_bmi<BmiOp::kPext>);
  t.add(ZYDIS_MNEMONIC_RORX, &select_bmi<BmiOp::kRorx>);
  t.add(ZYDIS_MNEMONIC_SARX, &select_bmi<BmiOp::kSarx>);
  t.add(ZYDIS_MNEMONIC_SHLX, &select_bmi<BmiOp::kShlx>);
  t.add(ZYDIS_MNEMONIC_SHRX, &select_bmi<BmiOp::kShrx>);
  t.add(ZYDIS_MNEMONIC_ADCX, &select_bmi<BmiOp::kAdcx>);
  t.add(ZYDIS_MNEMONIC_ADOX, &select_bmi<BmiOp::kAdox>);
}

}  // namespace nestvm::cpu
