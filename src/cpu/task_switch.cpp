// Hardware task switching (SDM Vol. 3 §7.3, Table 7-1; Vol. 2 JMP/CALL/IRET/INT n "SWITCH-TASKS"):
// JMP or CALL to a TSS or task gate, a task gate in the IDT, IRET with NT = 1. It exists only in
// legacy protected mode (§7.7: IA-32e mode has no task switching). Faults up to saving the old
// task leave the old task's state; faults while loading the new task's segments happen in the
// new task's context, as the SDM describes.
#include "cpu/segmentation.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

// The dynamic and static fields of a TSS that a task switch loads (SDM Vol. 3 Figures 8-2, 8-10).
struct TaskImage {
  uint32_t cr3 = 0;
  uint32_t eip = 0;
  uint32_t eflags = 0;
  uint32_t gpr[8] = {};
  uint16_t seg[kNumSegRegs] = {};  // in SegReg order: ES, CS, SS, DS, FS, GS
  uint16_t ldt = 0;
  bool trap = false;  // the T flag: #DB when the task starts
};

// 32-bit TSS offsets (16-bit TSS offsets in the comments of read_image/save_state).
constexpr unsigned kTss32Cr3 = 0x1c, kTss32Eip = 0x20, kTss32Eflags = 0x24, kTss32Gpr = 0x28, kTss32Seg = 0x48,
                   kTss32Ldt = 0x60, kTss32Trap = 0x64;
constexpr unsigned kTss16Ip = 0x0e, kTss16Flags = 0x10, kTss16Gpr = 0x12, kTss16Seg = 0x22, kTss16Ldt = 0x2a;

Status read_image(Cpu& c, uint64_t base, bool tss32, TaskImage& t) {
  Status st;
  auto rd16 = [&](unsigned off, uint16_t& v) { return sys_read<uint16_t>(c, base + off, v); };
  auto rd32 = [&](unsigned off, uint32_t& v) { return sys_read<uint32_t>(c, base + off, v); };
  if (tss32) {
    if ((st = rd32(kTss32Cr3, t.cr3)) != Status::kNext) return st;
    if ((st = rd32(kTss32Eip, t.eip)) != Status::kNext) return st;
    if ((st = rd32(kTss32Eflags, t.eflags)) != Status::kNext) return st;
    for (unsigned k = 0; k < 8; ++k)
      if ((st = rd32(kTss32Gpr + 4 * k, t.gpr[k])) != Status::kNext) return st;
    for (unsigned k = 0; k < kNumSegRegs; ++k)
      if ((st = rd16(kTss32Seg + 4 * k, t.seg[k])) != Status::kNext) return st;
    if ((st = rd16(kTss32Ldt, t.ldt)) != Status::kNext) return st;
    uint16_t trap;
    if ((st = rd16(kTss32Trap, trap)) != Status::kNext) return st;
    t.trap = trap & 1;
    return Status::kNext;
  }
  // A 16-bit TSS has no CR3, FS, GS or T flag; the upper halves of the registers are kept.
  uint16_t v;
  if ((st = rd16(kTss16Ip, v)) != Status::kNext) return st;
  t.eip = v;
  if ((st = rd16(kTss16Flags, v)) != Status::kNext) return st;
  t.eflags = (uint32_t(c.rflags()) & 0xffff0000u & ~uint32_t(rflags::kVM)) | v;
  for (unsigned k = 0; k < 8; ++k) {
    if ((st = rd16(kTss16Gpr + 2 * k, v)) != Status::kNext) return st;
    t.gpr[k] = (uint32_t(c.state.gpr[k]) & 0xffff0000u) | v;
  }
  for (unsigned k = 0; k < 4; ++k)
    if ((st = rd16(kTss16Seg + 2 * k, t.seg[k])) != Status::kNext) return st;
  return rd16(kTss16Ldt, t.ldt);
}

// Step 8 of §7.3: the outgoing task's dynamic state into its TSS.
Status save_state(Cpu& c, uint64_t base, bool tss32, uint32_t eip, uint32_t eflags) {
  Status st;
  if (tss32) {
    if ((st = sys_write<uint32_t>(c, base + kTss32Eip, eip)) != Status::kNext) return st;
    if ((st = sys_write<uint32_t>(c, base + kTss32Eflags, eflags)) != Status::kNext) return st;
    for (unsigned k = 0; k < 8; ++k)
      if ((st = sys_write<uint32_t>(c, base + kTss32Gpr + 4 * k, uint32_t(c.state.gpr[k]))) != Status::kNext) return st;
    for (unsigned k = 0; k < kNumSegRegs; ++k)
      if ((st = sys_write<uint16_t>(c, base + kTss32Seg + 4 * k, c.state.seg[k].selector)) != Status::kNext) return st;
    return Status::kNext;
  }
  if ((st = sys_write<uint16_t>(c, base + kTss16Ip, uint16_t(eip))) != Status::kNext) return st;
  if ((st = sys_write<uint16_t>(c, base + kTss16Flags, uint16_t(eflags))) != Status::kNext) return st;
  for (unsigned k = 0; k < 8; ++k)
    if ((st = sys_write<uint16_t>(c, base + kTss16Gpr + 2 * k, uint16_t(c.state.gpr[k]))) != Status::kNext) return st;
  for (unsigned k = 0; k < 4; ++k)
    if ((st = sys_write<uint16_t>(c, base + kTss16Seg + 2 * k, c.state.seg[k].selector)) != Status::kNext) return st;
  return Status::kNext;
}

// Step 13: the new task's LDTR and segment descriptors, qualified as Table 7-1 lists them. Errors
// are #TS(selector) (#NP, #SS for not-present segments) in the new task's context.
Status load_ldtr(Cpu& c, uint16_t sel, uint32_t ext) {
  if (selector_is_null(sel)) {
    c.state.ldtr = null_segment(sel);
    return Status::kNext;
  }
  if (selector_ti(sel)) return c.fault(Vector::kTS, selector_error(sel, ext));
  Descriptor d;
  uint64_t la;
  const Status st = fetch_descriptor(c, sel, Vector::kTS, ext, d, la);
  if (st != Status::kNext) return st;
  if (d.s() || d.type() != sys_type::kLdt || !d.p()) return c.fault(Vector::kTS, selector_error(sel, ext));
  c.state.ldtr = {sel, d.base(), d.limit(), d.ar()};
  return Status::kNext;
}

Status load_task_segment(Cpu& c, SegReg s, uint16_t sel, unsigned cpl, uint32_t ext) {
  const uint32_t err = selector_error(sel, ext);
  if (selector_is_null(sel)) {
    if (s == SegReg::kCS || s == SegReg::kSS) return c.fault(Vector::kTS, err);
    c.state.seg[unsigned(s)] = null_segment(sel);
    return Status::kNext;
  }
  Descriptor d;
  uint64_t la;
  Status st = fetch_descriptor(c, sel, Vector::kTS, ext, d, la);
  if (st != Status::kNext) return st;
  const bool conforming_code = d.is_code() && (d.type() & ar::kConforming);
  if (s == SegReg::kCS) {
    if (!d.is_code() || (conforming_code ? d.dpl() > cpl : d.dpl() != cpl)) return c.fault(Vector::kTS, err);
    if (!d.p()) return c.fault(Vector::kNP, err);
  } else if (s == SegReg::kSS) {
    if (!d.is_data() || !(d.type() & ar::kWritable) || d.dpl() != cpl || selector_rpl(sel) != cpl)
      return c.fault(Vector::kTS, err);
    if (!d.p()) return c.fault(Vector::kSS, err);
  } else {
    if (!d.s() || (d.is_code() && !(d.type() & ar::kReadable))) return c.fault(Vector::kTS, err);
    if (!conforming_code && (d.dpl() < cpl || d.dpl() < selector_rpl(sel))) return c.fault(Vector::kTS, err);
    if (!d.p()) return c.fault(Vector::kNP, err);
  }
  if ((st = set_accessed(c, la, d)) != Status::kNext) return st;
  c.state.seg[unsigned(s)] = segment_from(sel, d);
  return Status::kNext;
}

}  // namespace

Status task_switch(Cpu& c, uint16_t tss_sel, const Descriptor& tss, uint64_t tss_la, TaskSwitchSource src,
                   uint64_t ret_rip, bool has_error, uint32_t error, uint32_t ext) {
  const bool new32 = tss.type() & 8;
  const uint64_t new_base = tss.base();
  // Step 3: the new TSS must hold at least the fields a switch uses.
  if (tss.limit() < (new32 ? 0x67u : 0x2bu)) return c.fault(Vector::kTS, selector_error(tss_sel, ext));
  TaskImage t;
  Status st = read_image(c, new_base, new32, t);
  if (st != Status::kNext) return st;

  // Steps 6-10 in the old task's context.
  const Segment old_tr = c.state.tr;
  const bool old32 = (old_tr.ar & 8) != 0;
  uint32_t old_flags = uint32_t(c.rflags());
  if (src == TaskSwitchSource::kIret) old_flags &= ~uint32_t(rflags::kNT);
  if ((st = save_state(c, old_tr.base, old32, uint32_t(ret_rip), old_flags)) != Status::kNext) return st;
  const bool nest = src == TaskSwitchSource::kCall || src == TaskSwitchSource::kInterrupt;
  if (nest && (st = sys_write<uint16_t>(c, new_base, old_tr.selector)) != Status::kNext) return st;
  bool was_busy;
  uint64_t old_la;
  if ((src == TaskSwitchSource::kJmp || src == TaskSwitchSource::kIret) && !selector_is_null(old_tr.selector) &&
      descriptor_address(c, old_tr.selector, 8, old_la)) {
    if ((st = update_tss_busy(c, old_la, false, was_busy)) != Status::kNext) return st;
  }
  if (src != TaskSwitchSource::kIret && (st = update_tss_busy(c, tss_la, true, was_busy)) != Status::kNext) return st;

  // Step 11-12: the new task's TR, CR0.TS, CR3, registers and selectors.
  c.state.tr = {tss_sel, new_base, tss.limit(), tss.ar() | 2u};
  c.state.cr0 |= cr0::kTS;
  if (new32 && (c.state.cr0 & cr0::kPG) && (st = c.set_cr3(t.cr3)) != Status::kNext) return st;
  uint64_t flags = t.eflags;
  if (nest) flags |= rflags::kNT;
  for (unsigned k = 0; k < 8; ++k) c.state.gpr[k] = t.gpr[k];
  c.state.rip = t.eip;
  const bool v86 = new32 && (flags & rflags::kVM);
  const unsigned cpl = v86 ? 3 : selector_rpl(t.seg[unsigned(SegReg::kCS)]);
  // Until its descriptor qualifies, a register holds its new selector and an unusable cache
  // (SS keeps DPL = the new CPL); CS keeps its old attributes.
  for (unsigned k = 0; k < kNumSegRegs; ++k) {
    Segment& s = c.state.seg[k];
    if (k == unsigned(SegReg::kCS)) s.selector = t.seg[k];
    else s = null_segment(t.seg[k], k == unsigned(SegReg::kSS) ? cpl : 0);
  }
  c.state.ldtr = null_segment(t.ldt);
  c.set_rflags(flags);
  c.refresh_mode();
  // Debug registers: local breakpoint enables end with the task (SDM Vol. 3 §18.2.4).
  c.state.dr7 &= ~uint64_t(0x155);

  // Step 13, in the new task's context.
  if ((st = load_ldtr(c, t.ldt, ext)) != Status::kNext) return st;
  if (v86) {
    for (unsigned k = 0; k < kNumSegRegs; ++k)
      c.state.seg[k] = {t.seg[k], uint64_t(t.seg[k]) << 4, 0xffff,
                        ar::kP | ar::kS | (3u << ar::kDplShift) | ar::kWritable | ar::kAccessed};
  } else {
    for (SegReg s : {SegReg::kSS, SegReg::kCS, SegReg::kDS, SegReg::kES, SegReg::kFS, SegReg::kGS}) {
      st = load_task_segment(c, s, t.seg[unsigned(s)], cpl, ext);
      if (st != Status::kNext) {
        c.refresh_mode();
        return st;
      }
    }
  }
  c.refresh_mode();

  // An exception's error code goes on the new task's stack (SDM Vol. 2 INT n "TASK-GATE").
  if (has_error) {
    const unsigned size = new32 ? 4 : 2;
    if (!stack_fits(c.state.seg[unsigned(SegReg::kSS)], c.state.gpr[kRsp], size)) return c.fault(Vector::kSS, ext);
    if ((st = push_sized(c, size, error)) != Status::kNext) return st;
  }
  if (c.state.rip > c.state.seg[unsigned(SegReg::kCS)].limit) return c.fault(Vector::kGP, ext);
  if (t.trap) {  // T flag: a debug trap before the new task's first instruction (SDM Vol. 3 §18.2.3)
    c.state.dr6 |= 1u << 15;  // BT
    return c.fault(Vector::kDB);
  }
  return src == TaskSwitchSource::kInterrupt ? Status::kNext : Status::kJumped;
}

}  // namespace nestvm::cpu
