// Instruction class: integer arithmetic and logic. ADD OR ADC SBB AND SUB XOR CMP TEST,
// INC DEC NEG NOT (SDM Vol. 2, each instruction's "Operation" and "Flags Affected").
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

std::mutex& split_lock_mutex() {
  static std::mutex m;
  return m;
}

namespace {

enum class AluOp : uint8_t { kAdd, kOr, kAdc, kSbb, kAnd, kSub, kXor, kCmp, kTest };

constexpr bool writes_result(AluOp op) { return op != AluOp::kCmp && op != AluOp::kTest; }

// Computes op(a, b) on N bytes and records the flags. `carry` is CF before the instruction.
template <AluOp Op, unsigned N>
inline uint64_t compute(Cpu& c, uint64_t a, uint64_t b, bool carry) {
  using T = uint_t<N>;
  const T x = T(a), y = T(b);
  T r;
  switch (Op) {
    case AluOp::kAdd: r = T(x + y); c.set_lazy(FlagOp::kAdd, N, r, x, y); break;
    case AluOp::kAdc: r = T(x + y + carry); c.set_lazy(FlagOp::kAdc, N, r, x, y, carry); break;
    case AluOp::kSub: case AluOp::kCmp: r = T(x - y); c.set_lazy(FlagOp::kSub, N, r, x, y); break;
    case AluOp::kSbb: r = T(x - y - carry); c.set_lazy(FlagOp::kSbb, N, r, x, y, carry); break;
    case AluOp::kAnd: case AluOp::kTest: r = T(x & y); c.set_lazy(FlagOp::kLogic, N, r, 0, 0); break;
    case AluOp::kOr: r = T(x | y); c.set_lazy(FlagOp::kLogic, N, r, 0, 0); break;
    case AluOp::kXor: r = T(x ^ y); c.set_lazy(FlagOp::kLogic, N, r, 0, 0); break;
  }
  return r;
}

template <AluOp Op>
constexpr bool needs_carry() { return Op == AluOp::kAdc || Op == AluOp::kSbb; }

template <AluOp Op>
struct Alu {
  // reg op= reg   (destination in Insn::reg, source in Insn::rm)
  template <unsigned N> struct RR {
    static Status run(Cpu& c, const Insn& i) {
      const uint64_t r = compute<Op, N>(c, get_reg<N>(c, i.reg), get_reg<N>(c, i.rm), needs_carry<Op>() && c.cf());
      if (writes_result(Op)) set_reg<N>(c, i.reg, r);
      return Status::kNext;
    }
  };
  // reg op= [mem]
  template <unsigned N> struct RM {
    static Status run(Cpu& c, const Insn& i) {
      uint64_t m;
      const Status st = read_mem<N>(c, i, m);
      if (st != Status::kNext) return st;
      const uint64_t r = compute<Op, N>(c, get_reg<N>(c, i.reg), m, needs_carry<Op>() && c.cf());
      if (writes_result(Op)) set_reg<N>(c, i.reg, r);
      return Status::kNext;
    }
  };
  // reg op= imm
  template <unsigned N> struct RI {
    static Status run(Cpu& c, const Insn& i) {
      const uint64_t r = compute<Op, N>(c, get_reg<N>(c, i.reg), i.imm, needs_carry<Op>() && c.cf());
      if (writes_result(Op)) set_reg<N>(c, i.reg, r);
      return Status::kNext;
    }
  };
  // [mem] op= src, src a register (Insn::rm) or an immediate
  template <unsigned N, bool Imm> struct MX {
    static Status run(Cpu& c, const Insn& i) {
      using T = uint_t<N>;
      const uint64_t src = Imm ? i.imm : get_reg<N>(c, i.rm);
      const bool carry = needs_carry<Op>() && c.cf();
      if (!writes_result(Op)) {
        uint64_t m;
        const Status st = read_mem<N>(c, i, m);
        if (st != Status::kNext) return st;
        compute<Op, N>(c, m, src, carry);
        return Status::kNext;
      }
      Cpu::RmwRef<T> ref;
      const Status st = c.rmw_ref<T>(seg_of(i), c.effective_address(i), ref);
      if (st != Status::kNext) return st;
      const T old = rmw(c, i, ref, [&](T v) { return T(compute<Op, N>(c, v, src, carry)); });
      compute<Op, N>(c, old, src, carry);  // flags from the value the operation really used
      return Status::kNext;
    }
  };
  template <unsigned N> using MR = MX<N, false>;
  template <unsigned N> using MI = MX<N, true>;

  static Handler select(const DecodeInput& in, Insn& i) {
    const ZydisDecodedOperand& d = in.ops[0];
    const ZydisDecodedOperand& s = in.ops[1];
    const unsigned n = d.size / 8;
    if (is_reg(d)) {
      i.reg = reg_operand(d);
      if (is_reg(s)) { i.rm = reg_operand(s); return sized<RR>(n); }
      if (is_mem(s)) return sized<RM>(n);
      if (is_imm(s)) return sized<RI>(n);
    } else if (is_mem(d)) {
      if (is_reg(s)) { i.rm = reg_operand(s); return sized<MR>(n); }
      if (is_imm(s)) return sized<MI>(n);
    }
    return nullptr;
  }
};

enum class UnOp : uint8_t { kInc, kDec, kNeg, kNot };

template <UnOp Op, unsigned N>
inline uint64_t unary(Cpu& c, uint64_t a, bool carry) {
  using T = uint_t<N>;
  const T x = T(a);
  T r;
  switch (Op) {
    case UnOp::kInc: r = T(x + 1); c.set_lazy(FlagOp::kInc, N, r, x, 1, carry); break;
    case UnOp::kDec: r = T(x - 1); c.set_lazy(FlagOp::kDec, N, r, x, 1, carry); break;
    case UnOp::kNeg: r = T(T(0) - x); c.set_lazy(FlagOp::kNeg, N, r, 0, x); break;
    case UnOp::kNot: r = T(~x); break;  // NOT affects no flags
  }
  return r;
}

template <UnOp Op>
constexpr bool keeps_cf() { return Op == UnOp::kInc || Op == UnOp::kDec; }

template <UnOp Op>
struct Unary {
  template <unsigned N> struct R {
    static Status run(Cpu& c, const Insn& i) {
      set_reg<N>(c, i.reg, unary<Op, N>(c, get_reg<N>(c, i.reg), keeps_cf<Op>() && c.cf()));
      return Status::kNext;
    }
  };
  template <unsigned N> struct M {
    static Status run(Cpu& c, const Insn& i) {
      using T = uint_t<N>;
      Cpu::RmwRef<T> ref;
      const Status st = c.rmw_ref<T>(seg_of(i), c.effective_address(i), ref);
      if (st != Status::kNext) return st;
      const bool carry = keeps_cf<Op>() && c.cf();
      const T old = rmw(c, i, ref, [&](T v) { return T(unary<Op, N>(c, v, carry)); });
      unary<Op, N>(c, old, carry);
      return Status::kNext;
    }
  };
  static Handler select(const DecodeInput& in, Insn& i) {
    const ZydisDecodedOperand& d = in.ops[0];
    const unsigned n = d.size / 8;
    if (is_reg(d)) { i.reg = reg_operand(d); return sized<R>(n); }
    if (is_mem(d)) return sized<M>(n);
    return nullptr;
  }
};

}  // namespace

void register_alu(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_ADD, &Alu<AluOp::kAdd>::select);
  t.add(ZYDIS_MNEMONIC_OR, &Alu<AluOp::kOr>::select);
  t.add(ZYDIS_MNEMONIC_ADC, &Alu<AluOp::kAdc>::select);
  t.add(ZYDIS_MNEMONIC_SBB, &Alu<AluOp::kSbb>::select);
  t.add(ZYDIS_MNEMONIC_AND, &Alu<AluOp::kAnd>::select);
  t.add(ZYDIS_MNEMONIC_SUB, &Alu<AluOp::kSub>::select);
  t.add(ZYDIS_MNEMONIC_XOR, &Alu<AluOp::kXor>::select);
  t.add(ZYDIS_MNEMONIC_CMP, &Alu<AluOp::kCmp>::select);
  t.add(ZYDIS_MNEMONIC_TEST, &Alu<AluOp::kTest>::select);
  t.add(ZYDIS_MNEMONIC_INC, &Unary<UnOp::kInc>::select);
  t.add(ZYDIS_MNEMONIC_DEC, &Unary<UnOp::kDec>::select);
  t.add(ZYDIS_MNEMONIC_NEG, &Unary<UnOp::kNeg>::select);
  t.add(ZYDIS_MNEMONIC_NOT, &Unary<UnOp::kNot>::select);
}

}  // namespace nestvm::cpu
