#include "cpu/tlb.h"

namespace nestvm::cpu {

void Tlb::flush_all() {
  ++epoch_;
  large_fills_ = 0;
  for (auto& set : e_)
    for (auto& e : set) invalidate(e);
}

void Tlb::flush_nonglobal() {
  ++epoch_;
  for (unsigned m = 0; m < kNumMmuIdx; ++m)
    for (unsigned i = 0; i < kTlbSize; ++i)
      if (!info_[m][i].global) invalidate(e_[m][i]);
}

void Tlb::flush_pcid(uint16_t pcid) {
  ++epoch_;
  for (unsigned m = 0; m < kNumMmuIdx; ++m)
    for (unsigned i = 0; i < kTlbSize; ++i)
      if (!info_[m][i].global && info_[m][i].pcid == pcid) invalidate(e_[m][i]);
}

void Tlb::flush_page(uint64_t la, uint16_t pcid, bool all_pcids) {
  ++epoch_;
  const uint64_t page = la & kPageMask;
  const unsigned i = index(la);
  for (unsigned m = 0; m < kNumMmuIdx; ++m) {
    TlbEntry& e = e_[m][i];
    const TlbEntryInfo& inf = info_[m][i];
    const uint64_t tags[] = {e.tag_read, e.tag_write.load(std::memory_order_relaxed), e.tag_exec};
    for (uint64_t t : tags) {
      if (t == kTlbInvalid || (t & kPageMask) != page) continue;
      if (all_pcids || inf.global || inf.pcid == pcid) invalidate(e);
      break;
    }
  }
}

void Tlb::flush_page_any_size(uint64_t la, uint16_t pcid) {
  flush_page(la, pcid);
  if (!large_fills_) return;
  for (unsigned m = 0; m < kNumMmuIdx; ++m)
    for (unsigned i = 0; i < kTlbSize; ++i) {
      const TlbEntryInfo& inf = info_[m][i];
      if (inf.page_shift == 12 || !(inf.global || inf.pcid == pcid)) continue;
      TlbEntry& e = e_[m][i];
      uint64_t tag = e.tag_read;
      if (tag == kTlbInvalid) tag = e.tag_write.load(std::memory_order_relaxed);
      if (tag == kTlbInvalid) tag = e.tag_exec;
      if (tag != kTlbInvalid && ((tag ^ la) >> inf.page_shift) == 0) invalidate(e);
    }
}

void Tlb::retag_globals(uint16_t pcid) {
  ++epoch_;
  for (unsigned m = 0; m < kNumMmuIdx; ++m)
    for (unsigned i = 0; i < kTlbSize; ++i) {
      TlbEntryInfo& inf = info_[m][i];
      if (!inf.global || inf.pcid == pcid) continue;
      TlbEntry& e = e_[m][i];
      auto rekey = [pcid](uint64_t t) { return t == kTlbInvalid ? t : (t & kPageMask) | pcid; };
      e.tag_read = rekey(e.tag_read);
      e.tag_write.store(rekey(e.tag_write.load(std::memory_order_relaxed)), std::memory_order_relaxed);
      e.tag_exec = rekey(e.tag_exec);
      inf.pcid = pcid;
    }
}

void Tlb::drop_writes_to(uint64_t pa_page) {
  for (unsigned m = 0; m < kNumMmuIdx; ++m)
    for (unsigned i = 0; i < kTlbSize; ++i)
      if (info_[m][i].pa_page == pa_page)
        e_[m][i].tag_write.store(kTlbInvalid, std::memory_order_relaxed);
}

}  // namespace nestvm::cpu
