// Descriptor-table access and segment-register loads (SDM Vol. 3 §3.4-3.5, §5.5-5.10).
#include "cpu/segmentation.h"

#include <atomic>

namespace nestvm::cpu {

using namespace arch;

Status push_sized(Cpu& c, unsigned size, uint64_t v) {
  switch (size) {
    case 2: return c.push<uint16_t>(uint16_t(v));
    case 4: return c.push<uint32_t>(uint32_t(v));
    default: return c.push<uint64_t>(v);
  }
}

Status read_stack_sized(Cpu& c, unsigned size, uint64_t offset, uint64_t& v) {
  Status st;
  switch (size) {
    case 2: { uint16_t t; st = c.read_stack<uint16_t>(offset, t); v = t; break; }
    case 4: { uint32_t t; st = c.read_stack<uint32_t>(offset, t); v = t; break; }
    default: st = c.read_stack<uint64_t>(offset, v); break;
  }
  return st;
}

Status push_all(Cpu& c, const TransferUndo& undo, unsigned size, const uint64_t* v, unsigned n) {
  for (unsigned k = 0; k < n; ++k) {
    const Status st = push_sized(c, size, v[k]);
    if (st != Status::kNext) {
      // After a VM exit (kExit) the processor holds host state, which stays as it is.
      if (st == Status::kFault) undo.restore(c);
      return st;
    }
  }
  return Status::kNext;
}

bool descriptor_address(const Cpu& c, uint16_t sel, unsigned bytes, uint64_t& la) {
  const uint64_t off = sel & ~7u;
  if (selector_ti(sel)) {
    const Segment& ldt = c.state.ldtr;
    if ((ldt.ar & ar::kUnusable) || off + bytes - 1 > ldt.limit) return false;
    la = ldt.base + off;
  } else {
    if (off + bytes - 1 > c.state.gdtr.limit) return false;
    la = c.state.gdtr.base + off;
  }
  if (!c.long_mode()) la &= 0xffffffffull;
  return true;
}

Status fetch_descriptor(Cpu& c, uint16_t sel, Vector v, uint32_t ext, Descriptor& d, uint64_t& la) {
  if (!descriptor_address(c, sel, 8, la)) return c.fault(v, selector_error(sel, ext));
  return sys_read<uint64_t>(c, la, d.raw);
}

Status fetch_descriptor_high(Cpu& c, uint16_t sel, Vector v, uint32_t ext, uint64_t& hi) {
  uint64_t la;
  if (!descriptor_address(c, sel, 16, la)) return c.fault(v, selector_error(sel, ext));
  return sys_read<uint64_t>(c, la + 8, hi);
}

namespace {

// A locked OR into the type byte (bits 47:40) of the descriptor at la; returns the old byte.
Status locked_type_update(Cpu& c, uint64_t la, uint8_t set, uint8_t clear, uint8_t& old) {
  uint64_t a = la + 5;
  if (!c.long_mode()) a &= 0xffffffffull;
  uint8_t* host;
  uint64_t pa;
  const Status st = c.translate(a, AccessKind::kWrite, kMmuSupervisor, SegReg::kNone, host, pa);
  if (st != Status::kNext) return st;
  if (host) {
    std::atomic_ref<uint8_t> b(host[a & (kPageSize - 1)]);
    old = b.load(std::memory_order_relaxed);
    while (!b.compare_exchange_weak(old, uint8_t((old | set) & ~clear), std::memory_order_seq_cst)) {}
    return Status::kNext;
  }
  // A descriptor table in MMIO space: no atomicity to offer beyond the bus's.
  Status s2 = c.access_slow(a, &old, 1, AccessKind::kRead, kMmuSupervisor, SegReg::kNone);
  if (s2 != Status::kNext) return s2;
  uint8_t nv = uint8_t((old | set) & ~clear);
  return c.access_slow(a, &nv, 1, AccessKind::kWrite, kMmuSupervisor, SegReg::kNone);
}

}  // namespace

Status set_accessed(Cpu& c, uint64_t la, Descriptor& d) {
  if (d.raw & (1ull << 40)) return Status::kNext;
  uint8_t old;
  const Status st = locked_type_update(c, la, 1, 0, old);
  if (st == Status::kNext) d.raw |= 1ull << 40;
  return st;
}

Status update_tss_busy(Cpu& c, uint64_t la, bool busy, bool& old_busy) {
  uint8_t old = 0;
  const Status st = locked_type_update(c, la, busy ? 2 : 0, busy ? 0 : 2, old);
  old_busy = old & 2;
  return st;
}

Segment real_mode_segment(const Cpu& c, SegReg s, uint16_t sel) {
  Segment seg = c.state.seg[unsigned(s)];
  seg.selector = sel;
  seg.base = uint64_t(sel) << 4;
  if (c.v86_mode()) {
    seg.limit = 0xffff;
    seg.ar = ar::kP | ar::kS | (3u << ar::kDplShift) | ar::kWritable | ar::kAccessed;  // 0xf3
  } else {
    seg.ar = (seg.ar & ~ar::kUnusable) | ar::kP;
  }
  return seg;
}

Status check_segment_load(Cpu& c, SegReg s, uint16_t sel, Segment& out) {
  if (!c.protected_mode() || c.v86_mode()) {
    out = real_mode_segment(c, s, sel);
    return Status::kNext;
  }
  const unsigned cpl = c.cpl(), rpl = selector_rpl(sel);
  Descriptor d;
  uint64_t la;
  if (s == SegReg::kSS) {
    // SDM Vol. 2 MOV: a null SS is allowed only in 64-bit mode, at CPL < 3 with RPL = CPL.
    if (selector_is_null(sel)) {
      if (c.in_64bit_mode() && cpl < 3 && rpl == cpl) {
        out = null_segment(sel, cpl);
        return Status::kNext;
      }
      return c.fault(Vector::kGP, 0);
    }
    Status st = fetch_descriptor(c, sel, Vector::kGP, 0, d, la);
    if (st != Status::kNext) return st;
    if (rpl != cpl || !d.is_data() || !(d.type() & ar::kWritable) || d.dpl() != cpl)
      return c.fault(Vector::kGP, selector_error(sel));
    if (!d.p()) return c.fault(Vector::kSS, selector_error(sel));
  } else {
    if (selector_is_null(sel)) {
      out = null_segment(sel);
      return Status::kNext;
    }
    Status st = fetch_descriptor(c, sel, Vector::kGP, 0, d, la);
    if (st != Status::kNext) return st;
    // Data or readable code; conforming code skips the privilege check (SDM Vol. 3 §5.6).
    if (!d.s() || (d.is_code() && !(d.type() & ar::kReadable))) return c.fault(Vector::kGP, selector_error(sel));
    const bool conforming_code = d.is_code() && (d.type() & ar::kConforming);
    if (!conforming_code && (rpl > d.dpl() || cpl > d.dpl())) return c.fault(Vector::kGP, selector_error(sel));
    if (!d.p()) return c.fault(Vector::kNP, selector_error(sel));
  }
  const Status st = set_accessed(c, la, d);
  if (st != Status::kNext) return st;
  out = segment_from(sel, d);
  return Status::kNext;
}

void install_segment(Cpu& c, SegReg s, const Segment& seg) {
  c.state.seg[unsigned(s)] = seg;
  if (s == SegReg::kCS || s == SegReg::kSS) c.refresh_mode();
  else c.refresh_segment(s);
}

void null_segments_above_cpl(Cpu& c) {
  const unsigned cpl = c.cpl();
  for (SegReg s : {SegReg::kES, SegReg::kDS, SegReg::kFS, SegReg::kGS}) {
    Segment& seg = c.state.seg[unsigned(s)];
    if (seg.ar & ar::kUnusable) continue;
    const bool conforming_code = (seg.ar & ar::kCode) && (seg.ar & ar::kConforming);
    if (!conforming_code && ar::dpl(seg.ar) < cpl) {
      // Only the selector and validity change; the base stays (what FS/GS use in 64-bit mode).
      seg.selector = 0;
      seg.ar = ar::kUnusable;
      c.refresh_segment(s);
    }
  }
}

Status read_tss_stack(Cpu& c, unsigned dpl, uint32_t ext, uint16_t& ss, uint64_t& sp) {
  const Segment& tr = c.state.tr;
  const uint32_t type = tr.ar & ar::kTypeMask;
  const bool tss32 = type == sys_type::kTss32Avail || type == sys_type::kTss32Busy;
  Status st;
  if (tss32) {
    const uint32_t off = dpl * 8 + 4;  // ESPn, then SSn
    if (off + 7 > tr.limit) return c.fault(Vector::kTS, selector_error(tr.selector, ext));
    uint32_t esp;
    if ((st = sys_read<uint32_t>(c, tr.base + off, esp)) != Status::kNext) return st;
    if ((st = sys_read<uint16_t>(c, tr.base + off + 4, ss)) != Status::kNext) return st;
    sp = esp;
  } else {
    const uint32_t off = dpl * 4 + 2;  // SPn, then SSn
    if (off + 4 > tr.limit) return c.fault(Vector::kTS, selector_error(tr.selector, ext));
    uint16_t sp16;
    if ((st = sys_read<uint16_t>(c, tr.base + off, sp16)) != Status::kNext) return st;
    if ((st = sys_read<uint16_t>(c, tr.base + off + 2, ss)) != Status::kNext) return st;
    sp = sp16;
  }
  return Status::kNext;
}

Status read_tss_rsp(Cpu& c, unsigned offset, uint32_t ext, uint64_t& rsp) {
  const Segment& tr = c.state.tr;
  if (offset + 7 > tr.limit) return c.fault(Vector::kTS, selector_error(tr.selector, ext));
  return sys_read<uint64_t>(c, tr.base + offset, rsp);
}

Status load_tss_stack_segment(Cpu& c, uint16_t sel, unsigned dpl, uint32_t ext, Segment& out) {
  if (selector_is_null(sel)) return c.fault(Vector::kTS, ext);
  Descriptor d;
  uint64_t la;
  Status st = fetch_descriptor(c, sel, Vector::kTS, ext, d, la);
  if (st != Status::kNext) return st;
  if (selector_rpl(sel) != dpl || d.dpl() != dpl || !d.is_data() || !(d.type() & ar::kWritable))
    return c.fault(Vector::kTS, selector_error(sel, ext));
  if (!d.p()) return c.fault(Vector::kSS, selector_error(sel, ext));
  if ((st = set_accessed(c, la, d)) != Status::kNext) return st;
  out = segment_from(sel, d);
  return Status::kNext;
}

bool stack_fits(const Segment& ss, uint64_t sp, unsigned bytes) {
  const uint64_t mask = (ss.ar & ar::kDB) ? 0xffffffffull : 0xffff;
  uint64_t lo = 0, hi = ss.limit;
  if (ss.ar & ar::kExpandDown) {
    lo = uint64_t(ss.limit) + 1;
    hi = mask;
  }
  const uint64_t top = sp & mask;
  const uint64_t bottom = (top - bytes) & mask;
  if (top >= bytes) return bytes == 0 || (bottom >= lo && top - 1 <= hi);
  // The frame wraps around offset 0: [bottom, mask] and [0, top - 1].
  return bottom >= lo && mask <= hi && (top == 0 || lo == 0);
}

}  // namespace nestvm::cpu
