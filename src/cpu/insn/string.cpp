// Instruction class: MOVS CMPS SCAS LODS STOS INS OUTS, with REP/REPE/REPNE (SDM Vol. 2, each
// instruction and "REP/REPE/REPZ/REPNE/REPNZ").
//
// Operands: the source is seg:rSI (DS or the override), the destination ES:rDI (never
// overridden); rSI/rDI/rCX are SI/ESI/RSI... by address size; DF sets the direction.
//
// Repeats. Each iteration is fault-atomic: a fault leaves rCX/rSI/rDI as they are after the
// iterations that completed and RIP at the instruction, so the instruction resumes after the
// handler. A handler call does a bounded chunk of iterations and then returns kJumped with RIP
// still at the instruction: the run loop delivers interrupts and comes back, as hardware
// services interrupts between iterations. Each such chunk counts as one retired instruction
// (the run loop's unit of work and budget); with EFLAGS.TF set a chunk is one iteration, so the
// single-step trap comes after each iteration, as on hardware.
//
// Fast path: REP MOVS and REP STOS move runs that lie within one page of the source and one
// page of the destination through host pointers (Cpu::translate fills the TLB, checks
// permissions and does the code-page tracking of self-modifying code); overlapping MOVS runs are
// copied in pieces that reproduce the element-by-element result exactly.
#include <algorithm>
#include <cstring>

#include "cpu/insn/delegates.h"
#include "cpu/insn/io_permission.h"
#include "cpu/insn/operand.h"
#include "cpu/vmx/nonroot.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

enum class Rep : uint8_t { kNone, kRep, kRepe, kRepne };

// Work per handler call: bytes moved by the fast path, or iterations done one at a time (each
// charged kStepCost bytes; a port access, which runs device code, kIoStepCost).
constexpr uint64_t kChunkBytes = 64 * 1024;
constexpr uint64_t kStepCost = 16;
constexpr uint64_t kIoStepCost = 256;

template <unsigned A> inline uint64_t index_reg(const Cpu& c, Gpr r) { return c.state.gpr[r] & size_mask(A); }
inline bool down(const Cpu& c) { return c.state.rflags & rflags::kDF; }
inline uint64_t delta(const Cpu& c, uint64_t bytes) { return down(c) ? uint64_t(0) - bytes : bytes; }
inline uint64_t la_mask(const Cpu& c) { return c.in_64bit_mode() ? ~0ull : 0xffffffffull; }

// ---- one iteration of each instruction (every access before any register change) ------------

template <unsigned N, unsigned A> struct Movs {
  static constexpr bool kIo = false, kBulk = true;
  static Status step(Cpu& c, const Insn& i) {
    using T = uint_t<N>;
    const uint64_t si = index_reg<A>(c, kRsi), di = index_reg<A>(c, kRdi);
    T v;
    Status st = c.read<T>(seg_of(i), si, v);
    if (st != Status::kNext) return st;
    st = c.write<T>(SegReg::kES, di, v);
    if (st != Status::kNext) return st;
    c.set_reg(A, kRsi, si + delta(c, N));
    c.set_reg(A, kRdi, di + delta(c, N));
    return Status::kNext;
  }
  static uint64_t bulk(Cpu& c, const Insn& i, uint64_t max, Status& st);
};

// CMPS: flags of [seg:rSI] - [ES:rDI] (SDM Vol. 2 CMPS: "temp <- SRC1 - SRC2").
template <unsigned N, unsigned A> struct Cmps {
  static constexpr bool kIo = false, kBulk = false;
  static Status step(Cpu& c, const Insn& i) {
    using T = uint_t<N>;
    const uint64_t si = index_reg<A>(c, kRsi), di = index_reg<A>(c, kRdi);
    T a, b;
    Status st = c.read<T>(seg_of(i), si, a);
    if (st != Status::kNext) return st;
    st = c.read<T>(SegReg::kES, di, b);
    if (st != Status::kNext) return st;
    c.set_lazy(FlagOp::kSub, N, T(a - b), a, b);
    c.set_reg(A, kRsi, si + delta(c, N));
    c.set_reg(A, kRdi, di + delta(c, N));
    return Status::kNext;
  }
};

// SCAS: flags of rAX - [ES:rDI].
template <unsigned N, unsigned A> struct Scas {
  static constexpr bool kIo = false, kBulk = false;
  static Status step(Cpu& c, const Insn&) {
    using T = uint_t<N>;
    const uint64_t di = index_reg<A>(c, kRdi);
    T m;
    const Status st = c.read<T>(SegReg::kES, di, m);
    if (st != Status::kNext) return st;
    const T a = T(c.state.gpr[kRax]);
    c.set_lazy(FlagOp::kSub, N, T(a - m), a, m);
    c.set_reg(A, kRdi, di + delta(c, N));
    return Status::kNext;
  }
};

template <unsigned N, unsigned A> struct Lods {
  static constexpr bool kIo = false, kBulk = false;
  static Status step(Cpu& c, const Insn& i) {
    using T = uint_t<N>;
    const uint64_t si = index_reg<A>(c, kRsi);
    T v;
    const Status st = c.read<T>(seg_of(i), si, v);
    if (st != Status::kNext) return st;
    c.set_reg(N, kRax, v);  // AL is byte offset 0: the same encoding serves every size
    c.set_reg(A, kRsi, si + delta(c, N));
    return Status::kNext;
  }
};

template <unsigned N, unsigned A> struct Stos {
  static constexpr bool kIo = false, kBulk = true;
  static Status step(Cpu& c, const Insn&) {
    using T = uint_t<N>;
    const uint64_t di = index_reg<A>(c, kRdi);
    const Status st = c.write<T>(SegReg::kES, di, T(c.state.gpr[kRax]));
    if (st != Status::kNext) return st;
    c.set_reg(A, kRdi, di + delta(c, N));
    return Status::kNext;
  }
  static uint64_t bulk(Cpu& c, const Insn& i, uint64_t max, Status& st);
};

// INS: the destination is checked for writing before the port is read, so that a faulting
// iteration has no effect on the device.
template <unsigned N, unsigned A> struct Ins {
  static constexpr bool kIo = true, kBulk = false, kIn = true;
  static Status step(Cpu& c, const Insn&) {
    using T = uint_t<N>;
    const uint64_t di = index_reg<A>(c, kRdi);
    Cpu::RmwRef<T> ref;
    const Status st = c.rmw_ref<T>(SegReg::kES, di, ref);
    if (st != Status::kNext) return st;
    c.rmw_store(ref, T(c.io_in(uint16_t(c.state.gpr[kRdx]), N)));
    c.set_reg(A, kRdi, di + delta(c, N));
    return Status::kNext;
  }
};

template <unsigned N, unsigned A> struct Outs {
  static constexpr bool kIo = true, kBulk = false, kIn = false;
  static Status step(Cpu& c, const Insn& i) {
    using T = uint_t<N>;
    const uint64_t si = index_reg<A>(c, kRsi);
    T v;
    const Status st = c.read<T>(seg_of(i), si, v);
    if (st != Status::kNext) return st;
    c.io_out(uint16_t(c.state.gpr[kRdx]), N, v);
    c.set_reg(A, kRsi, si + delta(c, N));
    return Status::kNext;
  }
};

// ---- the fast path ------------------------------------------------------------------------------

// How many consecutive elements (in the direction of DF) starting at offset `off` of segment s
// pass the segment checks, stay inside the address-size offset space and lie in one page.
// 0 when the first one does not: the exact one-element path then raises the fault or splits the
// access across pages.
template <unsigned N, unsigned A>
uint64_t run_limit(const Cpu& c, SegReg s, uint64_t off, bool write) {
  const SegCache& sc = c.seg_cache(s);
  const uint64_t lo = write ? sc.wr_lo : sc.rd_lo;
  const uint64_t hi = std::min(write ? sc.wr_hi : sc.rd_hi, size_mask(A));
  if (off < lo || off > hi || hi - off < N - 1) return 0;
  const uint64_t po = (sc.base + off) & (kPageSize - 1);
  if (po + N > kPageSize) return 0;
  if (!down(c)) return std::min((hi - off - (N - 1)) / N + 1, (kPageSize - po) / N);
  return std::min((off - lo) / N + 1, po / N + 1);
}

// Host pointer for seg:off (nullptr for MMIO, or with st = kFault after a fault).
uint8_t* host_ptr(Cpu& c, SegReg s, uint64_t off, AccessKind kind, Status& st) {
  const uint64_t la = (c.seg_cache(s).base + off) & la_mask(c);
  const TlbEntry& e = c.tlb().entry(c.mmu_idx(), la);
  const uint64_t key = (la & kPageMask) | c.tlb().tag();
  const bool hit = kind == AccessKind::kRead ? e.tag_read == key : e.tag_write.load(std::memory_order_relaxed) == key;
  if (hit && is_canonical(la)) return reinterpret_cast<uint8_t*>(la + e.addend);
  uint8_t* page;
  uint64_t pa;
  st = c.translate(la, kind, c.mmu_idx(), s, page, pa);
  if (st != Status::kNext || !page) return nullptr;
  return page + (la & (kPageSize - 1));
}

// Copies n elements of N bytes as n sequential MOVS iterations would: d and s point at the
// first element, later elements are at higher (forward) or lower (backward) addresses. When the
// destination runs ahead of the source within the run, later elements read what earlier ones
// wrote, so the copy goes in pieces no longer than that distance.
template <unsigned N>
void copy_run(uint8_t* d, const uint8_t* s, uint64_t n, bool backward) {
  const uint64_t bytes = n * N;
  uint8_t* d0 = backward ? d - (n - 1) * N : d;
  const uint8_t* s0 = backward ? s - (n - 1) * N : s;
  const int64_t dist = int64_t(reinterpret_cast<uintptr_t>(d0) - reinterpret_cast<uintptr_t>(s0));
  const uint64_t gap = dist < 0 ? uint64_t(-dist) : uint64_t(dist);
  const bool hazard = gap != 0 && gap < bytes && (backward ? dist < 0 : dist > 0);
  if (!hazard) {
    std::memmove(d0, s0, bytes);
    return;
  }
  const uint64_t per = gap / N;  // elements per piece that read nothing the piece writes
  if (per == 0) {                // closer than one element: each reads part of the previous one
    for (uint64_t k = 0; k < n; ++k) {
      const uint64_t o = backward ? (n - 1 - k) * N : k * N;
      uint8_t t[N];
      std::memcpy(t, s0 + o, N);
      std::memcpy(d0 + o, t, N);
    }
    return;
  }
  for (uint64_t k = 0; k < n; k += per) {
    const uint64_t m = std::min(per, n - k);
    const uint64_t o = backward ? (n - k - m) * N : k * N;
    std::memcpy(d0 + o, s0 + o, m * N);
  }
}

template <unsigned N, unsigned A>
uint64_t Movs<N, A>::bulk(Cpu& c, const Insn& i, uint64_t max, Status& st) {
  const SegReg src = seg_of(i);
  const uint64_t si = index_reg<A>(c, kRsi), di = index_reg<A>(c, kRdi);
  uint64_t n = std::min(max, run_limit<N, A>(c, src, si, false));
  if (n) n = std::min(n, run_limit<N, A>(c, SegReg::kES, di, true));
  if (!n) return 0;
  // Source before destination, as each iteration faults.
  const uint8_t* s = host_ptr(c, src, si, AccessKind::kRead, st);
  if (!s) return 0;
  uint8_t* d = host_ptr(c, SegReg::kES, di, AccessKind::kWrite, st);
  if (!d) return 0;
  copy_run<N>(d, s, n, down(c));
  c.set_reg(A, kRsi, si + delta(c, n * N));
  c.set_reg(A, kRdi, di + delta(c, n * N));
  return n;
}

template <unsigned N, unsigned A>
uint64_t Stos<N, A>::bulk(Cpu& c, const Insn&, uint64_t max, Status& st) {
  const uint64_t di = index_reg<A>(c, kRdi);
  const uint64_t n = std::min(max, run_limit<N, A>(c, SegReg::kES, di, true));
  if (!n) return 0;
  uint8_t* d = host_ptr(c, SegReg::kES, di, AccessKind::kWrite, st);
  if (!d) return 0;
  uint8_t* d0 = down(c) ? d - (n - 1) * N : d;
  const uint_t<N> v = uint_t<N>(c.state.gpr[kRax]);
  if constexpr (N == 1) {
    std::memset(d0, v, n);
  } else {
    for (uint64_t k = 0; k < n; ++k) std::memcpy(d0 + k * N, &v, N);
  }
  c.set_reg(A, kRdi, di + delta(c, n * N));
  return n;
}

// ---- the repeat loop ------------------------------------------------------------------------------

template <class Op, unsigned N, unsigned A, Rep R> struct Run {
  // INS/OUTS end the block like IN/OUT: the device may have changed interrupt state.
  static constexpr Status kDone = Op::kIo ? Status::kEndBlock : Status::kNext;

  // REPE stops when ZF = 0, REPNE when ZF = 1 (tested after rCX, SDM Vol. 2 REP "Operation").
  static bool stops(const Cpu& c) {
    if constexpr (R == Rep::kRepe) return !lazy::zf(c.lf, c.state.rflags);
    if constexpr (R == Rep::kRepne) return lazy::zf(c.lf, c.state.rflags);
    return false;
  }

  static Status run(Cpu& c, const Insn& i) {
    if constexpr (Op::kIo) {
      const Status st = check_io_permission(c, uint16_t(c.state.gpr[kRdx]), N);
      if (st != Status::kNext) return st;
      // In VMX non-root operation the I/O exits come after the TSS check and before everything
      // else, rCX = 0 and the operand's segment, limit and alignment checks included (SDM §26.1.1).
      if (c.vmx_non_root() && vmx::io_exiting(c, uint16_t(c.state.gpr[kRdx]), N))
        return vmx::string_io_exit(c, i, N, A, Op::kIn, R != Rep::kNone);
    }
    if constexpr (R == Rep::kNone) {
      const Status st = Op::step(c, i);
      return st == Status::kNext ? kDone : st;
    } else {
      uint64_t count = index_reg<A>(c, kRcx);
      if (count == 0) return kDone;
      uint64_t budget = (c.state.rflags & rflags::kTF) ? 0 : kChunkBytes;
      // Until the instruction completes, RFLAGS stay as they were before it: a fault part-way
      // restores them (SDM Vol. 2 REP: "the EFLAGS value is restored to the state prior to the
      // execution of the instruction"), and so does stopping between chunks, so that a later
      // chunk's fault restores the same pre-instruction value.
      const LazyFlags saved_lf = c.lf;
      const uint64_t saved_rflags = c.state.rflags;
      auto unfinished = [&](Status st) {
        c.lf = saved_lf;
        c.state.rflags = saved_rflags;
        return st;
      };
      for (;;) {
        if constexpr (Op::kBulk) {
          if (budget >= N) {
            Status st = Status::kNext;
            const uint64_t done = Op::bulk(c, i, std::min(count, budget / N), st);
            if (st != Status::kNext) return st;
            if (done) {
              count -= done;
              c.set_reg(A, kRcx, count);
              if (count == 0) return kDone;
              budget -= done * N;
              if (budget < N) return unfinished(Status::kJumped);
              continue;
            }
          }
        }
        const Status st = Op::step(c, i);
        if (st != Status::kNext) return st == Status::kFault ? unfinished(st) : st;
        c.set_reg(A, kRcx, --count);
        if (count == 0 || stops(c)) return kDone;
        constexpr uint64_t kCost = Op::kIo ? kIoStepCost : kStepCost;
        if (budget <= kCost) return unfinished(Status::kJumped);  // RIP stays at the instruction
        budget -= kCost;
      }
    }
  }
};

// ---- selectors ----------------------------------------------------------------------------------

template <template <unsigned, unsigned> class Op, unsigned A, Rep R, unsigned MaxN>
Handler pick_size(unsigned n) {
  switch (n) {
    case 1: return &Run<Op<1, A>, 1, A, R>::run;
    case 2: return &Run<Op<2, A>, 2, A, R>::run;
    case 4: return &Run<Op<4, A>, 4, A, R>::run;
    case 8: if constexpr (MaxN == 8) return &Run<Op<8, A>, 8, A, R>::run; else return nullptr;
    default: return nullptr;
  }
}

template <template <unsigned, unsigned> class Op, Rep R, unsigned MaxN>
Handler pick(unsigned n, unsigned a) {
  switch (a) {
    case 2: return pick_size<Op, 2, R, MaxN>(n);
    case 4: return pick_size<Op, 4, R, MaxN>(n);
    default: return pick_size<Op, 8, R, MaxN>(n);
  }
}

// Cond: CMPS/SCAS, where F3 is REPE and F2 is REPNE. For the others either prefix repeats (F2
// acts as REP on them).
template <template <unsigned, unsigned> class Op, bool Cond, unsigned MaxN = 8>
Handler select_string(const DecodeInput& in, Insn& i) {
  // The string forms have only implicit operands; MOVSD/CMPSD with visible operands are SSE2.
  if (in.visible() != 0) return nullptr;
  const unsigned n = in.zi.operand_width / 8;
  const unsigned a = in.zi.address_width / 8;
  if (i.flags & insn_flags::kRep) return pick<Op, Cond ? Rep::kRepe : Rep::kRep, MaxN>(n, a);
  if (i.flags & insn_flags::kRepne) return pick<Op, Cond ? Rep::kRepne : Rep::kRep, MaxN>(n, a);
  return pick<Op, Rep::kNone, MaxN>(n, a);
}

}  // namespace

Handler select_movsd_string(const DecodeInput& in, Insn& i) { return select_string<Movs, false>(in, i); }
Handler select_cmpsd_string(const DecodeInput& in, Insn& i) { return select_string<Cmps, true>(in, i); }

void register_string(SelectorTable& t) {
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_MOVSB, ZYDIS_MNEMONIC_MOVSW, ZYDIS_MNEMONIC_MOVSD, ZYDIS_MNEMONIC_MOVSQ})
    t.add(m, &select_string<Movs, false>);
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_CMPSB, ZYDIS_MNEMONIC_CMPSW, ZYDIS_MNEMONIC_CMPSD, ZYDIS_MNEMONIC_CMPSQ})
    t.add(m, &select_string<Cmps, true>);
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_SCASB, ZYDIS_MNEMONIC_SCASW, ZYDIS_MNEMONIC_SCASD, ZYDIS_MNEMONIC_SCASQ})
    t.add(m, &select_string<Scas, true>);
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_LODSB, ZYDIS_MNEMONIC_LODSW, ZYDIS_MNEMONIC_LODSD, ZYDIS_MNEMONIC_LODSQ})
    t.add(m, &select_string<Lods, false>);
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_STOSB, ZYDIS_MNEMONIC_STOSW, ZYDIS_MNEMONIC_STOSD, ZYDIS_MNEMONIC_STOSQ})
    t.add(m, &select_string<Stos, false>);
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_INSB, ZYDIS_MNEMONIC_INSW, ZYDIS_MNEMONIC_INSD})
    t.add(m, &select_string<Ins, false, 4>);
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_OUTSB, ZYDIS_MNEMONIC_OUTSW, ZYDIS_MNEMONIC_OUTSD})
    t.add(m, &select_string<Outs, false, 4>);
}

}  // namespace nestvm::cpu
