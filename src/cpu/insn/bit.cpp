// Instruction class: bit test and scan. BT BTS BTR BTC, BSF BSR, POPCNT LZCNT TZCNT (SDM Vol. 2).
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

using namespace arch::rflags;

// ---- BT BTS BTR BTC ------------------------------------------------------------------------
// CF = the selected bit; ZF unchanged; OF SF AF PF undefined: unchanged, as on Intel.

enum class BtOp : uint8_t { kBt, kBts, kBtr, kBtc };

template <BtOp Op>
constexpr uint64_t apply(uint64_t v, uint64_t mask) {
  switch (Op) {
    case BtOp::kBt: return v;
    case BtOp::kBts: return v | mask;
    case BtOp::kBtr: return v & ~mask;
    case BtOp::kBtc: return v ^ mask;
  }
  return v;
}

inline void set_cf(Cpu& c, bool cf) { c.set_status_flags((c.rflags() & ~kCF) | (cf ? kCF : 0)); }

// Register bit base: the offset (register or imm8) is taken modulo the operand size.
template <BtOp Op, bool Imm>
struct BtR {
  template <unsigned N> struct H {
    static Status run(Cpu& c, const Insn& i) {
      const unsigned bit = unsigned(Imm ? i.imm : get_reg<N>(c, i.reg)) & (8 * N - 1);
      const uint64_t v = get_reg<N>(c, i.rm);
      if (Op != BtOp::kBt) set_reg<N>(c, i.rm, apply<Op>(v, 1ull << bit));
      set_cf(c, (v >> bit) & 1);
      return Status::kNext;
    }
  };
};

// Memory bit base. With an immediate the offset is taken modulo the operand size; with a
// register it is a signed offset into a bit string that starts at bit 0 of the addressed
// byte, and the operand-sized word holding the bit is accessed (SDM Vol. 2 BT: "Effective
// Address + (N * (BitOffset DIV (8 * N)))").
template <BtOp Op, bool Imm>
struct BtM {
  template <unsigned N> struct H {
    static Status run(Cpu& c, const Insn& i) {
      using T = uint_t<N>;
      constexpr unsigned kShift = N == 2 ? 4 : N == 4 ? 5 : 6;
      uint64_t ea = c.effective_address(i);
      unsigned bit;
      if (Imm) {
        bit = unsigned(i.imm) & (8 * N - 1);
      } else {
        const int64_t off = sign_extend(get_reg<N>(c, i.reg), N);
        bit = unsigned(off) & (8 * N - 1);
        ea = (ea + uint64_t(off >> kShift) * N) & size_mask(i.asz);
      }
      const T mask = T(T(1) << bit);
      if (Op == BtOp::kBt) {
        T v;
        const Status st = c.read<T>(seg_of(i), ea, v);
        if (st != Status::kNext) return st;
        set_cf(c, v & mask);
        return Status::kNext;
      }
      Cpu::RmwRef<T> ref;
      const Status st = c.rmw_ref<T>(seg_of(i), ea, ref);
      if (st != Status::kNext) return st;
      const T old = rmw(c, i, ref, [mask](T v) { return T(apply<Op>(v, mask)); });
      set_cf(c, old & mask);
      return Status::kNext;
    }
  };
};

template <BtOp Op>
Handler select_bt(const DecodeInput& in, Insn& i) {
  const ZydisDecodedOperand& d = in.ops[0];
  const ZydisDecodedOperand& s = in.ops[1];
  const unsigned n = d.size / 8;
  const bool imm = is_imm(s);
  if (!imm) i.reg = reg_operand(s);
  if (is_reg(d)) {
    i.rm = reg_operand(d);
    return imm ? sized_wdq<BtR<Op, true>::template H>(n) : sized_wdq<BtR<Op, false>::template H>(n);
  }
  return imm ? sized_wdq<BtM<Op, true>::template H>(n) : sized_wdq<BtM<Op, false>::template H>(n);
}

// ---- BSF BSR POPCNT LZCNT TZCNT --------------------------------------------------------------

enum class ScanOp : uint8_t { kBsf, kBsr, kPopcnt, kLzcnt, kTzcnt };

// Computes the result for a non-zero-extended N-byte source; writes the destination unless
// BSF/BSR find no bit; sets the flags.
template <ScanOp Op, unsigned N>
inline void scan(Cpu& c, uint8_t dst, uint64_t v) {
  constexpr unsigned kBits = 8 * N;
  switch (Op) {
    case ScanOp::kBsf:
    case ScanOp::kBsr: {
      // SDM BSF/BSR: source 0 sets ZF and leaves the destination unchanged (Intel: not even
      // the upper half of a 64-bit register is cleared). CF OF SF AF PF are undefined: Intel
      // clears CF OF SF AF and sets PF from the bit index (0 for a zero source).
      if (v == 0) {
        c.set_status_flags(kZF | kPF);
        return;
      }
      const uint64_t r = Op == ScanOp::kBsf ? __builtin_ctzll(v) : 63 - __builtin_clzll(v);
      set_reg<N>(c, dst, r);
      c.set_status_flags(__builtin_parity(unsigned(r)) ? 0 : kPF);
      return;
    }
    case ScanOp::kPopcnt: {
      // SDM POPCNT: OF SF ZF AF CF PF cleared, then ZF = (source = 0).
      set_reg<N>(c, dst, __builtin_popcountll(v));
      c.set_status_flags(v == 0 ? kZF : 0);
      return;
    }
    case ScanOp::kLzcnt:
    case ScanOp::kTzcnt: {
      // SDM LZCNT/TZCNT: CF = (source = 0), ZF = (result = 0); OF SF AF PF undefined (Intel: 0).
      const uint64_t r = v == 0 ? kBits
                       : Op == ScanOp::kLzcnt ? __builtin_clzll(v) - (64 - kBits) : __builtin_ctzll(v);
      set_reg<N>(c, dst, r);
      c.set_status_flags((v == 0 ? kCF : 0) | (r == 0 ? kZF : 0));
      return;
    }
  }
}

template <ScanOp Op, bool Mem>
struct Scan {
  template <unsigned N> struct H {
    static Status run(Cpu& c, const Insn& i) {
      uint64_t v;
      if (Mem) {
        const Status st = read_mem<N>(c, i, v);
        if (st != Status::kNext) return st;
      } else {
        v = get_reg<N>(c, i.rm);
      }
      scan<Op, N>(c, i.reg, v);
      return Status::kNext;
    }
  };
};

template <ScanOp Op>
Handler select_scan(const DecodeInput& in, Insn& i) {
  // Optional forms raise #UD on models without them (SDM Vol. 2: POPCNT needs CPUID.01H:ECX
  // .POPCNT, LZCNT CPUID.80000001H:ECX.ABM, TZCNT CPUID.07H:EBX.BMI1).
  if (Op == ScanOp::kPopcnt && !in.model.has(Feature::kPopcnt)) return nullptr;
  if (Op == ScanOp::kLzcnt && !in.model.has(Feature::kAbm)) return nullptr;
  if (Op == ScanOp::kTzcnt && !in.model.has(Feature::kBmi1)) return nullptr;
  const ZydisDecodedOperand& s = in.ops[1];
  const unsigned n = in.ops[0].size / 8;
  i.reg = reg_operand(in.ops[0]);
  if (is_reg(s)) {
    i.rm = reg_operand(s);
    return sized_wdq<Scan<Op, false>::template H>(n);
  }
  return sized_wdq<Scan<Op, true>::template H>(n);
}

}  // namespace

void register_bit(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_BT, &select_bt<BtOp::kBt>);
  t.add(ZYDIS_MNEMONIC_BTS, &select_bt<BtOp::kBts>);
  t.add(ZYDIS_MNEMONIC_BTR, &select_bt<BtOp::kBtr>);
  t.add(ZYDIS_MNEMONIC_BTC, &select_bt<BtOp::kBtc>);
  t.add(ZYDIS_MNEMONIC_BSF, &select_scan<ScanOp::kBsf>);
  t.add(ZYDIS_MNEMONIC_BSR, &select_scan<ScanOp::kBsr>);
  t.add(ZYDIS_MNEMONIC_POPCNT, &select_scan<ScanOp::kPopcnt>);
  t.add(ZYDIS_MNEMONIC_LZCNT, &select_scan<ScanOp::kLzcnt>);
  t.add(ZYDIS_MNEMONIC_TZCNT, &select_scan<ScanOp::kTzcnt>);
}

}  // namespace nestvm::cpu
