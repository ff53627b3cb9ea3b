// Event delivery through the IDT in protected, virtual-8086 and IA-32e mode (SDM Vol. 3 §6.12,
// §6.14, §21.3; Vol. 2 "INT n/INTO/INT3/INT1" Operation): gate checks, privilege changes with
// TSS stack switches, IST, frame layouts. A fault during delivery leaves the processor state as
// it was before delivery began; the common loop in events.cpp applies the double-fault rules.
#include "cpu/segmentation.h"

namespace nestvm::cpu {

using namespace arch;

namespace {

// INT n, INT3 and INTO: gate DPL is checked and error codes have EXT = 0 (SDM Vol. 3 §6.13).
bool is_software_interrupt(const Event& e) {
  return e.type == EventType::kSoftwareInterrupt || e.type == EventType::kSoftwareException;
}

// Events caused by an instruction that completes: the frame returns past it.
bool returns_past_instruction(const Event& e) {
  return is_software_interrupt(e) || e.type == EventType::kPrivilegedSoftwareException;
}

// SDM Vol. 3 §18.3.1.1: "For any fault-class exception except a debug exception generated in
// response to an instruction breakpoint, the value pushed for RF is 1." An event injected by VM
// entry pushes RF as VM entry loaded it (SDM §27.6.1.2).
bool is_fault_class(const Event& e) {
  return e.type == EventType::kHardwareException && !e.injected && arch::is_fault_class(e.vector);
}

// The end of every delivery (SDM Vol. 2 INT n: "TF ← 0; VM ← 0; RF ← 0; NT ← 0", and IF ← 0
// through an interrupt gate).
void enter_handler(Cpu& c, uint64_t rip, bool trap_gate) {
  uint64_t f = c.rflags() & ~(rflags::kTF | rflags::kNT | rflags::kRF | rflags::kVM);
  if (!trap_gate) f &= ~rflags::kIF;
  c.set_rflags(f);
  c.state.rip = rip;
}

// A task gate in the IDT (SDM Vol. 2 INT n "TASK-GATE"). Legacy protected mode only.
Status deliver_through_task_gate(Cpu& c, const Event& e, const Descriptor& gate, uint64_t ret_rip, uint32_t ext) {
  const uint16_t tss_sel = gate.gate_selector();
  if (selector_ti(tss_sel)) return c.fault(Vector::kGP, selector_error(tss_sel, ext));
  Descriptor tss;
  uint64_t la;
  Status st = fetch_descriptor(c, tss_sel, Vector::kGP, ext, tss, la);
  if (st != Status::kNext) return st;
  if (tss.s() || (tss.type() != sys_type::kTss16Avail && tss.type() != sys_type::kTss32Avail))
    return c.fault(Vector::kGP, selector_error(tss_sel, ext));
  if (!tss.p()) return c.fault(Vector::kNP, selector_error(tss_sel, ext));
  return task_switch(c, tss_sel, tss, la, TaskSwitchSource::kInterrupt, ret_rip, e.has_error, e.error, ext);
}

// 16- and 32-bit protected mode and virtual-8086 mode: 8-byte gates.
Status deliver_legacy(Cpu& c, const Event& e) {
  const bool soft = is_software_interrupt(e);
  const uint32_t ext = soft ? 0 : selector_error::kExt;
  const uint32_t idt_error = uint32_t(e.vector) * 8 + selector_error::kIdt + ext;
  const bool v86 = c.v86_mode();
  const unsigned cpl = c.cpl();
  // No VME in the CPU models: INT n in virtual-8086 mode at IOPL < 3 goes to the monitor.
  if (v86 && e.type == EventType::kSoftwareInterrupt && ((c.state.rflags & rflags::kIOPL) >> rflags::kIoplShift) < 3)
    return c.fault(Vector::kGP, 0);
  if (uint32_t(e.vector) * 8 + 7 > c.state.idtr.limit) return c.fault(Vector::kGP, idt_error);
  Descriptor gate;
  Status st = sys_read<uint64_t>(c, c.state.idtr.base + uint64_t(e.vector) * 8, gate.raw);
  if (st != Status::kNext) return st;
  const uint32_t type = gate.type();
  const bool valid_type = type == sys_type::kTaskGate || type == sys_type::kIntGate16 || type == sys_type::kTrapGate16 ||
                          type == sys_type::kIntGate32 || type == sys_type::kTrapGate32;
  if (gate.s() || !valid_type) return c.fault(Vector::kGP, idt_error);
  if (soft && gate.dpl() < cpl) return c.fault(Vector::kGP, idt_error);
  if (!gate.p()) return c.fault(Vector::kNP, idt_error);
  const uint64_t ret_rip = returns_past_instruction(e) ? (c.state.rip + e.insn_len) & c.ip_mask() : c.state.rip;
  if (type == sys_type::kTaskGate) return deliver_through_task_gate(c, e, gate, ret_rip, ext);

  const unsigned gsz = (type & 8) ? 4 : 2;  // 32- or 16-bit gate
  const bool trap_gate = type & 1;
  const uint16_t cs_sel = gate.gate_selector();
  const uint32_t offset = gsz == 4 ? gate.gate_offset() : gate.gate_offset() & 0xffff;
  if (selector_is_null(cs_sel)) return c.fault(Vector::kGP, ext);
  Descriptor cd;
  uint64_t cd_la;
  if ((st = fetch_descriptor(c, cs_sel, Vector::kGP, ext, cd, cd_la)) != Status::kNext) return st;
  if (!cd.is_code() || cd.dpl() > cpl) return c.fault(Vector::kGP, selector_error(cs_sel, ext));
  if (!cd.p()) return c.fault(Vector::kNP, selector_error(cs_sel, ext));
  // DPL > CPL is excluded above, so a handler runs either at a more privileged level (a
  // non-conforming segment with DPL < CPL) or at the same one.
  const bool inter = !(cd.type() & ar::kConforming) && cd.dpl() < cpl;
  if (v86 && (!inter || cd.dpl() != 0)) return c.fault(Vector::kGP, selector_error(cs_sel, ext));

  uint64_t flags = c.rflags();
  if (is_fault_class(e)) flags |= rflags::kRF;
  const uint16_t old_cs = c.state.seg[unsigned(SegReg::kCS)].selector;
  const uint16_t old_ss = c.state.seg[unsigned(SegReg::kSS)].selector;
  const uint64_t old_sp = c.state.gpr[kRsp];

  if (inter) {
    const unsigned new_cpl = cd.dpl();
    uint16_t ss_sel;
    uint64_t new_sp;
    Segment ss;
    if ((st = read_tss_stack(c, new_cpl, ext, ss_sel, new_sp)) != Status::kNext) return st;
    if ((st = load_tss_stack_segment(c, ss_sel, new_cpl, ext, ss)) != Status::kNext) return st;
    const unsigned count = (v86 ? 9 : 5) + (e.has_error ? 1 : 0);
    if (!stack_fits(ss, new_sp, count * gsz)) return c.fault(Vector::kSS, selector_error(ss_sel, ext));
    if (offset > cd.limit()) return c.fault(Vector::kGP, ext);
    if ((st = set_accessed(c, cd_la, cd)) != Status::kNext) return st;
    const TransferUndo saved(c);
    // The frame is built in protected mode at the new CPL (virtual-8086 mode ends here).
    c.state.rflags &= ~rflags::kVM;
    c.state.seg[unsigned(SegReg::kSS)] = ss;
    c.state.seg[unsigned(SegReg::kCS)] = segment_from(uint16_t((cs_sel & ~3) | new_cpl), cd);
    c.state.gpr[kRsp] = new_sp;
    c.refresh_mode();
    uint64_t frame[10];
    unsigned n = 0;
    if (v86) {
      for (SegReg s : {SegReg::kGS, SegReg::kFS, SegReg::kDS, SegReg::kES}) frame[n++] = saved.seg[unsigned(s)].selector;
    }
    frame[n++] = old_ss;
    frame[n++] = old_sp;
    frame[n++] = flags;
    frame[n++] = old_cs;
    frame[n++] = ret_rip;
    if (e.has_error) frame[n++] = e.error;
    if ((st = push_all(c, saved, gsz, frame, n)) != Status::kNext) return st;
    if (v86) {
      // SDM Vol. 3 §21.3.1.1: the handler starts with null data-segment registers.
      for (SegReg s : {SegReg::kGS, SegReg::kFS, SegReg::kDS, SegReg::kES}) install_segment(c, s, null_segment(0));
    }
  } else {
    const unsigned count = 3 + (e.has_error ? 1 : 0);
    if (!stack_fits(c.state.seg[unsigned(SegReg::kSS)], old_sp, count * gsz)) return c.fault(Vector::kSS, ext);
    if (offset > cd.limit()) return c.fault(Vector::kGP, ext);
    if ((st = set_accessed(c, cd_la, cd)) != Status::kNext) return st;
    const TransferUndo saved(c);
    c.state.seg[unsigned(SegReg::kCS)] = segment_from(uint16_t((cs_sel & ~3) | cpl), cd);
    c.refresh_mode();
    const uint64_t frame[4] = {flags, old_cs, ret_rip, e.error};
    if ((st = push_all(c, saved, gsz, frame, count)) != Status::kNext) return st;
  }
  enter_handler(c, offset, trap_gate);
  return Status::kNext;
}

// IA-32e mode (SDM Vol. 3 §6.14): 16-byte gates to 64-bit code, IST, a 64-bit frame that always
// holds SS:RSP, RSP aligned to 16 bytes first.
Status deliver_ia32e(Cpu& c, const Event& e) {
  const bool soft = is_software_interrupt(e);
  const uint32_t ext = soft ? 0 : selector_error::kExt;
  const uint32_t idt_error = uint32_t(e.vector) * 8 + selector_error::kIdt + ext;
  const unsigned cpl = c.cpl();
  if (uint32_t(e.vector) * 16 + 15 > c.state.idtr.limit) return c.fault(Vector::kGP, idt_error);
  Descriptor gate;
  uint64_t gate_hi;
  const uint64_t gate_la = c.state.idtr.base + uint64_t(e.vector) * 16;
  Status st = sys_read<uint64_t>(c, gate_la, gate.raw);
  if (st != Status::kNext) return st;
  if ((st = sys_read<uint64_t>(c, gate_la + 8, gate_hi)) != Status::kNext) return st;
  // Only 64-bit interrupt and trap gates exist in IA-32e mode (SDM Vol. 3 §6.14.1).
  if (gate.s() || (gate.type() != sys_type::kIntGate32 && gate.type() != sys_type::kTrapGate32))
    return c.fault(Vector::kGP, idt_error);
  if (soft && gate.dpl() < cpl) return c.fault(Vector::kGP, idt_error);
  if (!gate.p()) return c.fault(Vector::kNP, idt_error);

  const bool trap_gate = gate.type() & 1;
  const uint16_t cs_sel = gate.gate_selector();
  const uint64_t target = gate.gate_offset() | (gate_hi << 32);
  if (selector_is_null(cs_sel)) return c.fault(Vector::kGP, ext);
  Descriptor cd;
  uint64_t cd_la;
  if ((st = fetch_descriptor(c, cs_sel, Vector::kGP, ext, cd, cd_la)) != Status::kNext) return st;
  if (!cd.is_code() || cd.dpl() > cpl || !cd.l() || cd.db()) return c.fault(Vector::kGP, selector_error(cs_sel, ext));
  if (!cd.p()) return c.fault(Vector::kNP, selector_error(cs_sel, ext));
  if (!is_canonical(target)) return c.fault(Vector::kGP, ext);
  const bool inter = !(cd.type() & ar::kConforming) && cd.dpl() < cpl;
  const unsigned new_cpl = inter ? cd.dpl() : cpl;

  uint64_t rsp = c.state.gpr[kRsp];
  if (gate.ist() != 0) {
    if ((st = read_tss_rsp(c, 0x24 + 8 * (gate.ist() - 1), ext, rsp)) != Status::kNext) return st;
  } else if (inter) {
    if ((st = read_tss_rsp(c, 4 + 8 * new_cpl, ext, rsp)) != Status::kNext) return st;
  }
  rsp &= ~0xfull;
  const unsigned count = 5 + (e.has_error ? 1 : 0);
  if (!is_canonical(rsp - 8 * count) || !is_canonical(rsp - 1)) return c.fault(Vector::kSS, ext);
  if ((st = set_accessed(c, cd_la, cd)) != Status::kNext) return st;

  uint64_t flags = c.rflags();
  if (is_fault_class(e)) flags |= rflags::kRF;
  const uint64_t ret_rip = returns_past_instruction(e) ? (c.state.rip + e.insn_len) & c.ip_mask() : c.state.rip;
  const uint64_t frame[6] = {c.state.seg[unsigned(SegReg::kSS)].selector, c.state.gpr[kRsp], flags,
                             c.state.seg[unsigned(SegReg::kCS)].selector, ret_rip, e.error};
  const TransferUndo saved(c);
  // SDM Vol. 3 §6.14.4: a privilege change loads SS with a null selector whose RPL is the new CPL.
  if (inter) c.state.seg[unsigned(SegReg::kSS)] = null_segment(uint16_t(new_cpl), new_cpl);
  c.state.seg[unsigned(SegReg::kCS)] = segment_from(uint16_t((cs_sel & ~3) | new_cpl), cd);
  c.state.gpr[kRsp] = rsp;
  c.refresh_mode();
  if ((st = push_all(c, saved, 8, frame, count)) != Status::kNext) return st;
  enter_handler(c, target, trap_gate);
  return Status::kNext;
}

}  // namespace

Status Cpu::deliver_protected(const Event& e) {
  return long_mode() ? deliver_ia32e(*this, e) : deliver_legacy(*this, e);
}

}  // namespace nestvm::cpu
