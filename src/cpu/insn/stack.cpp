// Instruction class: stack operations. PUSH, POP (general-purpose, immediate and memory forms;
// segment registers are in segment.cpp), PUSHA/PUSHAD, POPA/POPAD, ENTER, LEAVE,
// PUSHF/PUSHFD/PUSHFQ, POPF/POPFD/POPFQ with their IOPL and mode rules.
#include "cpu/insn/delegates.h"
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

template <unsigned N> struct PushR {
  static Status run(Cpu& c, const Insn& i) { return c.push<uint_t<N>>(uint_t<N>(get_reg<N>(c, i.reg))); }
};
template <unsigned N> struct PushI {
  static Status run(Cpu& c, const Insn& i) { return c.push<uint_t<N>>(uint_t<N>(i.imm)); }
};
template <unsigned N> struct PushM {
  static Status run(Cpu& c, const Insn& i) {
    uint64_t v;
    const Status st = read_mem<N>(c, i, v);
    return st == Status::kNext ? c.push<uint_t<N>>(uint_t<N>(v)) : st;
  }
};
template <unsigned N> struct PopR {
  static Status run(Cpu& c, const Insn& i) {
    uint_t<N> v;
    const Status st = c.pop<uint_t<N>>(v);
    if (st == Status::kNext) set_reg<N>(c, i.reg, v);  // POP rSP: the popped value wins
    return st;
  }
};
// POP to memory: an rSP-based address is computed after rSP is incremented (SDM Vol. 2, POP).
template <unsigned N> struct PopM {
  static Status run(Cpu& c, const Insn& i) {
    uint_t<N> v;
    Status st = c.read_stack<uint_t<N>>(0, v);
    if (st != Status::kNext) return st;
    const uint64_t old_rsp = c.state.gpr[kRsp];
    c.set_sp(c.sp() + N);
    st = write_mem<N>(c, i, v);
    if (st != Status::kNext) c.state.gpr[kRsp] = old_rsp;
    return st;
  }
};

Handler select_push(const DecodeInput& in, Insn& i) {
  const ZydisDecodedOperand& o = in.ops[0];
  if (is_reg(o) && ZydisRegisterGetClass(o.reg.value) == ZYDIS_REGCLASS_SEGMENT) return select_push_sreg(in, i);
  const unsigned n = in.zi.operand_width / 8;
  if (is_reg(o)) { i.reg = reg_operand(o); return sized_wdq<PushR>(n); }
  if (is_imm(o)) return sized_wdq<PushI>(n);
  return sized_wdq<PushM>(n);
}

Handler select_pop(const DecodeInput& in, Insn& i) {
  const ZydisDecodedOperand& o = in.ops[0];
  if (is_reg(o) && ZydisRegisterGetClass(o.reg.value) == ZYDIS_REGCLASS_SEGMENT) return select_pop_sreg(in, i);
  const unsigned n = in.zi.operand_width / 8;
  if (is_reg(o)) { i.reg = reg_operand(o); return sized_wdq<PopR>(n); }
  return sized_wdq<PopM>(n);
}

// PUSHA/PUSHAD: AX CX DX BX (original SP) BP SI DI; all eight stores, then SP.
template <unsigned N> struct Pusha {
  static Status run(Cpu& c, const Insn&) {
    const uint64_t sp = c.sp();
    const uint64_t mask = size_mask(c.stack_size());
    for (unsigned r = 0; r < 8; ++r) {
      const uint64_t v = r == kRsp ? sp : c.state.gpr[r];
      const Status st = c.write<uint_t<N>>(SegReg::kSS, (sp - N * (r + 1)) & mask, uint_t<N>(v));
      if (st != Status::kNext) return st;
    }
    c.set_sp(sp - 8 * N);
    return Status::kNext;
  }
};
// POPA/POPAD: DI SI BP (skip) BX DX CX AX.
template <unsigned N> struct Popa {
  static Status run(Cpu& c, const Insn&) {
    const uint64_t sp = c.sp();
    const uint64_t mask = size_mask(c.stack_size());
    uint_t<N> v[8];
    for (unsigned k = 0; k < 8; ++k) {
      const Status st = c.read<uint_t<N>>(SegReg::kSS, (sp + N * k) & mask, v[k]);
      if (st != Status::kNext) return st;
    }
    for (unsigned k = 0; k < 8; ++k)
      if (7 - k != kRsp) set_reg<N>(c, uint8_t(7 - k), v[k]);
    c.set_sp(sp + 8 * N);
    return Status::kNext;
  }
};

// ENTER imm16, imm8 (SDM Vol. 2, ENTER): every store first, registers last.
template <unsigned N> struct Enter {
  static Status run(Cpu& c, const Insn& i) {
    const unsigned level = i.imm2 & 31;
    const uint64_t alloc = uint16_t(i.imm);
    const unsigned ss = c.stack_size();
    const uint64_t mask = size_mask(ss);
    uint64_t sp = c.sp();
    uint64_t bp = c.state.gpr[kRbp] & size_mask(ss);
    sp = (sp - N) & mask;
    Status st = c.write<uint_t<N>>(SegReg::kSS, sp, uint_t<N>(c.state.gpr[kRbp]));
    if (st != Status::kNext) return st;
    const uint64_t frame = sp;
    if (level > 0) {
      for (unsigned k = 1; k < level; ++k) {
        bp = (bp - N) & mask;
        uint_t<N> v;
        if ((st = c.read<uint_t<N>>(SegReg::kSS, bp, v)) != Status::kNext) return st;
        sp = (sp - N) & mask;
        if ((st = c.write<uint_t<N>>(SegReg::kSS, sp, v)) != Status::kNext) return st;
      }
      sp = (sp - N) & mask;
      if ((st = c.write<uint_t<N>>(SegReg::kSS, sp, uint_t<N>(frame))) != Status::kNext) return st;
    }
    // SDM Vol. 2, ENTER: the processor checks that a write at the final rSP would succeed
    // (#SS(0) outside the stack segment, #PF if its page is not writable), before changing rSP.
    const uint64_t new_sp = (sp - alloc) & mask;
    Cpu::RmwRef<uint_t<N>> probe;
    if ((st = c.rmw_ref<uint_t<N>>(SegReg::kSS, new_sp, probe)) != Status::kNext) return st;
    set_reg<N>(c, kRbp, frame);
    c.set_sp(new_sp);
    return Status::kNext;
  }
};
Handler select_enter(const DecodeInput& in, Insn&) { return sized_wdq<Enter>(in.zi.operand_width / 8); }

// LEAVE: rSP <- rBP, then pop rBP.
template <unsigned N> struct Leave {
  static Status run(Cpu& c, const Insn&) {
    const uint64_t bp = c.state.gpr[kRbp] & size_mask(c.stack_size());
    uint_t<N> v;
    const Status st = c.read<uint_t<N>>(SegReg::kSS, bp, v);
    if (st != Status::kNext) return st;
    c.set_sp(bp + N);
    set_reg<N>(c, kRbp, v);
    return Status::kNext;
  }
};
Handler select_leave(const DecodeInput& in, Insn&) { return sized_wdq<Leave>(in.zi.operand_width / 8); }

// PUSHF: VM and RF are pushed as 0; in virtual-8086 mode with IOPL < 3, #GP(0).
template <unsigned N> struct Pushf {
  static Status run(Cpu& c, const Insn&) {
    const uint64_t f = c.rflags();
    if (c.v86_mode() && ((f & rflags::kIOPL) >> rflags::kIoplShift) < 3) return c.fault(Vector::kGP, 0);
    return c.push<uint_t<N>>(uint_t<N>(f & ~(rflags::kVM | rflags::kRF)));
  }
};
// POPF (SDM Vol. 2, POPF "Operation"): which bits may change depends on mode, CPL and IOPL.
template <unsigned N> struct Popf {
  static Status run(Cpu& c, const Insn&) {
    const uint64_t old = c.rflags();
    const unsigned iopl = unsigned((old & rflags::kIOPL) >> rflags::kIoplShift);
    if (c.v86_mode() && iopl < 3) return c.fault(Vector::kGP, 0);
    uint_t<N> v;
    const Status st = c.pop<uint_t<N>>(v);
    if (st != Status::kNext) return st;
    uint64_t modifiable = rflags::kDefined & ~(rflags::kRF | rflags::kVIP | rflags::kVIF | rflags::kVM);
    if (c.v86_mode()) {
      modifiable &= ~rflags::kIOPL;
    } else if (c.protected_mode() && c.cpl() > 0) {
      modifiable &= ~rflags::kIOPL;
      if (c.cpl() > iopl) modifiable &= ~rflags::kIF;
    }
    modifiable &= size_mask(N);
    c.set_rflags(((old & ~modifiable) | (uint64_t(v) & modifiable)) & ~rflags::kRF);
    return Status::kEndBlock;  // IF, TF or AC may have changed
  }
};
Handler select_pushf(const DecodeInput& in, Insn&) { return sized_wdq<Pushf>(in.zi.operand_width / 8); }
Handler select_popf(const DecodeInput& in, Insn&) { return sized_wdq<Popf>(in.zi.operand_width / 8); }
Handler select_pusha(const DecodeInput& in, Insn&) { return in.zi.operand_width == 16 ? &Pusha<2>::run : &Pusha<4>::run; }
Handler select_popa(const DecodeInput& in, Insn&) { return in.zi.operand_width == 16 ? &Popa<2>::run : &Popa<4>::run; }

}  // namespace

void register_stack(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_PUSH, &select_push);
  t.add(ZYDIS_MNEMONIC_POP, &select_pop);
  t.add(ZYDIS_MNEMONIC_PUSHA, &select_pusha);
  t.add(ZYDIS_MNEMONIC_PUSHAD, &select_pusha);
  t.add(ZYDIS_MNEMONIC_POPA, &select_popa);
  t.add(ZYDIS_MNEMONIC_POPAD, &select_popa);
  t.add(ZYDIS_MNEMONIC_ENTER, &select_enter);
  t.add(ZYDIS_MNEMONIC_LEAVE, &select_leave);
  t.add(ZYDIS_MNEMONIC_PUSHF, &select_pushf);
  t.add(ZYDIS_MNEMONIC_PUSHFD, &select_pushf);
  t.add(ZYDIS_MNEMONIC_PUSHFQ, &select_pushf);
  t.add(ZYDIS_MNEMONIC_POPF, &select_popf);
  t.add(ZYDIS_MNEMONIC_POPFD, &select_popf);
  t.add(ZYDIS_MNEMONIC_POPFQ, &select_popf);
}

}  // namespace nestvm::cpu
