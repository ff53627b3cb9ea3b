// Instruction class: data movement and flag-register moves. MOV (general-purpose forms),
// MOVZX, MOVSX, MOVSXD, LEA, XCHG, BSWAP, MOVBE, CMOVcc, SETcc, CBW/CWDE/CDQE, CWD/CDQ/CQO,
// LAHF, SAHF, CLC, STC, CMC, CLD, STD, XLAT, NOP.
#include "cpu/insn/delegates.h"
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

using arch::rflags::kAF;
using arch::rflags::kCF;
using arch::rflags::kPF;
using arch::rflags::kSF;
using arch::rflags::kZF;

// ---- MOV --------------------------------------------------------------------------------
template <unsigned N> struct MovRR {
  static Status run(Cpu& c, const Insn& i) { set_reg<N>(c, i.reg, get_reg<N>(c, i.rm)); return Status::kNext; }
};
template <unsigned N> struct MovRM {
  static Status run(Cpu& c, const Insn& i) {
    uint64_t v;
    const Status st = read_mem<N>(c, i, v);
    if (st == Status::kNext) set_reg<N>(c, i.reg, v);
    return st;
  }
};
template <unsigned N> struct MovRI {
  static Status run(Cpu& c, const Insn& i) { set_reg<N>(c, i.reg, i.imm); return Status::kNext; }
};
template <unsigned N> struct MovMR {
  static Status run(Cpu& c, const Insn& i) { return write_mem<N>(c, i, get_reg<N>(c, i.rm)); }
};
template <unsigned N> struct MovMI {
  static Status run(Cpu& c, const Insn& i) { return write_mem<N>(c, i, i.imm); }
};
// MOV with a 64-bit absolute address (moffs64, opcodes A0-A3 in 64-bit mode), kept in imm.
template <unsigned N> struct MovRMoffs {
  static Status run(Cpu& c, const Insn& i) {
    uint_t<N> v;
    const Status st = c.read<uint_t<N>>(seg_of(i), i.imm, v);
    if (st == Status::kNext) set_reg<N>(c, i.reg, v);
    return st;
  }
};
template <unsigned N> struct MovMoffsR {
  static Status run(Cpu& c, const Insn& i) { return c.write<uint_t<N>>(seg_of(i), i.imm, uint_t<N>(get_reg<N>(c, i.rm))); }
};

bool is_moffs64(const DecodeInput& in, const ZydisDecodedOperand& m) {
  return in.in_64bit() && m.mem.base == ZYDIS_REGISTER_NONE && m.mem.index == ZYDIS_REGISTER_NONE &&
         m.mem.disp.value != int64_t(int32_t(m.mem.disp.value));
}

Handler select_mov(const DecodeInput& in, Insn& i) {
  const ZydisDecodedOperand& d = in.ops[0];
  const ZydisDecodedOperand& s = in.ops[1];
  for (const ZydisDecodedOperand* o : {&d, &s}) {
    if (!is_reg(*o)) continue;
    switch (ZydisRegisterGetClass(o->reg.value)) {
      case ZYDIS_REGCLASS_SEGMENT: return select_mov_sreg(in, i);
      case ZYDIS_REGCLASS_CONTROL: return select_mov_cr(in, i);
      case ZYDIS_REGCLASS_DEBUG: return select_mov_dr(in, i);
      default: break;
    }
  }
  const unsigned n = d.size / 8;
  if (is_reg(d)) {
    i.reg = reg_operand(d);
    if (is_reg(s)) { i.rm = reg_operand(s); return sized<MovRR>(n); }
    if (is_imm(s)) return sized<MovRI>(n);
    if (is_mem(s)) return is_moffs64(in, s) ? sized<MovRMoffs>(n) : sized<MovRM>(n);
  } else if (is_mem(d)) {
    if (is_reg(s)) { i.rm = reg_operand(s); return is_moffs64(in, d) ? sized<MovMoffsR>(n) : sized<MovMR>(n); }
    if (is_imm(s)) return sized<MovMI>(n);
  }
  return nullptr;
}

// ---- MOVZX / MOVSX / MOVSXD -------------------------------------------------------------
// Destination size D, source size S, sign-extend or not; source register or memory.
template <unsigned D, unsigned S, bool Signed, bool Mem>
Status extend(Cpu& c, const Insn& i) {
  uint64_t v;
  if (Mem) {
    const Status st = read_mem<S>(c, i, v);
    if (st != Status::kNext) return st;
  } else {
    v = get_reg<S>(c, i.rm);
  }
  if (Signed) v = uint64_t(int64_t(sint_t<S>(uint_t<S>(v))));
  set_reg<D>(c, i.reg, v);
  return Status::kNext;
}

template <bool Signed>
Handler select_extend(const DecodeInput& in, Insn& i) {
  const ZydisDecodedOperand& d = in.ops[0];
  const ZydisDecodedOperand& s = in.ops[1];
  i.reg = reg_operand(d);
  const bool mem = is_mem(s);
  if (!mem) i.rm = reg_operand(s);
  unsigned dn = d.size / 8, sn = s.size / 8;
  // MOVSXD with a 16-bit operand size reads and moves only 16 bits (as processors do, though
  // Zydis lists the source as 32-bit).
  if (in.zi.mnemonic == ZYDIS_MNEMONIC_MOVSXD && dn == 2) sn = 2;
#define NESTVM_EXT(D, S) if (dn == D && sn == S) return mem ? &extend<D, S, Signed, true> : &extend<D, S, Signed, false>;
  NESTVM_EXT(2, 1) NESTVM_EXT(4, 1) NESTVM_EXT(8, 1)
  NESTVM_EXT(2, 2) NESTVM_EXT(4, 2) NESTVM_EXT(8, 2)
  NESTVM_EXT(4, 4) NESTVM_EXT(8, 4)
#undef NESTVM_EXT
  return nullptr;
}

// MOVNTI: a store of a general-purpose register with a non-temporal hint (SSE2), which the core
// has no cache to honour.
Handler select_movnti(const DecodeInput& in, Insn& i) {
  if (!in.model.has(Feature::kSse2)) return nullptr;
  i.rm = reg_operand(in.ops[1]);
  return in.ops[0].size == 64 ? &MovMR<8>::run : &MovMR<4>::run;
}

// ---- LEA ----------------------------------------------------------------------------------
template <unsigned N> struct Lea {
  static Status run(Cpu& c, const Insn& i) { set_reg<N>(c, i.reg, c.effective_address(i)); return Status::kNext; }
};
Handler select_lea(const DecodeInput& in, Insn& i) {
  i.reg = reg_operand(in.ops[0]);
  return sized_wdq<Lea>(in.ops[0].size / 8);
}

// ---- XCHG ---------------------------------------------------------------------------------
template <unsigned N> struct XchgRR {
  static Status run(Cpu& c, const Insn& i) {
    const uint64_t a = get_reg<N>(c, i.reg), b = get_reg<N>(c, i.rm);
    set_reg<N>(c, i.reg, b);
    set_reg<N>(c, i.rm, a);
    return Status::kNext;
  }
};
// XCHG with memory is always locked (SDM Vol. 2, XCHG).
template <unsigned N> struct XchgMR {
  static Status run(Cpu& c, const Insn& i) {
    using T = uint_t<N>;
    Cpu::RmwRef<T> ref;
    const Status st = c.rmw_ref<T>(seg_of(i), c.effective_address(i), ref);
    if (st != Status::kNext) return st;
    const T v = T(get_reg<N>(c, i.rm));
    const T old = locked_rmw(c, ref, [v](T) { return v; });
    set_reg<N>(c, i.rm, old);
    return Status::kNext;
  }
};
Handler select_xchg(const DecodeInput& in, Insn& i) {
  const ZydisDecodedOperand& a = in.ops[0];
  const ZydisDecodedOperand& b = in.ops[1];
  const unsigned n = a.size / 8;
  if (is_reg(a) && is_reg(b)) { i.reg = reg_operand(a); i.rm = reg_operand(b); return sized<XchgRR>(n); }
  if (is_mem(a) && is_reg(b)) { i.rm = reg_operand(b); return sized<XchgMR>(n); }
  if (is_reg(a) && is_mem(b)) { i.rm = reg_operand(a); return sized<XchgMR>(n); }
  return nullptr;
}

// ---- BSWAP / MOVBE --------------------------------------------------------------------------
template <unsigned N> uint64_t byte_swap(uint64_t v) {
  if (N == 8) return __builtin_bswap64(v);
  if (N == 4) return __builtin_bswap32(uint32_t(v));
  return 0;  // BSWAP of a 16-bit register is undefined; processors clear it
}
template <unsigned N> struct Bswap {
  static Status run(Cpu& c, const Insn& i) { set_reg<N>(c, i.reg, byte_swap<N>(get_reg<N>(c, i.reg))); return Status::kNext; }
};
Handler select_bswap(const DecodeInput& in, Insn& i) {
  i.reg = reg_operand(in.ops[0]);
  return sized_wdq<Bswap>(in.ops[0].size / 8);
}
template <unsigned N> uint64_t movbe_swap(uint64_t v) {
  return N == 2 ? uint64_t(__builtin_bswap16(uint16_t(v))) : byte_swap<N>(v);
}
template <unsigned N> struct MovbeRM {
  static Status run(Cpu& c, const Insn& i) {
    uint64_t v;
    const Status st = read_mem<N>(c, i, v);
    if (st == Status::kNext) set_reg<N>(c, i.reg, movbe_swap<N>(v));
    return st;
  }
};
template <unsigned N> struct MovbeMR {
  static Status run(Cpu& c, const Insn& i) { return write_mem<N>(c, i, movbe_swap<N>(get_reg<N>(c, i.rm))); }
};
Handler select_movbe(const DecodeInput& in, Insn& i) {
  if (!in.model.has(Feature::kMovbe)) return nullptr;
  const unsigned n = in.ops[0].size / 8;
  if (is_reg(in.ops[0])) { i.reg = reg_operand(in.ops[0]); return sized_wdq<MovbeRM>(n); }
  i.rm = reg_operand(in.ops[1]);
  return sized_wdq<MovbeMR>(n);
}

// ---- CMOVcc / SETcc ---------------------------------------------------------------------
template <unsigned N, bool Mem> struct Cmov {
  static Status run(Cpu& c, const Insn& i) {
    uint64_t v;
    if (Mem) {  // the source is read (and may fault) whatever the condition
      const Status st = read_mem<N>(c, i, v);
      if (st != Status::kNext) return st;
    } else {
      v = get_reg<N>(c, i.rm);
    }
    // With a 32-bit operand the destination's upper half is cleared even if the condition is false.
    set_reg<N>(c, i.reg, c.condition(i.cond) ? v : get_reg<N>(c, i.reg));
    return Status::kNext;
  }
};
template <unsigned N> using CmovR = Cmov<N, false>;
template <unsigned N> using CmovM = Cmov<N, true>;
Handler select_cmov(const DecodeInput& in, Insn& i) {
  if (!in.model.has(Feature::kCmov)) return nullptr;
  i.cond = in.zi.opcode & 0xf;
  i.reg = reg_operand(in.ops[0]);
  const unsigned n = in.ops[0].size / 8;
  if (is_reg(in.ops[1])) { i.rm = reg_operand(in.ops[1]); return sized_wdq<CmovR>(n); }
  return sized_wdq<CmovM>(n);
}

Status setcc_r(Cpu& c, const Insn& i) { c.set_reg8(i.reg, c.condition(i.cond)); return Status::kNext; }
Status setcc_m(Cpu& c, const Insn& i) { return write_mem<1>(c, i, c.condition(i.cond)); }
Handler select_setcc(const DecodeInput& in, Insn& i) {
  i.cond = in.zi.opcode & 0xf;
  if (is_reg(in.ops[0])) { i.reg = reg_operand(in.ops[0]); return &setcc_r; }
  return &setcc_m;
}

// ---- sign extension of the accumulator ---------------------------------------------------
// CBW/CWDE/CDQE: rAX <- sign-extend(half of rAX).
template <unsigned N> struct ExtendAcc {
  static Status run(Cpu& c, const Insn&) {
    const uint64_t half = get_reg<N / 2>(c, 0);
    set_reg<N>(c, kRax, uint64_t(int64_t(sint_t<N / 2>(uint_t<N / 2>(half)))));
    return Status::kNext;
  }
};
// CWD/CDQ/CQO: rDX <- all copies of rAX's sign bit.
template <unsigned N> struct SignToDx {
  static Status run(Cpu& c, const Insn&) {
    const bool neg = get_reg<N>(c, kRax) & sign_bit(N);
    set_reg<N>(c, kRdx, neg ? ~0ull : 0);
    return Status::kNext;
  }
};
Handler select_cbw(const DecodeInput& in, Insn&) { return sized_wdq<ExtendAcc>(in.zi.operand_width / 8); }
Handler select_cwd(const DecodeInput& in, Insn&) { return sized_wdq<SignToDx>(in.zi.operand_width / 8); }

// ---- flag moves -------------------------------------------------------------------------
Status lahf(Cpu& c, const Insn&) {
  c.set_reg8(1, (c.rflags() & (kSF | kZF | kAF | kPF | kCF)) | 2);
  return Status::kNext;
}
Status sahf(Cpu& c, const Insn&) {
  const uint64_t ah = c.reg8(1);
  const uint64_t f = c.rflags();
  c.set_status_flags((f & arch::rflags::kOF) | (ah & (kSF | kZF | kAF | kPF | kCF)));
  return Status::kNext;
}
Handler select_lahf_sahf(const DecodeInput& in, Insn&) {
  // In 64-bit mode LAHF/SAHF exist only with CPUID.80000001H:ECX.LAHF-SAHF[bit 0].
  if (in.in_64bit() && !in.model.has(Feature::kLahfLm)) return nullptr;
  return in.zi.mnemonic == ZYDIS_MNEMONIC_LAHF ? &lahf : &sahf;
}
Status clc(Cpu& c, const Insn&) { c.set_status_flags(c.rflags() & ~kCF); return Status::kNext; }
Status stc(Cpu& c, const Insn&) { c.set_status_flags(c.rflags() | kCF); return Status::kNext; }
Status cmc(Cpu& c, const Insn&) { c.set_status_flags(c.rflags() ^ kCF); return Status::kNext; }
Status cld(Cpu& c, const Insn&) { c.state.rflags &= ~arch::rflags::kDF; return Status::kNext; }
Status std_(Cpu& c, const Insn&) { c.state.rflags |= arch::rflags::kDF; return Status::kNext; }

// ---- XLAT -------------------------------------------------------------------------------
Status xlat(Cpu& c, const Insn& i) {
  const uint64_t ea = (c.state.gpr[kRbx] + c.reg8(0)) & size_mask(i.asz);
  uint8_t v;
  const Status st = c.read<uint8_t>(seg_of(i), ea, v);
  if (st == Status::kNext) c.set_reg8(0, v);
  return st;
}

Status nop(Cpu&, const Insn&) { return Status::kNext; }

}  // namespace

void register_mov(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_MOV, &select_mov);
  t.add(ZYDIS_MNEMONIC_MOVZX, &select_extend<false>);
  t.add(ZYDIS_MNEMONIC_MOVSX, &select_extend<true>);
  t.add(ZYDIS_MNEMONIC_MOVSXD, &select_extend<true>);
  t.add(ZYDIS_MNEMONIC_LEA, &select_lea);
  t.add(ZYDIS_MNEMONIC_MOVNTI, &select_movnti);
  t.add(ZYDIS_MNEMONIC_XCHG, &select_xchg);
  t.add(ZYDIS_MNEMONIC_BSWAP, &select_bswap);
  t.add(ZYDIS_MNEMONIC_MOVBE, &select_movbe);
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_CMOVB, ZYDIS_MNEMONIC_CMOVBE, ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVLE,
                          ZYDIS_MNEMONIC_CMOVNB, ZYDIS_MNEMONIC_CMOVNBE, ZYDIS_MNEMONIC_CMOVNL, ZYDIS_MNEMONIC_CMOVNLE,
                          ZYDIS_MNEMONIC_CMOVNO, ZYDIS_MNEMONIC_CMOVNP, ZYDIS_MNEMONIC_CMOVNS, ZYDIS_MNEMONIC_CMOVNZ,
                          ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVP, ZYDIS_MNEMONIC_CMOVS, ZYDIS_MNEMONIC_CMOVZ})
    t.add(m, &select_cmov);
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_SETB, ZYDIS_MNEMONIC_SETBE, ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETLE,
                          ZYDIS_MNEMONIC_SETNB, ZYDIS_MNEMONIC_SETNBE, ZYDIS_MNEMONIC_SETNL, ZYDIS_MNEMONIC_SETNLE,
                          ZYDIS_MNEMONIC_SETNO, ZYDIS_MNEMONIC_SETNP, ZYDIS_MNEMONIC_SETNS, ZYDIS_MNEMONIC_SETNZ,
                          ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETP, ZYDIS_MNEMONIC_SETS, ZYDIS_MNEMONIC_SETZ})
    t.add(m, &select_setcc);
  t.add(ZYDIS_MNEMONIC_CBW, &select_cbw);
  t.add(ZYDIS_MNEMONIC_CWDE, &select_cbw);
  t.add(ZYDIS_MNEMONIC_CDQE, &select_cbw);
  t.add(ZYDIS_MNEMONIC_CWD, &select_cwd);
  t.add(ZYDIS_MNEMONIC_CDQ, &select_cwd);
  t.add(ZYDIS_MNEMONIC_CQO, &select_cwd);
  t.add(ZYDIS_MNEMONIC_LAHF, &select_lahf_sahf);
  t.add(ZYDIS_MNEMONIC_SAHF, &select_lahf_sahf);
  t.add(ZYDIS_MNEMONIC_CLC, [](const DecodeInput&, Insn&) -> Handler { return &clc; });
  t.add(ZYDIS_MNEMONIC_STC, [](const DecodeInput&, Insn&) -> Handler { return &stc; });
  t.add(ZYDIS_MNEMONIC_CMC, [](const DecodeInput&, Insn&) -> Handler { return &cmc; });
  t.add(ZYDIS_MNEMONIC_CLD, [](const DecodeInput&, Insn&) -> Handler { return &cld; });
  t.add(ZYDIS_MNEMONIC_STD, [](const DecodeInput&, Insn&) -> Handler { return &std_; });
  t.add(ZYDIS_MNEMONIC_XLAT, [](const DecodeInput&, Insn&) -> Handler { return &xlat; });
  t.add(ZYDIS_MNEMONIC_NOP, [](const DecodeInput&, Insn&) -> Handler { return &nop; });
}

}  // namespace nestvm::cpu
