// Inline fast paths of memory access: segment check, TLB hit, host load/store. Everything
// else (TLB miss, page walk, MMIO, page-crossing, faults) is in memory_slow.cpp.
#pragma once
#include <cstring>

#include "cpu/cpu.h"

namespace nestvm::cpu {

inline bool is_canonical(uint64_t la) { return uint64_t((int64_t(la) >> 47) + 1) <= 1; }

inline uint64_t Cpu::effective_address(const Insn& i) const {
  // gpr[16] (kRegNone) does not exist in the array: handle base/index explicitly.
  uint64_t ea = uint64_t(int64_t(i.disp));
  if (i.base < kRegNone) ea += state.gpr[i.base];
  else if (i.base == kRegRip) ea += state.rip + i.len;
  if (i.index < kRegNone) ea += state.gpr[i.index] << i.scale;
  return ea & size_mask(i.asz);
}

template <typename T>
[[gnu::always_inline]] inline Status Cpu::access_linear(uint64_t la, T* v, AccessKind kind, MmuIdx idx, SegReg s) {
  TlbEntry& e = tlb_.entry(idx, la);
  const uint64_t key = (la & kPageMask) | tlb_.tag();
  const bool in_page = (la & (kPageSize - 1)) <= kPageSize - sizeof(T);
  if (kind == AccessKind::kRead) {
    if (__builtin_expect(e.tag_read == key && in_page && is_canonical(la), 1)) {
      std::memcpy(v, reinterpret_cast<const void*>(la + e.addend), sizeof(T));
      return Status::kNext;
    }
  } else {
    if (__builtin_expect(e.tag_write.load(std::memory_order_relaxed) == key && in_page && is_canonical(la), 1)) {
      std::memcpy(reinterpret_cast<void*>(la + e.addend), v, sizeof(T));
      return Status::kNext;
    }
  }
  return access_slow(la, v, sizeof(T), kind, idx, s);
}

template <typename T>
inline Status Cpu::read(SegReg s, uint64_t off, T& out) {
  const SegCache& sc = seg_cache_[unsigned(s)];
  if (__builtin_expect(off < sc.rd_lo || off + (sizeof(T) - 1) > sc.rd_hi, 0))
    return segment_check_slow(s, off, sizeof(T), AccessKind::kRead);
  return access_linear((sc.base + off) & la_mask_, &out, AccessKind::kRead, mmu_idx_, s);
}

template <typename T>
inline Status Cpu::write(SegReg s, uint64_t off, T v) {
  const SegCache& sc = seg_cache_[unsigned(s)];
  if (__builtin_expect(off < sc.wr_lo || off + (sizeof(T) - 1) > sc.wr_hi, 0))
    return segment_check_slow(s, off, sizeof(T), AccessKind::kWrite);
  return access_linear((sc.base + off) & la_mask_, &v, AccessKind::kWrite, mmu_idx_, s);
}

template <typename T>
inline Status Cpu::read_linear(uint64_t la, T& out) {
  return access_linear(la & la_mask_, &out, AccessKind::kRead, mmu_idx_, SegReg::kNone);
}

template <typename T>
inline Status Cpu::write_linear(uint64_t la, T v) {
  return access_linear(la & la_mask_, &v, AccessKind::kWrite, mmu_idx_, SegReg::kNone);
}

template <typename T>
inline Status Cpu::read_system(uint64_t la, T& out) {
  return access_linear(la & la_mask_, &out, AccessKind::kRead, kMmuSupervisor, SegReg::kNone);
}

template <typename T>
inline Status Cpu::write_system(uint64_t la, T v) {
  return access_linear(la & la_mask_, &v, AccessKind::kWrite, kMmuSupervisor, SegReg::kNone);
}

template <typename T>
inline Status Cpu::rmw_ref(SegReg s, uint64_t off, RmwRef<T>& ref) {
  const SegCache& sc = seg_cache_[unsigned(s)];
  if (__builtin_expect(off < sc.wr_lo || off + (sizeof(T) - 1) > sc.wr_hi ||
                       off < sc.rd_lo || off + (sizeof(T) - 1) > sc.rd_hi, 0)) {
    Status st = segment_check_slow(s, off, sizeof(T), AccessKind::kRead);
    if (st != Status::kNext) return st;
    st = segment_check_slow(s, off, sizeof(T), AccessKind::kWrite);
    if (st != Status::kNext) return st;
  }
  const uint64_t la = (sc.base + off) & la_mask_;
  ref.la = la;
  TlbEntry& e = tlb_.entry(mmu_idx_, la);
  const uint64_t key = (la & kPageMask) | tlb_.tag();
  if (__builtin_expect(e.tag_write.load(std::memory_order_relaxed) == key &&
                       (la & (kPageSize - 1)) <= kPageSize - sizeof(T) && is_canonical(la), 1)) {
    ref.host = reinterpret_cast<T*>(la + e.addend);
    return Status::kNext;
  }
  // Slow: translate for writing (a read-modify-write faults as a write, SDM Vol. 3 §4.7) and
  // fall back to exact accesses through the slow path for MMIO and page-crossing operands.
  uint8_t* host;
  uint64_t pa;
  const uint64_t first = kPageSize - (la & (kPageSize - 1));
  Status st = translate(la, AccessKind::kWrite, mmu_idx_, s, host, pa);
  if (st != Status::kNext) return st;
  if (first < sizeof(T)) {
    uint8_t* host2;
    st = translate(la + first, AccessKind::kWrite, mmu_idx_, s, host2, pa);
    if (st != Status::kNext) return st;
    ref.host = nullptr;
  } else {
    ref.host = host ? reinterpret_cast<T*>(host + (la & (kPageSize - 1))) : nullptr;
  }
  return Status::kNext;
}

template <typename T>
inline T Cpu::rmw_load(const RmwRef<T>& r) {
  T v;
  if (r.host) std::memcpy(&v, r.host, sizeof(T));
  else access_slow(r.la, &v, sizeof(T), AccessKind::kRead, mmu_idx_, SegReg::kNone);
  return v;
}

template <typename T>
inline void Cpu::rmw_store(const RmwRef<T>& r, T v) {
  if (r.host) std::memcpy(r.host, &v, sizeof(T));
  else access_slow(r.la, &v, sizeof(T), AccessKind::kWrite, mmu_idx_, SegReg::kNone);
}

template <typename T>
inline Status Cpu::push(T v) {
  const uint64_t nsp = (state.gpr[kRsp] - sizeof(T)) & size_mask(stack_size_);
  Status st = write<T>(SegReg::kSS, nsp, v);
  if (st != Status::kNext) return st;
  set_sp(nsp);
  return Status::kNext;
}

template <typename T>
inline Status Cpu::pop(T& v) {
  const uint64_t osp = sp();
  Status st = read<T>(SegReg::kSS, osp, v);
  if (st != Status::kNext) return st;
  set_sp(osp + sizeof(T));
  return Status::kNext;
}

template <typename T>
inline Status Cpu::read_stack(uint64_t offset, T& v) {
  return read<T>(SegReg::kSS, (state.gpr[kRsp] + offset) & size_mask(stack_size_), v);
}

}  // namespace nestvm::cpu
