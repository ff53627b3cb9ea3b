// Slow paths of memory access: segment faults, TLB misses (walk, EPT, fill), page-crossing and
// MMIO accesses, code-page tracking on writes.
#include <cstring>

#include "cpu/memory.h"

namespace nestvm::cpu {

using arch::SegReg;

Status Cpu::segment_check_slow(SegReg s, uint64_t off, unsigned size, AccessKind kind) {
  // The fast-path ranges are exact (refresh_segment builds them from the SDM's rules in §5.3 and
  // §5.5: null/unusable selector, execute-only code, read-only data, expand-down limits), so
  // reaching here means the access faults: #SS(0) for SS, #GP(0) otherwise.
  return seg_fault(s);
}

namespace {

bool can_access(AccessKind kind, MmuIdx idx, const Translation& t, uint64_t cr0, uint64_t cr4) {
  const bool smap = cr4 & arch::cr4::kSMAP, smep = cr4 & arch::cr4::kSMEP;
  const bool wp = cr0 & arch::cr0::kWP;
  // SDM Vol. 3 §4.6, "Access Rights".
  switch (kind) {
    case AccessKind::kRead:
      if (idx == kMmuUser) return t.user;
      return !(idx == kMmuSupervisor && smap && t.user);
    case AccessKind::kWrite:
      if (idx == kMmuUser) return t.user && t.writable;
      if (idx == kMmuSupervisor && smap && t.user) return false;
      return t.writable || !wp;
    case AccessKind::kExec:
      if (t.nx) return false;
      if (idx == kMmuUser) return t.user;
      return !(smep && t.user);
  }
  return false;
}

}  // namespace

Status Cpu::translate(uint64_t la, AccessKind kind, MmuIdx idx, SegReg seg, uint8_t*& host, uint64_t& pa) {
  if (!is_canonical(la)) return seg == SegReg::kSS ? fault(arch::Vector::kSS, 0) : fault(arch::Vector::kGP, 0);
  Translation t;
  if (paging_mode_ == PagingMode::kNone) {
    t.pa = la & 0xffffffffull;
    t.dirty = true;
  } else {
    Status st = walk(la, kind, idx, t);
    if (st != Status::kNext) return st;
  }
  if (ept_active()) {
    // The guest-physical address goes through EPT (SDM Vol. 3 §29.3); the TLB then caches the
    // combined translation with the permissions of both.
    EptTranslation et;
    const EptAccess a = kind == AccessKind::kRead ? EptAccess::kRead
                      : kind == AccessKind::kWrite ? EptAccess::kWrite : EptAccess::kFetch;
    const Status st = ept_translate(t.pa, a, la, et);
    if (st != Status::kNext) return st;
    t.pa = et.hpa;
    t.ept_rwx = et.rwx;
    t.dirty = t.dirty && et.dirty;
  }
  pa = t.pa;
  // "Virtualize APIC accesses": the page is never cached, every access exits (SDM §30.4).
  if (__builtin_expect(vmx_is_apic_access(pa), 0)) return vmx_apic_access(pa, kind);
  uint8_t* page = mem_.ram_page(pa);
  host = page;
  if (!page) return Status::kNext;  // MMIO: never cached in the TLB

  PageMeta& meta = mem_.page_meta(pa);
  if (kind == AccessKind::kWrite && mem_.code_tracker().note_write(meta)) stop_block_ = true;

  const uint64_t key = (la & kPageMask) | tlb_.tag();
  TlbEntry& e = tlb_.entry(idx, la);
  TlbEntryInfo& info = tlb_.info(idx, la);
  const uintptr_t addend = reinterpret_cast<uintptr_t>(page) - (la & kPageMask);
  e.tag_read = can_access(AccessKind::kRead, idx, t, state.cr0, state.cr4) && (t.ept_rwx & 1) ? key : kTlbInvalid;
  e.tag_exec = can_access(AccessKind::kExec, idx, t, state.cr0, state.cr4) && (t.ept_rwx & 4) ? key : kTlbInvalid;
  e.tag_write.store(kTlbInvalid, std::memory_order_relaxed);
  e.addend = addend;
  info.pa_page = pa & kPageMask;
  info.meta = &meta;
  info.tag = tlb_.tag();
  info.global = t.global;
  info.page_shift = t.page_shift;
  if (t.page_shift > 12) tlb_.note_large_fill(la, t.page_shift);
  if (t.global) tlb_.note_global_fill();
  // A fast write entry needs the dirty bit already set (so the first write walks and sets it)
  // and a page without decoded code.
  if ((t.dirty || kind == AccessKind::kWrite) && can_access(AccessKind::kWrite, idx, t, state.cr0, state.cr4) &&
      (t.ept_rwx & 2))
    mem_.code_tracker().install_write_entry(meta, [&] { e.tag_write.store(key, std::memory_order_relaxed); });
  return Status::kNext;
}

Status Cpu::access_slow(uint64_t la, void* buf, unsigned size, AccessKind kind, MmuIdx idx, SegReg seg) {
  if (!is_canonical(la)) return seg == SegReg::kSS ? fault(arch::Vector::kSS, 0) : fault(arch::Vector::kGP, 0);
  const unsigned first = unsigned(std::min<uint64_t>(size, kPageSize - (la & (kPageSize - 1))));
  uint8_t* host1;
  uint8_t* host2 = nullptr;
  uint64_t pa1, pa2 = 0;
  Status st = translate(la, kind, idx, seg, host1, pa1);
  if (st != Status::kNext) return st;
  if (first < size) {  // crosses into the next page: both must translate before anything is written
    const uint64_t la2 = (la + first) & la_mask_;
    st = translate(la2, kind, idx, seg, host2, pa2);
    if (st != Status::kNext) return st;
  }
  auto* bytes = static_cast<uint8_t*>(buf);
  auto do_part = [&](uint8_t* host, uint64_t pa, uint8_t* p, unsigned n) {
    if (host) {
      uint8_t* h = host + (pa & (kPageSize - 1));
      if (kind == AccessKind::kWrite) std::memcpy(h, p, n);
      else std::memcpy(p, h, n);
      return;
    }
    // MMIO: split into naturally sized pieces the device model understands.
    unsigned done = 0;
    while (done < n) {
      unsigned piece = (n - done >= 8 && !((pa + done) & 7)) ? 8
                     : (n - done >= 4 && !((pa + done) & 3)) ? 4
                     : (n - done >= 2 && !((pa + done) & 1)) ? 2 : 1;
      if (kind == AccessKind::kWrite) {
        uint64_t v = 0;
        std::memcpy(&v, p + done, piece);
        mem_.mmio_write(pa + done, piece, v);
      } else {
        uint64_t v = mem_.mmio_read(pa + done, piece);
        std::memcpy(p + done, &v, piece);
      }
      done += piece;
    }
  };
  do_part(host1, pa1, bytes, first);
  if (first < size) do_part(host2, pa2, bytes + first, size - first);
  return Status::kNext;
}

Status Cpu::translate_fetch(uint64_t la, uint8_t*& host, uint64_t& pa) {
  if (!is_canonical(la)) return fault(arch::Vector::kGP, 0);
  TlbEntry& e = tlb_.entry(mmu_idx_, la);
  if (e.tag_exec == ((la & kPageMask) | tlb_.tag())) {
    host = reinterpret_cast<uint8_t*>((la & kPageMask) + e.addend);
    pa = tlb_.info(mmu_idx_, la).pa_page | (la & (kPageSize - 1));
    return Status::kNext;
  }
  return translate(la, AccessKind::kExec, mmu_idx_, SegReg::kCS, host, pa);
}

}  // namespace nestvm::cpu
