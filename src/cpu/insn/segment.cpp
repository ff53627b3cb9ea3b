// Instruction class: segment registers and descriptors. MOV to/from Sreg, PUSH/POP Sreg,
// LDS/LES/LFS/LGS/LSS, LAR, LSL, VERR, VERW, ARPL, LLDT, LTR, SLDT, STR (SDM Vol. 2, each
// instruction's "Operation"; the checks of a segment load are in cpu/segmentation.cpp).
#include "cpu/insn/delegates.h"
#include "cpu/insn/operand.h"
#include "cpu/segmentation.h"
#include "cpu/vmx/nonroot.h"
#include "arch/vmx_insn_info.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

SegReg sreg_of(ZydisRegister r) {
  switch (r) {
    case ZYDIS_REGISTER_ES: return SegReg::kES;
    case ZYDIS_REGISTER_CS: return SegReg::kCS;
    case ZYDIS_REGISTER_SS: return SegReg::kSS;
    case ZYDIS_REGISTER_DS: return SegReg::kDS;
    case ZYDIS_REGISTER_FS: return SegReg::kFS;
    default: return SegReg::kGS;
  }
}

// Descriptor instructions are not recognized in real-address and virtual-8086 mode (#UD).
bool descriptors_unavailable(const Cpu& c) { return !c.protected_mode() || c.v86_mode(); }

// A loaded SS holds off interrupts, NMIs and debug traps until the next instruction completes
// (SDM Vol. 2 MOV, POP: "MOV SS ... inhibits all interrupts ... until after the next instruction").
Status finish_load(Cpu& c, SegReg s) {
  if (s != SegReg::kSS) return Status::kNext;
  c.state.movss_blocking = true;
  return Status::kEndBlock;
}

// The 16-bit selector operand of an r/m16 form.
template <bool Mem> inline Status read_selector(Cpu& c, const Insn& i, uint16_t& sel) {
  if (Mem) return c.read<uint16_t>(seg_of(i), c.effective_address(i), sel);
  sel = uint16_t(c.state.gpr[i.rm]);
  return Status::kNext;
}

// ---- MOV, PUSH, POP ---------------------------------------------------------------------------

// MOV Sreg, r/m16 (Insn::aux = the segment register).
template <bool Mem> struct MovToSreg {
  static Status run(Cpu& c, const Insn& i) {
    uint16_t sel;
    Status st = read_selector<Mem>(c, i, sel);
    if (st != Status::kNext) return st;
    const SegReg s = SegReg(i.aux);
    if ((st = load_segment(c, s, sel)) != Status::kNext) return st;
    return finish_load(c, s);
  }
};
// MOV r16/r32/r64, Sreg: zero-extended to 32 and 64 bits (SDM Vol. 2 MOV: current processors
// clear the upper bytes); a 16-bit register keeps its upper bits.
template <unsigned N> struct MovFromSregR {
  static Status run(Cpu& c, const Insn& i) {
    set_reg<N>(c, i.reg, c.state.seg[i.aux].selector);
    return Status::kNext;
  }
};
// MOV m16, Sreg: a 16-bit store whatever the operand size.
Status mov_from_sreg_m(Cpu& c, const Insn& i) {
  return c.write<uint16_t>(seg_of(i), c.effective_address(i), c.state.seg[i.aux].selector);
}

// PUSH Sreg: rSP moves by the operand size, but only the selector's 16 bits are written (SDM Vol. 2
// PUSH: recent processors do a 16-bit move and leave the rest of the slot unmodified).
template <unsigned N> struct PushSreg {
  static Status run(Cpu& c, const Insn& i) {
    const uint64_t nsp = (c.state.gpr[kRsp] - N) & size_mask(c.stack_size());
    const SegCache& sc = c.seg_cache(SegReg::kSS);
    if (nsp < sc.wr_lo || nsp + (N - 1) > sc.wr_hi) return c.fault(Vector::kSS, 0);
    const Status st = c.write<uint16_t>(SegReg::kSS, nsp, c.state.seg[i.aux].selector);
    if (st != Status::kNext) return st;
    c.set_sp(nsp);
    return Status::kNext;
  }
};
// POP Sreg: the low 16 bits of an N-byte slot; rSP moves with the stack size in effect before
// the load.
template <unsigned N> struct PopSreg {
  static Status run(Cpu& c, const Insn& i) {
    uint_t<N> v;
    Status st = c.read_stack<uint_t<N>>(0, v);
    if (st != Status::kNext) return st;
    const SegReg s = SegReg(i.aux);
    Segment seg;
    if ((st = check_segment_load(c, s, uint16_t(v), seg)) != Status::kNext) return st;
    c.set_sp(c.sp() + N);
    install_segment(c, s, seg);
    return finish_load(c, s);
  }
};

// LDS/LES/LFS/LGS/LSS r, m16:N: the offset, then the selector.
template <unsigned N> struct LoadFarPointer {
  static Status run(Cpu& c, const Insn& i) {
    const uint64_t ea = c.effective_address(i);
    uint_t<N> off;
    uint16_t sel;
    Status st = c.read<uint_t<N>>(seg_of(i), ea, off);
    if (st != Status::kNext) return st;
    if ((st = c.read<uint16_t>(seg_of(i), (ea + N) & size_mask(i.asz), sel)) != Status::kNext) return st;
    if ((st = load_segment(c, SegReg(i.aux), sel)) != Status::kNext) return st;
    set_reg<N>(c, i.reg, off);
    return Status::kNext;
  }
};

// ---- LAR, LSL, VERR, VERW ---------------------------------------------------------------------

enum class Probe : uint8_t { kLar, kLsl, kVerr, kVerw };

// System-descriptor types each instruction accepts (SDM Vol. 2 LAR and LSL tables; they differ
// in IA-32e mode, where only LDT, 64-bit TSS and, for LAR, 64-bit call gates remain).
bool system_type_ok(Probe p, bool ia32e, uint32_t type) {
  using namespace sys_type;
  if (ia32e) {
    return type == kLdt || type == kTss32Avail || type == kTss32Busy || (p == Probe::kLar && type == kCallGate32);
  }
  switch (type) {
    case kTss16Avail: case kLdt: case kTss16Busy: case kTss32Avail: case kTss32Busy:
      return true;
    case kCallGate16: case kTaskGate: case kCallGate32:
      return p == Probe::kLar;
    default:
      return false;
  }
}

// Whether the descriptor `sel` names passes instruction `p`'s checks at the current CPL and the
// selector's RPL. Bad selectors are not faults (ok = false); reading the table may fault.
Status probe(Cpu& c, Probe p, uint16_t sel, Descriptor& d, bool& ok) {
  ok = false;
  uint64_t la;
  if (selector_is_null(sel) || !descriptor_address(c, sel, 8, la)) return Status::kNext;
  Status st = sys_read<uint64_t>(c, la, d.raw);
  if (st != Status::kNext) return st;
  if (!d.s()) {
    if (p == Probe::kVerr || p == Probe::kVerw || !system_type_ok(p, c.long_mode(), d.type())) return Status::kNext;
    if (c.long_mode()) {  // a 16-byte descriptor: all of it within the limit, upper type 0
      uint64_t la16, hi;
      if (!descriptor_address(c, sel, 16, la16)) return Status::kNext;
      if ((st = sys_read<uint64_t>(c, la + 8, hi)) != Status::kNext) return st;
      if (!high_half_type_ok(hi)) return Status::kNext;
    }
  }
  const bool conforming_code = d.is_code() && (d.type() & ar::kConforming);
  if (!conforming_code && (c.cpl() > d.dpl() || selector_rpl(sel) > d.dpl())) return Status::kNext;
  if (p == Probe::kVerr && d.is_code() && !(d.type() & ar::kReadable)) return Status::kNext;
  if (p == Probe::kVerw && (!d.is_data() || !(d.type() & ar::kWritable))) return Status::kNext;
  ok = true;
  return Status::kNext;
}

void set_zf(Cpu& c, bool zf) { c.set_status_flags((c.rflags() & ~rflags::kZF) | (zf ? rflags::kZF : 0)); }

// LAR/LSL r, r/m16: ZF = 1 and the access rights / byte-granular limit, or ZF = 0 and the
// destination unchanged.
template <Probe P, unsigned N, bool Mem> struct LarLsl {
  static Status run(Cpu& c, const Insn& i) {
    if (descriptors_unavailable(c)) return c.fault(Vector::kUD);
    uint16_t sel;
    Status st = read_selector<Mem>(c, i, sel);
    if (st != Status::kNext) return st;
    Descriptor d;
    bool ok;
    if ((st = probe(c, P, sel, d, ok)) != Status::kNext) return st;
    if (ok) {
      // LAR: the second doubleword masked with 00FxFF00H (bits 19:16 read as 0 here); 16 bits: FF00H.
      const uint64_t rights = (d.raw >> 32) & (N == 2 ? 0xff00u : 0x00f0ff00u);
      set_reg<N>(c, i.reg, P == Probe::kLar ? rights : d.limit());
    }
    set_zf(c, ok);
    return Status::kNext;
  }
};
template <unsigned N> using LarR = LarLsl<Probe::kLar, N, false>;
template <unsigned N> using LarM = LarLsl<Probe::kLar, N, true>;
template <unsigned N> using LslR = LarLsl<Probe::kLsl, N, false>;
template <unsigned N> using LslM = LarLsl<Probe::kLsl, N, true>;

template <Probe P, bool Mem> struct Verify {
  static Status run(Cpu& c, const Insn& i) {
    if (descriptors_unavailable(c)) return c.fault(Vector::kUD);
    uint16_t sel;
    Status st = read_selector<Mem>(c, i, sel);
    if (st != Status::kNext) return st;
    Descriptor d;
    bool ok;
    if ((st = probe(c, P, sel, d, ok)) != Status::kNext) return st;
    set_zf(c, ok);
    return Status::kNext;
  }
};

// ARPL r/m16, r16 (legacy modes; 63 /r is MOVSXD in 64-bit mode): raise the RPL of the
// destination to the source's.
template <bool Mem> struct Arpl {
  static Status run(Cpu& c, const Insn& i) {
    if (descriptors_unavailable(c)) return c.fault(Vector::kUD);
    const uint16_t src = uint16_t(c.state.gpr[i.reg]);
    if (!Mem) {
      const uint16_t dst = uint16_t(c.state.gpr[i.rm]);
      const bool adjust = (dst & 3) < (src & 3);
      if (adjust) c.set_reg(2, i.rm, (dst & ~3) | (src & 3));
      set_zf(c, adjust);
      return Status::kNext;
    }
    Cpu::RmwRef<uint16_t> ref;
    const Status st = c.rmw_ref<uint16_t>(seg_of(i), c.effective_address(i), ref);
    if (st != Status::kNext) return st;
    const uint16_t dst = c.rmw_load(ref);
    const bool adjust = (dst & 3) < (src & 3);
    if (adjust) c.rmw_store(ref, uint16_t((dst & ~3) | (src & 3)));
    set_zf(c, adjust);
    return Status::kNext;
  }
};

// ---- LLDT, LTR, SLDT, STR ---------------------------------------------------------------------

// The base of an LDT or TSS descriptor: 64 bits (and canonical) in IA-32e mode, where system
// descriptors are 16 bytes (SDM Vol. 3 §8.2.3, §9.2.3 of the LLDT/LTR operation).
Status system_descriptor_base(Cpu& c, uint16_t sel, const Descriptor& d, uint64_t& base) {
  base = d.base();
  if (!c.long_mode()) return Status::kNext;
  uint64_t hi;
  const Status st = fetch_descriptor_high(c, sel, Vector::kGP, 0, hi);
  if (st != Status::kNext) return st;
  base |= (hi & 0xffffffffull) << 32;
  if (!high_half_type_ok(hi) || !is_canonical(base)) return c.fault(Vector::kGP, selector_error(sel));
  return Status::kNext;
}

// SDM §26.1.3: with "descriptor-table exiting" LLDT, LTR, SLDT and STR exit after the #UD of
// real and virtual-8086 mode and the CPL (or CR4.UMIP) check, before the operand is accessed;
// the qualification is the displacement, the instruction information that of §28.2.4.
inline bool descriptor_table_exiting(const Cpu& c) {
  return c.vmx_non_root() && c.vmx_controls().has2(proc2::kDescriptorTableExiting);
}
template <bool Mem> Status ldtr_tr_exit(Cpu& c, const Insn& i, insn_info::SystemSelectorInsn id) {
  const uint32_t operand = Mem ? vmx::memory_operand_info(i) : insn_info::kRegisterOperand | insn_info::reg1(i.rm);
  return c.vm_exit_for(i, ExitReason::LDTR_TR, vmx::displacement_qualification(c, i), operand | insn_info::identity(id));
}

template <bool Mem> struct Lldt {
  static Status run(Cpu& c, const Insn& i) {
    if (descriptors_unavailable(c)) return c.fault(Vector::kUD);
    if (c.cpl() != 0) return c.fault(Vector::kGP, 0);
    if (descriptor_table_exiting(c)) return ldtr_tr_exit<Mem>(c, i, insn_info::SystemSelectorInsn::kLldt);
    uint16_t sel;
    Status st = read_selector<Mem>(c, i, sel);
    if (st != Status::kNext) return st;
    if (selector_is_null(sel)) {  // LDTR becomes unusable; TI = 1 references then fault
      c.state.ldtr = null_segment(sel);
      return Status::kNext;
    }
    if (selector_ti(sel)) return c.fault(Vector::kGP, selector_error(sel));
    Descriptor d;
    uint64_t la, base;
    if ((st = fetch_descriptor(c, sel, Vector::kGP, 0, d, la)) != Status::kNext) return st;
    if (d.s() || d.type() != sys_type::kLdt) return c.fault(Vector::kGP, selector_error(sel));
    if ((st = system_descriptor_base(c, sel, d, base)) != Status::kNext) return st;
    if (!d.p()) return c.fault(Vector::kNP, selector_error(sel));
    c.state.ldtr = {sel, base, d.limit(), d.ar()};
    return Status::kNext;
  }
};

template <bool Mem> struct Ltr {
  static Status run(Cpu& c, const Insn& i) {
    if (descriptors_unavailable(c)) return c.fault(Vector::kUD);
    if (c.cpl() != 0) return c.fault(Vector::kGP, 0);
    if (descriptor_table_exiting(c)) return ldtr_tr_exit<Mem>(c, i, insn_info::SystemSelectorInsn::kLtr);
    uint16_t sel;
    Status st = read_selector<Mem>(c, i, sel);
    if (st != Status::kNext) return st;
    if (selector_is_null(sel)) return c.fault(Vector::kGP, 0);
    if (selector_ti(sel)) return c.fault(Vector::kGP, selector_error(sel));
    Descriptor d;
    uint64_t la, base;
    if ((st = fetch_descriptor(c, sel, Vector::kGP, 0, d, la)) != Status::kNext) return st;
    const bool available = d.type() == sys_type::kTss32Avail || (!c.long_mode() && d.type() == sys_type::kTss16Avail);
    if (d.s() || !available) return c.fault(Vector::kGP, selector_error(sel));
    if ((st = system_descriptor_base(c, sel, d, base)) != Status::kNext) return st;
    if (!d.p()) return c.fault(Vector::kNP, selector_error(sel));
    // The busy bit is set with a locked update; another processor may have won the race.
    bool was_busy;
    if ((st = update_tss_busy(c, la, true, was_busy)) != Status::kNext) return st;
    if (was_busy) return c.fault(Vector::kGP, selector_error(sel));
    c.state.tr = {sel, base, d.limit(), d.ar() | 2u};
    return Status::kNext;
  }
};

// SLDT/STR: CR4.UMIP forbids them outside CPL 0. A register destination is zero-extended; a
// memory destination is 16 bits whatever the operand size.
template <bool Tr, unsigned N, bool Mem> struct StoreSystemSelector {
  static Status run(Cpu& c, const Insn& i) {
    if (descriptors_unavailable(c)) return c.fault(Vector::kUD);
    if ((c.state.cr4 & cr4::kUMIP) && c.cpl() > 0) return c.fault(Vector::kGP, 0);
    if (descriptor_table_exiting(c))
      return ldtr_tr_exit<Mem>(c, i, Tr ? insn_info::SystemSelectorInsn::kStr : insn_info::SystemSelectorInsn::kSldt);
    const uint16_t sel = Tr ? c.state.tr.selector : c.state.ldtr.selector;
    if (Mem) return c.write<uint16_t>(seg_of(i), c.effective_address(i), sel);
    set_reg<N>(c, i.rm, sel);
    return Status::kNext;
  }
};
template <unsigned N> using SldtR = StoreSystemSelector<false, N, false>;
template <unsigned N> using StrR = StoreSystemSelector<true, N, false>;

// ---- selectors --------------------------------------------------------------------------------

Handler select_load_far_pointer(const DecodeInput& in, Insn& i) {
  switch (in.zi.mnemonic) {
    case ZYDIS_MNEMONIC_LDS: i.aux = uint8_t(SegReg::kDS); break;
    case ZYDIS_MNEMONIC_LES: i.aux = uint8_t(SegReg::kES); break;
    case ZYDIS_MNEMONIC_LFS: i.aux = uint8_t(SegReg::kFS); break;
    case ZYDIS_MNEMONIC_LGS: i.aux = uint8_t(SegReg::kGS); break;
    default: i.aux = uint8_t(SegReg::kSS); break;
  }
  if (!is_reg(in.ops[0]) || !is_mem(in.ops[1])) return nullptr;
  i.reg = reg_operand(in.ops[0]);
  return sized_wdq<LoadFarPointer>(in.ops[0].size / 8);
}

Handler select_lar_lsl(const DecodeInput& in, Insn& i) {
  const bool lar = in.zi.mnemonic == ZYDIS_MNEMONIC_LAR;
  i.reg = reg_operand(in.ops[0]);
  const unsigned n = in.ops[0].size / 8;
  if (is_reg(in.ops[1])) {
    i.rm = gpr_index(in.ops[1].reg.value);
    return lar ? sized_wdq<LarR>(n) : sized_wdq<LslR>(n);
  }
  return lar ? sized_wdq<LarM>(n) : sized_wdq<LslM>(n);
}

Handler select_verr_verw(const DecodeInput& in, Insn& i) {
  const bool mem = is_mem(in.ops[0]);
  if (!mem) i.rm = gpr_index(in.ops[0].reg.value);
  if (in.zi.mnemonic == ZYDIS_MNEMONIC_VERR) return mem ? &Verify<Probe::kVerr, true>::run : &Verify<Probe::kVerr, false>::run;
  return mem ? &Verify<Probe::kVerw, true>::run : &Verify<Probe::kVerw, false>::run;
}

Handler select_arpl(const DecodeInput& in, Insn& i) {
  i.reg = gpr_index(in.ops[1].reg.value);
  if (is_mem(in.ops[0])) return &Arpl<true>::run;
  i.rm = gpr_index(in.ops[0].reg.value);
  return &Arpl<false>::run;
}

Handler select_lldt_ltr(const DecodeInput& in, Insn& i) {
  const bool mem = is_mem(in.ops[0]);
  if (!mem) i.rm = gpr_index(in.ops[0].reg.value);
  if (in.zi.mnemonic == ZYDIS_MNEMONIC_LLDT) return mem ? &Lldt<true>::run : &Lldt<false>::run;
  return mem ? &Ltr<true>::run : &Ltr<false>::run;
}

Handler select_sldt_str(const DecodeInput& in, Insn& i) {
  const bool tr = in.zi.mnemonic == ZYDIS_MNEMONIC_STR;
  if (is_mem(in.ops[0])) return tr ? &StoreSystemSelector<true, 2, true>::run : &StoreSystemSelector<false, 2, true>::run;
  i.rm = gpr_index(in.ops[0].reg.value);
  return tr ? sized_wdq<StrR>(in.ops[0].size / 8) : sized_wdq<SldtR>(in.ops[0].size / 8);
}

}  // namespace

Handler select_mov_sreg(const DecodeInput& in, Insn& i) {
  const ZydisDecodedOperand& d = in.ops[0];
  const ZydisDecodedOperand& s = in.ops[1];
  if (is_reg(d) && ZydisRegisterGetClass(d.reg.value) == ZYDIS_REGCLASS_SEGMENT) {
    const SegReg sr = sreg_of(d.reg.value);
    if (sr == SegReg::kCS) return nullptr;  // MOV CS, r/m is #UD (SDM Vol. 2 MOV)
    i.aux = uint8_t(sr);
    if (is_mem(s)) return &MovToSreg<true>::run;
    i.rm = gpr_index(s.reg.value);
    return &MovToSreg<false>::run;
  }
  i.aux = uint8_t(sreg_of(s.reg.value));
  if (is_mem(d)) return &mov_from_sreg_m;
  i.reg = gpr_index(d.reg.value);
  return sized_wdq<MovFromSregR>(d.size / 8);
}

Handler select_push_sreg(const DecodeInput& in, Insn& i) {
  i.aux = uint8_t(sreg_of(in.ops[0].reg.value));
  return sized_wdq<PushSreg>(in.zi.operand_width / 8);
}

Handler select_pop_sreg(const DecodeInput& in, Insn& i) {
  const SegReg s = sreg_of(in.ops[0].reg.value);
  if (s == SegReg::kCS) return nullptr;  // POP CS does not exist (0F is the two-byte escape)
  i.aux = uint8_t(s);
  return sized_wdq<PopSreg>(in.zi.operand_width / 8);
}

void register_segment(SelectorTable& t) {
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_LDS, ZYDIS_MNEMONIC_LES, ZYDIS_MNEMONIC_LFS, ZYDIS_MNEMONIC_LGS, ZYDIS_MNEMONIC_LSS})
    t.add(m, &select_load_far_pointer);
  t.add(ZYDIS_MNEMONIC_LAR, &select_lar_lsl);
  t.add(ZYDIS_MNEMONIC_LSL, &select_lar_lsl);
  t.add(ZYDIS_MNEMONIC_VERR, &select_verr_verw);
  t.add(ZYDIS_MNEMONIC_VERW, &select_verr_verw);
  t.add(ZYDIS_MNEMONIC_ARPL, &select_arpl);
  t.add(ZYDIS_MNEMONIC_LLDT, &select_lldt_ltr);
  t.add(ZYDIS_MNEMONIC_LTR, &select_lldt_ltr);
  t.add(ZYDIS_MNEMONIC_SLDT, &select_sldt_str);
  t.add(ZYDIS_MNEMONIC_STR, &select_sldt_str);
}

}  // namespace nestvm::cpu
