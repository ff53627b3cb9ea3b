// Instruction class: near control transfers. JMP, Jcc, JCXZ/JECXZ/JRCXZ, LOOP/LOOPE/LOOPNE,
// CALL and RET (near forms; far forms are in far.cpp).
#include "cpu/insn/delegates.h"
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

// Jumps to `target` (already truncated to the operand size) or raises #GP(0).
inline Status go(Cpu& c, uint64_t target) {
  if (!c.near_target_ok(target)) return c.fault(arch::Vector::kGP, 0);
  c.state.rip = target;
  return Status::kJumped;
}

template <unsigned N> struct JmpRel {
  static Status run(Cpu& c, const Insn& i) { return go(c, (c.state.rip + i.len + i.imm) & size_mask(N)); }
};
template <unsigned N> struct Jcc {
  static Status run(Cpu& c, const Insn& i) {
    if (!c.condition(i.cond)) return Status::kNext;
    return go(c, (c.state.rip + i.len + i.imm) & size_mask(N));
  }
};
template <unsigned N> struct JmpReg {
  static Status run(Cpu& c, const Insn& i) { return go(c, get_reg<N>(c, i.rm)); }
};
template <unsigned N> struct JmpMem {
  static Status run(Cpu& c, const Insn& i) {
    uint64_t t;
    const Status st = read_mem<N>(c, i, t);
    return st == Status::kNext ? go(c, t) : st;
  }
};

// JCXZ family and LOOP family: the counter is CX, ECX or RCX by address size.
template <unsigned N> struct Jrcxz {
  static Status run(Cpu& c, const Insn& i) {
    if (c.state.gpr[kRcx] & size_mask(i.asz)) return Status::kNext;
    return go(c, (c.state.rip + i.len + i.imm) & size_mask(N));
  }
};
// Kind: 0 = LOOP, 1 = LOOPE, 2 = LOOPNE.
template <unsigned N, int Kind> struct Loop {
  static Status run(Cpu& c, const Insn& i) {
    const uint64_t count = (c.state.gpr[kRcx] - 1) & size_mask(i.asz);
    const uint64_t target = (c.state.rip + i.len + i.imm) & size_mask(N);
    bool take = count != 0;
    if (Kind == 1) take = take && c.condition(4);   // ZF = 1
    if (Kind == 2) take = take && c.condition(5);   // ZF = 0
    if (take && !c.near_target_ok(target)) return c.fault(arch::Vector::kGP, 0);
    c.set_reg(i.asz, kRcx, count);
    if (!take) return Status::kNext;
    c.state.rip = target;
    return Status::kJumped;
  }
};
template <unsigned N> using LoopPlain = Loop<N, 0>;
template <unsigned N> using LoopE = Loop<N, 1>;
template <unsigned N> using LoopNe = Loop<N, 2>;

// CALL: the return address is pushed before RIP changes; the target is checked first.
template <unsigned N> inline Status call_to(Cpu& c, const Insn& i, uint64_t target) {
  if (!c.near_target_ok(target)) return c.fault(arch::Vector::kGP, 0);
  const Status st = c.push<uint_t<N>>(uint_t<N>(c.state.rip + i.len));
  if (st != Status::kNext) return st;
  c.state.rip = target;
  return Status::kJumped;
}
template <unsigned N> struct CallRel {
  static Status run(Cpu& c, const Insn& i) { return call_to<N>(c, i, (c.state.rip + i.len + i.imm) & size_mask(N)); }
};
template <unsigned N> struct CallReg {
  static Status run(Cpu& c, const Insn& i) { return call_to<N>(c, i, get_reg<N>(c, i.rm)); }
};
template <unsigned N> struct CallMem {
  static Status run(Cpu& c, const Insn& i) {
    uint64_t t;
    const Status st = read_mem<N>(c, i, t);
    return st == Status::kNext ? call_to<N>(c, i, t) : st;
  }
};

// RET imm16: pop the return address, then release imm16 bytes.
template <unsigned N> struct Ret {
  static Status run(Cpu& c, const Insn& i) {
    uint_t<N> t;
    const Status st = c.read_stack<uint_t<N>>(0, t);
    if (st != Status::kNext) return st;
    if (!c.near_target_ok(t)) return c.fault(arch::Vector::kGP, 0);
    c.set_sp(c.sp() + N + uint16_t(i.imm));
    c.state.rip = t;
    return Status::kJumped;
  }
};

Handler select_jmp(const DecodeInput& in, Insn& i) {
  if (in.zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) return select_far_transfer(in, i);
  const unsigned n = in.zi.operand_width / 8;
  const ZydisDecodedOperand& t = in.ops[0];
  if (is_imm(t)) return sized_wdq<JmpRel>(n);
  if (is_reg(t)) { i.rm = reg_operand(t); return sized_wdq<JmpReg>(n); }
  return sized_wdq<JmpMem>(n);
}

Handler select_jcc(const DecodeInput& in, Insn& i) {
  i.cond = in.zi.opcode & 0xf;
  return sized_wdq<Jcc>(in.zi.operand_width / 8);
}

Handler select_jrcxz(const DecodeInput& in, Insn&) { return sized_wdq<Jrcxz>(in.zi.operand_width / 8); }

Handler select_loop(const DecodeInput& in, Insn&) {
  const unsigned n = in.zi.operand_width / 8;
  switch (in.zi.mnemonic) {
    case ZYDIS_MNEMONIC_LOOPE: return sized_wdq<LoopE>(n);
    case ZYDIS_MNEMONIC_LOOPNE: return sized_wdq<LoopNe>(n);
    default: return sized_wdq<LoopPlain>(n);
  }
}

Handler select_call(const DecodeInput& in, Insn& i) {
  if (in.zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) return select_far_transfer(in, i);
  const unsigned n = in.zi.operand_width / 8;
  const ZydisDecodedOperand& t = in.ops[0];
  if (is_imm(t)) return sized_wdq<CallRel>(n);
  if (is_reg(t)) { i.rm = reg_operand(t); return sized_wdq<CallReg>(n); }
  return sized_wdq<CallMem>(n);
}

Handler select_ret(const DecodeInput& in, Insn& i) {
  if (in.zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) return select_far_transfer(in, i);
  if (in.visible() == 0) i.imm = 0;
  return sized_wdq<Ret>(in.zi.operand_width / 8);
}

}  // namespace

void register_branch(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_JMP, &select_jmp);
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_JB, ZYDIS_MNEMONIC_JBE, ZYDIS_MNEMONIC_JL, ZYDIS_MNEMONIC_JLE,
                          ZYDIS_MNEMONIC_JNB, ZYDIS_MNEMONIC_JNBE, ZYDIS_MNEMONIC_JNL, ZYDIS_MNEMONIC_JNLE,
                          ZYDIS_MNEMONIC_JNO, ZYDIS_MNEMONIC_JNP, ZYDIS_MNEMONIC_JNS, ZYDIS_MNEMONIC_JNZ,
                          ZYDIS_MNEMONIC_JO, ZYDIS_MNEMONIC_JP, ZYDIS_MNEMONIC_JS, ZYDIS_MNEMONIC_JZ})
    t.add(m, &select_jcc);
  t.add(ZYDIS_MNEMONIC_JCXZ, &select_jrcxz);
  t.add(ZYDIS_MNEMONIC_JECXZ, &select_jrcxz);
  t.add(ZYDIS_MNEMONIC_JRCXZ, &select_jrcxz);
  t.add(ZYDIS_MNEMONIC_LOOP, &select_loop);
  t.add(ZYDIS_MNEMONIC_LOOPE, &select_loop);
  t.add(ZYDIS_MNEMONIC_LOOPNE, &select_loop);
  t.add(ZYDIS_MNEMONIC_CALL, &select_call);
  t.add(ZYDIS_MNEMONIC_RET, &select_ret);
}

}  // namespace nestvm::cpu
