#include "cpu/tlb.h"

namespace nestvm::cpu {

namespace {
bool same_group(const TlbContext& a, const TlbContext& b) { return a.vpid == b.vpid && a.ep4ta == b.ep4ta; }
}  // namespace

Tlb::Tlb() { flush_everything(); }

// ---- address-space tags ---------------------------------------------------------------------

void Tlb::reset_tags() {
  for (auto& set : e_)
    for (auto& e : set) invalidate(e);
  for (unsigned t = 0; t < next_tag_; ++t) tags_[t].live = tags_[t].has_globals = false;
  n_live_ = 0;
  next_tag_ = 0;
  large_regions_ = {};
}

uint16_t Tlb::allocate(const TlbContext& c) {
  // Tags are never reused while entries may carry them: when they run out, the whole TLB goes.
  if (next_tag_ == kTlbTags) reset_tags();
  if (n_live_ == kTlbLiveTags) {
    // Too many address spaces at once: drop the least recently used one (a TLB may drop any
    // translation at any time, SDM Vol. 3 §4.10.4.4).
    unsigned lru = 0;
    for (unsigned k = 1; k < n_live_; ++k)
      if (tags_[live_[k]].last_use < tags_[live_[lru]].last_use) lru = k;
    tags_[live_[lru]].live = false;
    live_[lru] = live_[--n_live_];
  }
  const uint16_t t = uint16_t(next_tag_++);
  tags_[t] = TagInfo{c, true, false, use_clock_};
  live_[n_live_++] = t;
  return t;
}

void Tlb::switch_to(const TlbContext& c) {
  ++epoch_;  // the same linear addresses now translate differently: block links die
  cur_ = c;
  ++use_clock_;
  for (unsigned k = 0; k < n_live_; ++k) {
    TagInfo& ti = tags_[live_[k]];
    if (ti.ctx == c) {
      ti.last_use = use_clock_;
      tag_ = live_[k];
      follow_globals();
      return;
    }
  }
  tag_ = allocate(c);
  follow_globals();
}

// Global translations apply to every PCID of their VPID and EP4TA (SDM Vol. 3 §4.10.2.4): those
// held under another PCID's tag are re-keyed to the current tag so that the fast path finds them.
void Tlb::follow_globals() {
  bool elsewhere = false;
  for (unsigned k = 0; k < n_live_; ++k) {
    const TagInfo& ti = tags_[live_[k]];
    if (live_[k] != tag_ && ti.has_globals && same_group(ti.ctx, cur_)) elsewhere = true;
  }
  if (!elsewhere) return;
  const uint16_t to = tag_;
  auto rekey = [to](uint64_t t) { return t == kTlbInvalid ? t : (t & kPageMask) | to; };
  for (unsigned m = 0; m < kNumMmuIdx; ++m)
    for (unsigned i = 0; i < kTlbSize; ++i) {
      TlbEntryInfo& inf = info_[m][i];
      if (!inf.global || inf.tag == to) continue;
      const TagInfo& from = tags_[inf.tag];
      if (!from.live || !same_group(from.ctx, cur_)) continue;
      TlbEntry& e = e_[m][i];
      e.tag_read = rekey(e.tag_read);
      e.tag_exec = rekey(e.tag_exec);
      // Another vCPU may drop the write key meanwhile (the page became code): keep its drop.
      uint64_t w = e.tag_write.load(std::memory_order_relaxed);
      e.tag_write.compare_exchange_strong(w, rekey(w), std::memory_order_relaxed);
      inf.tag = to;
    }
  for (unsigned k = 0; k < n_live_; ++k) {
    TagInfo& ti = tags_[live_[k]];
    if (same_group(ti.ctx, cur_)) ti.has_globals = false;
  }
  tags_[to].has_globals = true;
}

void Tlb::switch_context(const TlbContext& c, bool flush_vpid0) {
  if (flush_vpid0) {
    // Retired without giving the current context a new tag: it is being left anyway.
    for (unsigned k = 0; k < n_live_;) {
      TagInfo& ti = tags_[live_[k]];
      if (ti.ctx.vpid == 0) {
        ti.live = false;
        live_[k] = live_[--n_live_];
      } else {
        ++k;
      }
    }
  } else if (c == cur_) {
    return;
  }
  switch_to(c);
}

// ---- invalidation helpers ---------------------------------------------------------------------

template <typename Pred>
void Tlb::retire_if(Pred pred) {
  ++epoch_;
  for (unsigned k = 0; k < n_live_;) {
    TagInfo& ti = tags_[live_[k]];
    if (pred(ti.ctx)) {
      ti.live = false;
      live_[k] = live_[--n_live_];
    } else {
      ++k;
    }
  }
  if (!tags_[tag_].live) tag_ = allocate(cur_);
}

template <typename Pred>
void Tlb::invalidate_if(Pred pred) {
  ++epoch_;
  for (unsigned m = 0; m < kNumMmuIdx; ++m)
    for (unsigned i = 0; i < kTlbSize; ++i) {
      const TlbEntryInfo& inf = info_[m][i];
      const TagInfo& ti = tags_[inf.tag];
      if (ti.live && pred(inf, ti.ctx)) invalidate(e_[m][i]);
    }
}

template <typename Pred>
void Tlb::invalidate_page_if(uint64_t la, Pred pred) {
  ++epoch_;
  auto some_tag = [](const TlbEntry& e) {
    uint64_t t = e.tag_read;
    if (t == kTlbInvalid) t = e.tag_write.load(std::memory_order_relaxed);
    if (t == kTlbInvalid) t = e.tag_exec;
    return t;
  };
  // The 4 KiB piece holding la sits at index(la); pieces of a larger page that maps la sit
  // elsewhere, and are looked for only when some large page was cached.
  const unsigned home = index(la);
  const bool scan = large_page_may_map(la);
  for (unsigned m = 0; m < kNumMmuIdx; ++m)
    for (unsigned i = scan ? 0 : home; i < (scan ? kTlbSize : home + 1); ++i) {
      const TlbEntryInfo& inf = info_[m][i];
      const TagInfo& ti = tags_[inf.tag];
      if (!ti.live) continue;
      const uint64_t t = some_tag(e_[m][i]);
      if (t == kTlbInvalid || ((t ^ la) >> inf.page_shift) != 0) continue;
      if (pred(inf, ti.ctx)) invalidate(e_[m][i]);
    }
}

// ---- invalidation by the guest's instructions -------------------------------------------------

void Tlb::flush_all() {
  const uint16_t vpid = cur_.vpid;
  retire_if([vpid](const TlbContext& c) { return c.vpid == vpid; });
}

void Tlb::flush_nonglobal() {
  const uint16_t vpid = cur_.vpid;
  invalidate_if([vpid](const TlbEntryInfo& i, const TlbContext& c) { return !i.global && c.vpid == vpid; });
}

void Tlb::flush_pcid(uint16_t pcid) {
  const uint16_t vpid = cur_.vpid;
  invalidate_if([vpid, pcid](const TlbEntryInfo& i, const TlbContext& c) {
    return !i.global && c.vpid == vpid && c.pcid == pcid;
  });
}

void Tlb::flush_page_any_size(uint64_t la, uint16_t pcid) {
  const uint16_t vpid = cur_.vpid;
  invalidate_page_if(la, [vpid, pcid](const TlbEntryInfo& i, const TlbContext& c) {
    return c.vpid == vpid && (i.global || c.pcid == pcid);
  });
}

// ---- VMX invalidations ------------------------------------------------------------------------

void Tlb::flush_vpid(uint16_t vpid) {
  retire_if([vpid](const TlbContext& c) { return c.vpid == vpid; });
}

void Tlb::flush_all_vpids_but_0() {
  retire_if([](const TlbContext& c) { return c.vpid != 0; });
}

void Tlb::flush_vpid_nonglobal(uint16_t vpid) {
  invalidate_if([vpid](const TlbEntryInfo& i, const TlbContext& c) { return !i.global && c.vpid == vpid; });
}

void Tlb::flush_vpid_address(uint16_t vpid, uint64_t la) {
  invalidate_page_if(la, [vpid](const TlbEntryInfo&, const TlbContext& c) { return c.vpid == vpid; });
}

void Tlb::flush_ep4ta(uint64_t ep4ta) {
  retire_if([ep4ta](const TlbContext& c) { return c.ep4ta == ep4ta; });
}

void Tlb::flush_all_ep4tas() {
  retire_if([](const TlbContext& c) { return c.ep4ta != kNoEpt; });
}

void Tlb::flush_current_page(uint64_t la) {
  ++epoch_;
  const uint64_t key = (la & kPageMask) | tag_;
  for (unsigned m = 0; m < kNumMmuIdx; ++m) {
    TlbEntry& e = e_[m][index(la)];
    if (e.tag_read == key || e.tag_exec == key || e.tag_write.load(std::memory_order_relaxed) == key) invalidate(e);
  }
}

void Tlb::flush_everything() {
  ++epoch_;
  reset_tags();
  tag_ = allocate(cur_);
}

void Tlb::drop_writes_to(uint64_t pa_page) {
  for (unsigned m = 0; m < kNumMmuIdx; ++m)
    for (unsigned i = 0; i < kTlbSize; ++i)
      if (info_[m][i].pa_page == pa_page)
        e_[m][i].tag_write.store(kTlbInvalid, std::memory_order_relaxed);
}

}  // namespace nestvm::cpu
