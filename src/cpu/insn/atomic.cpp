// Instruction class: exchange-and-add and compare-and-exchange. XADD CMPXCHG CMPXCHG8B
// CMPXCHG16B (SDM Vol. 2). With LOCK (and always for CMPXCHG8B/16B) a memory operand is
// updated with one host atomic operation, so that several vCPU threads sharing guest RAM see
// them as the bus does; misaligned, page-crossing and MMIO operands serialize on the
// split-lock mutex instead (operand.h).
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

using namespace arch::rflags;

// ---- XADD ----------------------------------------------------------------------------------
// TEMP = SRC + DEST; SRC = DEST; DEST = TEMP. Flags as ADD. Insn::rm = the r/m register
// (destination), Insn::reg = the source register.
template <unsigned N> struct XaddR {
  static Status run(Cpu& c, const Insn& i) {
    const uint64_t d = get_reg<N>(c, i.rm), s = get_reg<N>(c, i.reg);
    const uint64_t t = (d + s) & size_mask(N);
    set_reg<N>(c, i.reg, d);
    set_reg<N>(c, i.rm, t);  // written last: XADD r, r with one register keeps the sum
    c.set_lazy(FlagOp::kAdd, N, t, d, s);
    return Status::kNext;
  }
};
template <unsigned N> struct XaddM {
  static Status run(Cpu& c, const Insn& i) {
    using T = uint_t<N>;
    Cpu::RmwRef<T> ref;
    const Status st = c.rmw_ref<T>(seg_of(i), c.effective_address(i), ref);
    if (st != Status::kNext) return st;
    const T s = T(get_reg<N>(c, i.reg));
    const T old = rmw(c, i, ref, [s](T v) { return T(v + s); });
    set_reg<N>(c, i.reg, old);
    c.set_lazy(FlagOp::kAdd, N, T(old + s), old, s);
    return Status::kNext;
  }
};

// ---- CMPXCHG -------------------------------------------------------------------------------
// SDM CMPXCHG: TEMP = DEST; IF accumulator = TEMP THEN ZF = 1, DEST = SRC ELSE ZF = 0,
// accumulator = TEMP, DEST = TEMP. Flags as CMP accumulator, TEMP. A memory destination is
// written in both cases (the processor never produces a locked read without a write).
template <unsigned N> struct CmpxchgR {
  static Status run(Cpu& c, const Insn& i) {
    const uint64_t acc = get_reg<N>(c, kRax), t = get_reg<N>(c, i.rm);
    c.set_lazy(FlagOp::kSub, N, (acc - t) & size_mask(N), acc, t);
    // Intel writes only the register the outcome selects: a 32-bit destination is zero-
    // extended on success, RAX on failure, and the other keeps its upper half.
    if (acc == t) set_reg<N>(c, i.rm, get_reg<N>(c, i.reg));
    else set_reg<N>(c, kRax, t);
    return Status::kNext;
  }
};
template <unsigned N> struct CmpxchgM {
  static Status run(Cpu& c, const Insn& i) {
    using T = uint_t<N>;
    Cpu::RmwRef<T> ref;
    const Status st = c.rmw_ref<T>(seg_of(i), c.effective_address(i), ref);
    if (st != Status::kNext) return st;
    const T acc = T(get_reg<N>(c, kRax)), s = T(get_reg<N>(c, i.reg));
    const T old = rmw(c, i, ref, [acc, s](T v) { return v == acc ? s : v; });
    c.set_lazy(FlagOp::kSub, N, T(acc - old), acc, old);
    if (old != acc) set_reg<N>(c, kRax, old);
    return Status::kNext;
  }
};

// ---- CMPXCHG8B / CMPXCHG16B ----------------------------------------------------------------
// SDM CMPXCHG8B/16B: compare EDX:EAX (RDX:RAX) with m64 (m128); equal: ZF = 1 and the
// operand = ECX:EBX (RCX:RBX); else ZF = 0 and EDX:EAX (RDX:RAX) = the operand, which is
// written back unchanged. Only ZF changes.

inline bool host_cas16(unsigned __int128* p, uint64_t& lo, uint64_t& hi, uint64_t new_lo, uint64_t new_hi) {
  bool eq;
  asm volatile("lock cmpxchg16b %1"
               : "=@ccz"(eq), "+m"(*p), "+a"(lo), "+d"(hi)
               : "b"(new_lo), "c"(new_hi)
               : "memory");
  return eq;
}

template <typename T>
inline bool compare_exchange(Cpu& c, const Cpu::RmwRef<T>& ref, T& expected, T desired) {
  if (ref.host && reinterpret_cast<uintptr_t>(ref.host) % sizeof(T) == 0) {
    if constexpr (sizeof(T) == 16) {
      uint64_t lo = uint64_t(expected), hi = uint64_t(expected >> 64);
      const bool eq = host_cas16(ref.host, lo, hi, uint64_t(desired), uint64_t(desired >> 64));
      expected = (T(hi) << 64) | lo;
      return eq;
    } else {
      return std::atomic_ref<T>(*ref.host).compare_exchange_strong(expected, desired, std::memory_order_seq_cst);
    }
  }
  std::lock_guard lock(split_lock_mutex());
  const T old = c.rmw_load(ref);
  const bool eq = old == expected;
  c.rmw_store(ref, eq ? desired : old);
  expected = old;
  return eq;
}

template <unsigned N>  // operand size 4 (CMPXCHG8B) or 8 (CMPXCHG16B)
struct Cmpxchg2N {
  static Status run(Cpu& c, const Insn& i) {
    using H = uint_t<N>;
    using T = std::conditional_t<N == 8, unsigned __int128, uint64_t>;
    const uint64_t ea = c.effective_address(i);
    // SDM CMPXCHG16B: #GP(0) if the operand is not aligned on a 16-byte boundary.
    if (N == 8 && ((c.seg_cache(seg_of(i)).base + ea) & 15)) return c.fault(arch::Vector::kGP, 0);
    Cpu::RmwRef<T> ref;
    const Status st = c.rmw_ref<T>(seg_of(i), ea, ref);
    if (st != Status::kNext) return st;
    T expected = (T(H(c.state.gpr[kRdx])) << (8 * N)) | H(c.state.gpr[kRax]);
    const T desired = (T(H(c.state.gpr[kRcx])) << (8 * N)) | H(c.state.gpr[kRbx]);
    const bool eq = compare_exchange<T>(c, ref, expected, desired);
    if (!eq) {
      set_reg<N>(c, kRax, H(expected));
      set_reg<N>(c, kRdx, H(expected >> (8 * N)));
    }
    c.set_status_flags((c.rflags() & ~kZF) | (eq ? kZF : 0));
    return Status::kNext;
  }
};

Handler select_xadd(const DecodeInput& in, Insn& i) {
  const ZydisDecodedOperand& d = in.ops[0];
  i.reg = reg_operand(in.ops[1]);
  const unsigned n = d.size / 8;
  if (is_reg(d)) {
    i.rm = reg_operand(d);
    return sized<XaddR>(n);
  }
  return sized<XaddM>(n);
}

Handler select_cmpxchg(const DecodeInput& in, Insn& i) {
  const ZydisDecodedOperand& d = in.ops[0];
  i.reg = reg_operand(in.ops[1]);
  const unsigned n = d.size / 8;
  if (is_reg(d)) {
    i.rm = reg_operand(d);
    return sized<CmpxchgR>(n);
  }
  return sized<CmpxchgM>(n);
}

Handler select_cmpxchg8b(const DecodeInput& in, Insn&) {
  return in.model.has(Feature::kCx8) ? &Cmpxchg2N<4>::run : nullptr;
}

Handler select_cmpxchg16b(const DecodeInput& in, Insn&) {
  return in.model.has(Feature::kCx16) ? &Cmpxchg2N<8>::run : nullptr;
}

}  // namespace

void register_atomic(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_XADD, &select_xadd);
  t.add(ZYDIS_MNEMONIC_CMPXCHG, &select_cmpxchg);
  t.add(ZYDIS_MNEMONIC_CMPXCHG8B, &select_cmpxchg8b);
  t.add(ZYDIS_MNEMONIC_CMPXCHG16B, &select_cmpxchg16b);
}

}  // namespace nestvm::cpu
