// Shared helpers for instruction handlers: sized integer types, register and memory operand
// access for the r/m forms, and the conventions every handler follows:
//  - do every access that can fault before changing registers, flags or RIP;
//  - return Status::kNext (RIP advances), kJumped (handler set RIP), kEndBlock, kFault, kExit.
#pragma once
#include <cstdint>
#include <atomic>
#include <mutex>
#include <type_traits>

#include "cpu/decoder.h"
#include "cpu/memory.h"

namespace nestvm::cpu {

template <unsigned N> struct UIntOf;
template <> struct UIntOf<1> { using type = uint8_t; using stype = int8_t; };
template <> struct UIntOf<2> { using type = uint16_t; using stype = int16_t; };
template <> struct UIntOf<4> { using type = uint32_t; using stype = int32_t; };
template <> struct UIntOf<8> { using type = uint64_t; using stype = int64_t; };
template <unsigned N> using uint_t = typename UIntOf<N>::type;
template <unsigned N> using sint_t = typename UIntOf<N>::stype;

inline SegReg seg_of(const Insn& i) { return SegReg(i.seg); }

// Register operands of N bytes (N = 1: byte offsets, see insn.h).
template <unsigned N> inline uint64_t get_reg(const Cpu& c, uint8_t r) { return c.get_reg(N, r); }
template <unsigned N> inline void set_reg(Cpu& c, uint8_t r, uint64_t v) { c.set_reg(N, r, v); }

// The memory operand of N bytes.
template <unsigned N> inline Status read_mem(Cpu& c, const Insn& i, uint64_t& v) {
  uint_t<N> t;
  const Status st = c.read<uint_t<N>>(seg_of(i), c.effective_address(i), t);
  v = t;
  return st;
}
template <unsigned N> inline Status write_mem(Cpu& c, const Insn& i, uint64_t v) {
  return c.write<uint_t<N>>(seg_of(i), c.effective_address(i), uint_t<N>(v));
}

}  // namespace nestvm::cpu

namespace nestvm::cpu {

// Handler tables by operand size: sized<H>(n) picks H<n>::run.
template <template <unsigned> class H>
inline Handler sized(unsigned bytes) {
  switch (bytes) {
    case 1: return &H<1>::run;
    case 2: return &H<2>::run;
    case 4: return &H<4>::run;
    default: return &H<8>::run;
  }
}
// Sizes 2, 4, 8 only (forms without a byte variant).
template <template <unsigned> class H>
inline Handler sized_wdq(unsigned bytes) {
  switch (bytes) {
    case 2: return &H<2>::run;
    case 4: return &H<4>::run;
    default: return &H<8>::run;
  }
}

// Serializes LOCKed operations that host atomics cannot do (misaligned or split operands),
// as a split lock serializes the bus.
std::mutex& split_lock_mutex();

// A LOCKed read-modify-write: new = f(old), atomically on guest memory. Returns old.
template <typename T, typename F>
inline T locked_rmw(Cpu& c, const Cpu::RmwRef<T>& ref, F f) {
  if (ref.host && (reinterpret_cast<uintptr_t>(ref.host) % sizeof(T)) == 0) {
    std::atomic_ref<T> a(*ref.host);
    T old = a.load(std::memory_order_relaxed);
    while (!a.compare_exchange_weak(old, T(f(old)), std::memory_order_seq_cst, std::memory_order_relaxed)) {}
    return old;
  }
  std::lock_guard lock(split_lock_mutex());
  const T old = c.rmw_load(ref);
  c.rmw_store(ref, T(f(old)));
  return old;
}

// A read-modify-write, LOCKed when the instruction has the LOCK prefix. Returns old.
template <typename T, typename F>
inline T rmw(Cpu& c, const Insn& i, const Cpu::RmwRef<T>& ref, F f) {
  if (i.flags & insn_flags::kLock) return locked_rmw(c, ref, f);
  const T old = c.rmw_load(ref);
  c.rmw_store(ref, T(f(old)));
  return old;
}

}  // namespace nestvm::cpu
