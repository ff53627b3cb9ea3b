// Instruction class: far control transfers and software interrupts. JMP and CALL far (direct,
// through call gates, to tasks), RET far, IRET/IRETD/IRETQ, INT n, INT3, INTO, INT1 (SDM Vol. 2,
// the "Operation" sections of JMP, CALL, RET, IRET and INT n; Vol. 3 §5.8).
#include "cpu/insn/delegates.h"
#include "cpu/insn/operand.h"
#include "cpu/segmentation.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

enum class FarKind : uint8_t { kJmp, kCall };

unsigned iopl(const Cpu& c) { return unsigned((c.state.rflags & rflags::kIOPL) >> rflags::kIoplShift); }
bool segments_are_real(const Cpu& c) { return !c.protected_mode() || c.v86_mode(); }
Segment& seg_reg(Cpu& c, SegReg s) { return c.state.seg[unsigned(s)]; }

// RSP after loading a new SS with a stack pointer popped or read as `size` bytes: 64-bit mode
// takes it whole, otherwise the new SS's B flag says whether ESP or only SP is loaded.
uint64_t new_stack_pointer(const Cpu& c, const Segment& ss, bool to_64bit, uint64_t v) {
  if (to_64bit) return v;
  if (ss.ar & ar::kDB) return uint32_t(v);
  return (c.state.gpr[kRsp] & ~0xffffull) | (v & 0xffff);
}

// ---- JMP/CALL far ---------------------------------------------------------------------------

// Real-address and virtual-8086 mode: CS = selector, base = selector << 4.
Status far_real(Cpu& c, const Insn& i, FarKind kind, uint16_t sel, uint64_t off, unsigned osz) {
  const Segment cs = real_mode_segment(c, SegReg::kCS, sel);
  off &= size_mask(osz);
  if (off > cs.limit) return c.fault(Vector::kGP, 0);
  if (kind == FarKind::kCall) {
    const TransferUndo undo(c);
    const uint64_t frame[2] = {seg_reg(c, SegReg::kCS).selector, c.next_rip(i)};
    const Status st = push_all(c, undo, osz, frame, 2);
    if (st != Status::kNext) return st;
  }
  install_segment(c, SegReg::kCS, cs);
  c.state.rip = off;
  return Status::kJumped;
}

// A transfer that stays at the current privilege level: CALL pushes CS and the return address
// (`size` bytes each) on the current stack, then CS:RIP is loaded.
Status same_privilege(Cpu& c, const Insn& i, FarKind kind, const Segment& cs, uint64_t target, unsigned size) {
  if (kind == FarKind::kCall) {
    const TransferUndo undo(c);
    const uint64_t frame[2] = {seg_reg(c, SegReg::kCS).selector, c.next_rip(i)};
    const Status st = push_all(c, undo, size, frame, 2);
    if (st != Status::kNext) return st;
  }
  install_segment(c, SegReg::kCS, cs);
  c.state.rip = target;
  return Status::kJumped;
}

// CALL through a call gate to a more privileged non-conforming segment (SDM Vol. 2 CALL
// "MORE-PRIVILEGE"): the stack of the new CPL comes from the TSS; 16/32-bit gates copy their
// parameter count of words/dwords from the caller's stack.
Status call_more_privilege(Cpu& c, const Insn& i, const Descriptor& gate, unsigned gsz, Descriptor& cd,
                           uint64_t cd_la, uint16_t cs_sel, uint64_t target) {
  const unsigned new_cpl = cd.dpl();
  const uint16_t old_cs = seg_reg(c, SegReg::kCS).selector;
  const uint16_t old_ss = seg_reg(c, SegReg::kSS).selector;
  const uint64_t old_sp = c.state.gpr[kRsp];
  const uint64_t ret = c.next_rip(i);
  Status st;
  if (c.long_mode()) {
    // 64-bit call gate: RSPn from the 64-bit TSS, a null SS with RPL = new CPL, no parameters.
    uint64_t rsp;
    if ((st = read_tss_rsp(c, 4 + 8 * new_cpl, 0, rsp)) != Status::kNext) return st;
    if (!is_canonical(rsp) || !is_canonical(rsp - 32)) return c.fault(Vector::kSS, 0);
    const Segment probe = segment_from(cs_sel, cd);
    if (!code_target_ok(c, probe, target)) return c.fault(Vector::kGP, 0);
    if ((st = set_accessed(c, cd_la, cd)) != Status::kNext) return st;
    const TransferUndo undo(c);
    seg_reg(c, SegReg::kSS) = null_segment(uint16_t(new_cpl), new_cpl);
    seg_reg(c, SegReg::kCS) = segment_from(uint16_t((cs_sel & ~3) | new_cpl), cd);
    c.state.gpr[kRsp] = rsp;
    c.refresh_mode();
    const uint64_t frame[4] = {old_ss, old_sp, old_cs, ret};
    if ((st = push_all(c, undo, 8, frame, 4)) != Status::kNext) return st;
    c.state.rip = target;
    return Status::kJumped;
  }
  uint16_t ss_sel;
  uint64_t new_sp;
  Segment ss;
  if ((st = read_tss_stack(c, new_cpl, 0, ss_sel, new_sp)) != Status::kNext) return st;
  if ((st = load_tss_stack_segment(c, ss_sel, new_cpl, 0, ss)) != Status::kNext) return st;
  const unsigned params = gate.gate_param_count();
  if (!stack_fits(ss, new_sp, (4 + params) * gsz)) return c.fault(Vector::kSS, selector_error(ss_sel));
  if (target > cd.limit()) return c.fault(Vector::kGP, 0);
  uint64_t frame[4 + 31];
  unsigned n = 0;
  frame[n++] = old_ss;
  frame[n++] = old_sp;
  // Parameters keep their order: the one at the caller's [ESP] ends up just above CS:EIP.
  for (unsigned k = params; k-- > 0;) {
    if ((st = read_stack_sized(c, gsz, uint64_t(k) * gsz, frame[n])) != Status::kNext) return st;
    ++n;
  }
  frame[n++] = old_cs;
  frame[n++] = ret;
  if ((st = set_accessed(c, cd_la, cd)) != Status::kNext) return st;
  const TransferUndo undo(c);
  seg_reg(c, SegReg::kSS) = ss;
  seg_reg(c, SegReg::kCS) = segment_from(uint16_t((cs_sel & ~3) | new_cpl), cd);
  c.state.gpr[kRsp] = new_sp;
  c.refresh_mode();
  if ((st = push_all(c, undo, gsz, frame, n)) != Status::kNext) return st;
  c.state.rip = target;
  return Status::kJumped;
}

// JMP/CALL through a call gate (SDM Vol. 3 §5.8.4-5.8.6). In IA-32e mode gates are 16 bytes and
// lead to 64-bit code only.
Status through_call_gate(Cpu& c, const Insn& i, FarKind kind, uint16_t gate_sel, const Descriptor& gate) {
  const unsigned cpl = c.cpl();
  if (gate.dpl() < cpl || gate.dpl() < selector_rpl(gate_sel)) return c.fault(Vector::kGP, selector_error(gate_sel));
  if (!gate.p()) return c.fault(Vector::kNP, selector_error(gate_sel));
  unsigned gsz = gate.type() == sys_type::kCallGate16 ? 2 : 4;
  uint64_t target = gate.gate_offset() & size_mask(gsz);
  Status st;
  if (c.long_mode()) {
    uint64_t hi;
    if ((st = fetch_descriptor_high(c, gate_sel, Vector::kGP, 0, hi)) != Status::kNext) return st;
    if (!high_half_type_ok(hi)) return c.fault(Vector::kGP, selector_error(gate_sel));
    target |= (hi & 0xffffffffull) << 32;
    gsz = 8;
  }
  const uint16_t cs_sel = gate.gate_selector();
  if (selector_is_null(cs_sel)) return c.fault(Vector::kGP, 0);
  Descriptor cd;
  uint64_t cd_la;
  if ((st = fetch_descriptor(c, cs_sel, Vector::kGP, 0, cd, cd_la)) != Status::kNext) return st;
  if (!cd.is_code()) return c.fault(Vector::kGP, selector_error(cs_sel));
  const bool conforming = cd.type() & ar::kConforming;
  // JMP cannot change privilege: only a conforming segment or one at DPL = CPL is a target.
  const bool bad_dpl = kind == FarKind::kJmp ? (conforming ? cd.dpl() > cpl : cd.dpl() != cpl) : cd.dpl() > cpl;
  if (bad_dpl) return c.fault(Vector::kGP, selector_error(cs_sel));
  if (c.long_mode() && (!cd.l() || cd.db())) return c.fault(Vector::kGP, selector_error(cs_sel));
  if (!cd.p()) return c.fault(Vector::kNP, selector_error(cs_sel));
  if (kind == FarKind::kCall && !conforming && cd.dpl() < cpl)
    return call_more_privilege(c, i, gate, gsz, cd, cd_la, cs_sel, target);
  const Segment probe = segment_from(uint16_t((cs_sel & ~3) | cpl), cd);
  if (!code_target_ok(c, probe, target)) return c.fault(Vector::kGP, 0);
  if ((st = set_accessed(c, cd_la, cd)) != Status::kNext) return st;
  return same_privilege(c, i, kind, segment_from(uint16_t((cs_sel & ~3) | cpl), cd), target, gsz);
}

// JMP/CALL to a TSS or through a task gate (SDM Vol. 3 §7.3): legacy protected mode only.
Status far_to_task(Cpu& c, const Insn& i, FarKind kind, uint16_t sel, const Descriptor& d, uint64_t la) {
  const unsigned cpl = c.cpl();
  if (d.dpl() < cpl || d.dpl() < selector_rpl(sel)) return c.fault(Vector::kGP, selector_error(sel));
  uint16_t tss_sel = sel;
  Descriptor tss = d;
  uint64_t tss_la = la;
  Status st;
  if (d.type() == sys_type::kTaskGate) {
    if (!d.p()) return c.fault(Vector::kNP, selector_error(sel));
    tss_sel = d.gate_selector();
    if (selector_ti(tss_sel)) return c.fault(Vector::kGP, selector_error(tss_sel));
    if ((st = fetch_descriptor(c, tss_sel, Vector::kGP, 0, tss, tss_la)) != Status::kNext) return st;
    if (tss.s() || (tss.type() != sys_type::kTss16Avail && tss.type() != sys_type::kTss32Avail))
      return c.fault(Vector::kGP, selector_error(tss_sel));
  }
  if (!tss.p()) return c.fault(Vector::kNP, selector_error(tss_sel));
  return task_switch(c, tss_sel, tss, tss_la, kind == FarKind::kJmp ? TaskSwitchSource::kJmp : TaskSwitchSource::kCall,
                     c.next_rip(i));
}

// Protected mode (SDM Vol. 2 JMP/CALL "far jump/call in protected mode").
Status far_protected(Cpu& c, const Insn& i, FarKind kind, uint16_t sel, uint64_t off, unsigned osz) {
  if (selector_is_null(sel)) return c.fault(Vector::kGP, 0);
  Descriptor d;
  uint64_t la;
  Status st = fetch_descriptor(c, sel, Vector::kGP, 0, d, la);
  if (st != Status::kNext) return st;
  const unsigned cpl = c.cpl();
  if (d.is_code()) {
    if (d.type() & ar::kConforming) {
      if (d.dpl() > cpl) return c.fault(Vector::kGP, selector_error(sel));
    } else if (selector_rpl(sel) > cpl || d.dpl() != cpl) {
      return c.fault(Vector::kGP, selector_error(sel));
    }
    if (c.long_mode() && d.l() && d.db()) return c.fault(Vector::kGP, selector_error(sel));
    if (!d.p()) return c.fault(Vector::kNP, selector_error(sel));
    off &= size_mask(osz);
    const uint16_t cs_sel = uint16_t((sel & ~3) | cpl);
    if (!code_target_ok(c, segment_from(cs_sel, d), off)) return c.fault(Vector::kGP, 0);
    if ((st = set_accessed(c, la, d)) != Status::kNext) return st;
    return same_privilege(c, i, kind, segment_from(cs_sel, d), off, osz);
  }
  if (d.s()) return c.fault(Vector::kGP, selector_error(sel));  // a data segment
  switch (d.type()) {
    case sys_type::kCallGate32:
      return through_call_gate(c, i, kind, sel, d);
    case sys_type::kCallGate16:
      if (c.long_mode()) break;  // only 64-bit call gates exist in IA-32e mode
      return through_call_gate(c, i, kind, sel, d);
    case sys_type::kTaskGate: case sys_type::kTss16Avail: case sys_type::kTss32Avail:
      if (c.long_mode()) break;  // no task switching in IA-32e mode (SDM Vol. 3 §7.7)
      return far_to_task(c, i, kind, sel, d, la);
    default:
      break;
  }
  return c.fault(Vector::kGP, selector_error(sel));
}

Status far_transfer(Cpu& c, const Insn& i, FarKind kind, uint16_t sel, uint64_t off, unsigned osz) {
  if (segments_are_real(c)) return far_real(c, i, kind, sel, off, osz);
  return far_protected(c, i, kind, sel, off, osz);
}

// ptr16:16 / ptr16:32 operands (the selector is Insn::imm2).
template <FarKind K, unsigned N> struct FarPtr {
  static Status run(Cpu& c, const Insn& i) { return far_transfer(c, i, K, i.imm2, i.imm, N); }
};
// m16:16 / m16:32 / m16:64: the offset, then the selector.
template <FarKind K, unsigned N> struct FarMem {
  static Status run(Cpu& c, const Insn& i) {
    const uint64_t ea = c.effective_address(i);
    uint_t<N> off;
    uint16_t sel;
    Status st = c.read<uint_t<N>>(seg_of(i), ea, off);
    if (st != Status::kNext) return st;
    if ((st = c.read<uint16_t>(seg_of(i), (ea + N) & size_mask(i.asz), sel)) != Status::kNext) return st;
    return far_transfer(c, i, K, sel, off, N);
  }
};

// ---- RET far and IRET: the return code and stack segments -------------------------------------

// SDM Vol. 2 RET/IRET: checks on the code segment returned to.
Status check_return_cs(Cpu& c, uint16_t sel, Descriptor& d, uint64_t& la) {
  if (selector_is_null(sel)) return c.fault(Vector::kGP, 0);
  Status st = fetch_descriptor(c, sel, Vector::kGP, 0, d, la);
  if (st != Status::kNext) return st;
  const unsigned rpl = selector_rpl(sel);
  if (!d.is_code() || rpl < c.cpl()) return c.fault(Vector::kGP, selector_error(sel));
  const bool conforming = d.type() & ar::kConforming;
  if (conforming ? d.dpl() > rpl : d.dpl() != rpl) return c.fault(Vector::kGP, selector_error(sel));
  if (c.long_mode() && d.l() && d.db()) return c.fault(Vector::kGP, selector_error(sel));
  if (!d.p()) return c.fault(Vector::kNP, selector_error(sel));
  return Status::kNext;
}

// The stack segment popped with a return to privilege `rpl` (or by IRET in 64-bit mode). A null
// SS is allowed only going to 64-bit mode at CPL < 3 with its RPL = the new CPL (SDM Vol. 2 IRET
// "IA-32e-MODE-RETURN").
Status check_return_ss(Cpu& c, uint16_t sel, unsigned rpl, bool to_64bit, Segment& out) {
  if (selector_is_null(sel)) {
    if (to_64bit && rpl != 3 && selector_rpl(sel) == rpl) {
      out = null_segment(sel, rpl);
      return Status::kNext;
    }
    return c.fault(Vector::kGP, 0);
  }
  Descriptor d;
  uint64_t la;
  Status st = fetch_descriptor(c, sel, Vector::kGP, 0, d, la);
  if (st != Status::kNext) return st;
  if (selector_rpl(sel) != rpl || !d.is_data() || !(d.type() & ar::kWritable) || d.dpl() != rpl)
    return c.fault(Vector::kGP, selector_error(sel));
  if (!d.p()) return c.fault(Vector::kSS, selector_error(sel));
  if ((st = set_accessed(c, la, d)) != Status::kNext) return st;
  out = segment_from(sel, d);
  return Status::kNext;
}

// RET far [imm16] (SDM Vol. 2 RET "far return"): N-byte offset and selector slots; imm16 bytes
// of parameters are released from the stack being returned from and the one returned to.
template <unsigned N> struct RetFar {
  static Status run(Cpu& c, const Insn& i) {
    const uint64_t imm = uint16_t(i.imm);
    uint64_t ip, cs_raw;
    Status st = read_stack_sized(c, N, 0, ip);
    if (st != Status::kNext) return st;
    if ((st = read_stack_sized(c, N, N, cs_raw)) != Status::kNext) return st;
    const uint16_t sel = uint16_t(cs_raw);
    const unsigned old_stack = c.stack_size();
    const uint64_t popped_sp = c.sp() + 2 * N + imm;
    if (segments_are_real(c)) {
      const Segment cs = real_mode_segment(c, SegReg::kCS, sel);
      if (ip > cs.limit) return c.fault(Vector::kGP, 0);
      install_segment(c, SegReg::kCS, cs);
      c.set_reg(old_stack, kRsp, popped_sp);
      c.state.rip = ip;
      return Status::kJumped;
    }
    Descriptor cd;
    uint64_t cd_la;
    if ((st = check_return_cs(c, sel, cd, cd_la)) != Status::kNext) return st;
    const unsigned rpl = selector_rpl(sel);
    const bool to_64bit = c.long_mode() && cd.l();
    if (rpl > c.cpl()) {
      uint64_t new_sp, ss_raw;
      if ((st = read_stack_sized(c, N, 2 * N + imm, new_sp)) != Status::kNext) return st;
      if ((st = read_stack_sized(c, N, 3 * N + imm, ss_raw)) != Status::kNext) return st;
      Segment ss;
      if ((st = check_return_ss(c, uint16_t(ss_raw), rpl, to_64bit, ss)) != Status::kNext) return st;
      if (!code_target_ok(c, segment_from(sel, cd), ip)) return c.fault(Vector::kGP, 0);
      if ((st = set_accessed(c, cd_la, cd)) != Status::kNext) return st;
      const uint64_t rsp = new_stack_pointer(c, ss, to_64bit, new_sp);
      seg_reg(c, SegReg::kCS) = segment_from(sel, cd);
      seg_reg(c, SegReg::kSS) = ss;
      c.state.gpr[kRsp] = rsp;
      c.refresh_mode();
      c.set_sp(c.sp() + imm);
      null_segments_above_cpl(c);
    } else {
      if (!code_target_ok(c, segment_from(sel, cd), ip)) return c.fault(Vector::kGP, 0);
      if ((st = set_accessed(c, cd_la, cd)) != Status::kNext) return st;
      install_segment(c, SegReg::kCS, segment_from(sel, cd));
      c.set_reg(old_stack, kRsp, popped_sp);
    }
    c.state.rip = ip;
    return Status::kJumped;
  }
};

// ---- IRET ------------------------------------------------------------------------------------

constexpr uint64_t kIretStatus = rflags::kArith | rflags::kTF | rflags::kDF | rflags::kNT | rflags::kFixed1;

// IRET in real-address mode (SDM Vol. 2 IRET "REAL-ADDRESS-MODE").
Status iret_real(Cpu& c, unsigned osz, uint64_t ip, uint16_t sel, uint64_t temp) {
  const Segment cs = real_mode_segment(c, SegReg::kCS, sel);
  if (ip > cs.limit) return c.fault(Vector::kGP, 0);
  const uint64_t old = c.rflags();
  // IRETD: "EFLAGS ← (tempEFLAGS AND 257FD5H) OR (EFLAGS AND 1A0000H)": VM, VIF, VIP stay.
  const uint64_t f = osz == 2 ? (old & ~0xffffull) | (temp & 0xffff) : (temp & 0x257fd5) | (old & 0x1a0000);
  c.set_sp(c.sp() + 3 * osz);
  install_segment(c, SegReg::kCS, cs);
  c.set_rflags(f);
  c.state.rip = ip;
  return Status::kJumped;
}

// IRET in virtual-8086 mode: only at IOPL 3 (no VME); VM and IOPL (and VIF/VIP) stay.
Status iret_v86(Cpu& c, unsigned osz, uint64_t ip, uint16_t sel, uint64_t temp) {
  if (iopl(c) < 3) return c.fault(Vector::kGP, 0);
  const Segment cs = real_mode_segment(c, SegReg::kCS, sel);
  if (ip > cs.limit) return c.fault(Vector::kGP, 0);
  const uint64_t old = c.rflags();
  const uint64_t keep = osz == 2 ? ~0xffffull | rflags::kIOPL
                                 : rflags::kVM | rflags::kIOPL | rflags::kVIP | rflags::kVIF;
  c.set_sp(c.sp() + 3 * osz);
  install_segment(c, SegReg::kCS, cs);
  c.set_rflags((old & keep) | (temp & ~keep));
  c.state.rip = ip;
  return Status::kJumped;
}

// IRETD at CPL 0 with VM = 1 in the popped EFLAGS (SDM Vol. 2 IRET "RETURN-TO-VIRTUAL-8086-MODE"):
// ESP, SS, ES, DS, FS, GS follow on the stack.
Status iret_to_v86(Cpu& c, uint64_t ip, uint16_t sel, uint64_t temp) {
  uint64_t v[6];  // ESP, SS, ES, DS, FS, GS
  for (unsigned k = 0; k < 6; ++k) {
    const Status st = read_stack_sized(c, 4, 12 + 4 * k, v[k]);
    if (st != Status::kNext) return st;
  }
  if (ip > 0xffff) return c.fault(Vector::kGP, 0);  // the new CS limit is 64 KiB
  auto v86_seg = [](uint64_t s) {
    return Segment{uint16_t(s), uint64_t(uint16_t(s)) << 4, 0xffff,
                   ar::kP | ar::kS | (3u << ar::kDplShift) | ar::kWritable | ar::kAccessed};
  };
  seg_reg(c, SegReg::kCS) = v86_seg(sel);
  seg_reg(c, SegReg::kSS) = v86_seg(v[1]);
  seg_reg(c, SegReg::kES) = v86_seg(v[2]);
  seg_reg(c, SegReg::kDS) = v86_seg(v[3]);
  seg_reg(c, SegReg::kFS) = v86_seg(v[4]);
  seg_reg(c, SegReg::kGS) = v86_seg(v[5]);
  c.state.gpr[kRsp] = uint32_t(v[0]);
  c.set_rflags(temp);
  c.refresh_mode();  // CPL 3 in virtual-8086 mode
  c.state.rip = ip;
  return Status::kJumped;
}

// IRET from a nested task (NT = 1): back to the task in the current TSS's previous-task link.
Status iret_task_return(Cpu& c, const Insn& i) {
  uint16_t link;
  Status st = sys_read<uint16_t>(c, c.state.tr.base, link);
  if (st != Status::kNext) return st;
  if (selector_ti(link)) return c.fault(Vector::kTS, selector_error(link));
  Descriptor tss;
  uint64_t la;
  if ((st = fetch_descriptor(c, link, Vector::kTS, 0, tss, la)) != Status::kNext) return st;
  if (tss.s() || (tss.type() != sys_type::kTss16Busy && tss.type() != sys_type::kTss32Busy))
    return c.fault(Vector::kTS, selector_error(link));
  if (!tss.p()) return c.fault(Vector::kNP, selector_error(link));
  return task_switch(c, link, tss, la, TaskSwitchSource::kIret, c.next_rip(i));
}

// IRET in protected and IA-32e mode (SDM Vol. 2 IRET "PROTECTED-MODE", "IA-32e-MODE").
Status iret_protected(Cpu& c, const Insn& i, unsigned osz, uint64_t ip, uint16_t sel, uint64_t temp) {
  if (c.state.rflags & rflags::kNT) {
    if (c.long_mode()) return c.fault(Vector::kGP, 0);  // no task nesting in IA-32e mode
    return iret_task_return(c, i);
  }
  const unsigned cpl = c.cpl();
  if (!c.long_mode() && osz == 4 && (temp & rflags::kVM) && cpl == 0) return iret_to_v86(c, ip, sel, temp);
  Descriptor cd;
  uint64_t cd_la;
  Status st = check_return_cs(c, sel, cd, cd_la);
  if (st != Status::kNext) return st;
  const unsigned rpl = selector_rpl(sel);
  const bool to_64bit = c.long_mode() && cd.l();
  // 64-bit mode pops SS:RSP whatever the privilege levels; elsewhere only going outward.
  const bool pop_ss = rpl > cpl || c.in_64bit_mode();
  Segment ss;
  uint64_t new_sp = 0;
  if (pop_ss) {
    uint64_t ss_raw;
    if ((st = read_stack_sized(c, osz, 3 * osz, new_sp)) != Status::kNext) return st;
    if ((st = read_stack_sized(c, osz, 4 * osz, ss_raw)) != Status::kNext) return st;
    if ((st = check_return_ss(c, uint16_t(ss_raw), rpl, to_64bit, ss)) != Status::kNext) return st;
  }
  if (!code_target_ok(c, segment_from(sel, cd), ip)) return c.fault(Vector::kGP, 0);
  if ((st = set_accessed(c, cd_la, cd)) != Status::kNext) return st;

  // EFLAGS by the old CPL: IF only if CPL <= IOPL; IOPL, VIF, VIP only at CPL 0; RF, AC, ID
  // not from a 16-bit image.
  uint64_t mask = kIretStatus;
  if (osz >= 4) mask |= rflags::kRF | rflags::kAC | rflags::kID;
  if (cpl <= iopl(c)) mask |= rflags::kIF;
  if (cpl == 0) mask |= rflags::kIOPL | (osz >= 4 ? rflags::kVIF | rflags::kVIP : 0);
  mask &= size_mask(osz);
  const uint64_t f = (c.rflags() & ~mask) | (temp & mask);
  const unsigned old_stack = c.stack_size();
  const uint64_t popped_sp = c.sp() + 3 * osz;

  seg_reg(c, SegReg::kCS) = segment_from(sel, cd);
  if (pop_ss) {
    seg_reg(c, SegReg::kSS) = ss;
    c.state.gpr[kRsp] = new_stack_pointer(c, ss, to_64bit, new_sp);
  } else {
    c.set_reg(old_stack, kRsp, popped_sp);
  }
  c.refresh_mode();
  c.set_rflags(f);
  if (rpl > cpl) null_segments_above_cpl(c);
  c.state.rip = ip;
  return Status::kJumped;
}

template <unsigned N> struct Iret {
  static Status run(Cpu& c, const Insn& i) {
    // SDM Vol. 3 §28.2.3 ("NMI unblocking due to IRET"): IRET unblocks NMIs even if it then
    // faults (in VMX non-root operation per "NMI exiting" and "virtual NMIs", §26.3).
    c.iret_unblock_nmis();
    uint64_t ip, cs_raw, temp;
    Status st = read_stack_sized(c, N, 0, ip);
    if (st != Status::kNext) return st;
    if ((st = read_stack_sized(c, N, N, cs_raw)) != Status::kNext) return st;
    if ((st = read_stack_sized(c, N, 2 * N, temp)) != Status::kNext) return st;
    const uint16_t sel = uint16_t(cs_raw);
    if (!c.protected_mode()) st = iret_real(c, N, ip, sel, temp);
    else if (c.v86_mode()) st = iret_v86(c, N, ip, sel, temp);
    else st = iret_protected(c, i, N, ip, sel, temp);
    if (st != Status::kFault) c.iret_completed();
    return st;
  }
};

// ---- INT n, INT3, INTO, INT1 -------------------------------------------------------------------
// Delivery (events.cpp, events_protected.cpp) does the gate checks and the frame.

Status int_n(Cpu& c, const Insn& i) { return c.software_interrupt(uint8_t(i.imm), EventType::kSoftwareInterrupt, i.len); }
Status int3(Cpu& c, const Insn& i) {
  return c.software_interrupt(uint8_t(Vector::kBP), EventType::kSoftwareException, i.len);
}
Status into(Cpu& c, const Insn& i) {
  if (!c.condition(0)) return Status::kNext;  // OF = 0: nothing happens
  return c.software_interrupt(uint8_t(Vector::kOF), EventType::kSoftwareException, i.len);
}
Status int1(Cpu& c, const Insn& i) {
  return c.software_interrupt(uint8_t(Vector::kDB), EventType::kPrivilegedSoftwareException, i.len);
}

template <template <unsigned> class H>
Handler by_size(unsigned osz) {
  switch (osz) {
    case 2: return &H<2>::run;
    case 4: return &H<4>::run;
    default: return &H<8>::run;
  }
}

template <unsigned N> using JmpFarPtr = FarPtr<FarKind::kJmp, N>;
template <unsigned N> using CallFarPtr = FarPtr<FarKind::kCall, N>;
template <unsigned N> using JmpFarMem = FarMem<FarKind::kJmp, N>;
template <unsigned N> using CallFarMem = FarMem<FarKind::kCall, N>;

Handler select_iret(const DecodeInput& in, Insn&) { return by_size<Iret>(in.zi.operand_width / 8); }

}  // namespace

Handler select_far_transfer(const DecodeInput& in, Insn&) {
  const unsigned osz = in.zi.operand_width / 8;
  const ZydisDecodedOperand& o = in.ops[0];
  switch (in.zi.mnemonic) {
    case ZYDIS_MNEMONIC_JMP:
      if (o.type == ZYDIS_OPERAND_TYPE_POINTER) return osz == 2 ? &JmpFarPtr<2>::run : &JmpFarPtr<4>::run;
      return is_mem(o) ? by_size<JmpFarMem>(osz) : nullptr;
    case ZYDIS_MNEMONIC_CALL:
      if (o.type == ZYDIS_OPERAND_TYPE_POINTER) return osz == 2 ? &CallFarPtr<2>::run : &CallFarPtr<4>::run;
      return is_mem(o) ? by_size<CallFarMem>(osz) : nullptr;
    case ZYDIS_MNEMONIC_RET:
      return by_size<RetFar>(osz);
    default:
      return nullptr;
  }
}

void register_far(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_IRET, &select_iret);
  t.add(ZYDIS_MNEMONIC_IRETD, &select_iret);
  t.add(ZYDIS_MNEMONIC_IRETQ, &select_iret);
  t.add(ZYDIS_MNEMONIC_INT, [](const DecodeInput&, Insn&) -> Handler { return &int_n; });
  t.add(ZYDIS_MNEMONIC_INT3, [](const DecodeInput&, Insn&) -> Handler { return &int3; });
  t.add(ZYDIS_MNEMONIC_INTO, [](const DecodeInput&, Insn&) -> Handler { return &into; });
  t.add(ZYDIS_MNEMONIC_INT1, [](const DecodeInput&, Insn&) -> Handler { return &int1; });
}

}  // namespace nestvm::cpu
