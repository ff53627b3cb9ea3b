// The core's software TLB: linear page -> host pointer, per access kind, for the fast path of
// every memory access. It caches complete translations (paging, and EPT under VMX), tagged as
// hardware tags them (SDM Vol. 3 §4.10.1, §29.4): linear mappings by (VPID, PCID), combined
// mappings by (VPID, PCID, EP4TA). Each such address space in use gets a 12-bit tag, kept in
// bits 11:0 of every key, so the fast path compares one word whatever the context; switching
// context switches the tag without flushing, and invalidating a whole context retires its tag.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>

#include "cpu/phys_mem.h"

namespace nestvm::cpu {

// Which permission context an access is checked in. Separate entries per context let CPL and
// EFLAGS.AC changes (SYSCALL, STAC/CLAC under SMAP) avoid flushing.
enum MmuIdx : uint8_t {
  kMmuUser = 0,        // CPL 3
  kMmuSupervisor = 1,  // CPL 0-2 (with SMAP: user pages excluded)
  kMmuSupervisorAc = 2,// CPL 0-2 with CR4.SMAP=1 and EFLAGS.AC=1: user data pages allowed
  kNumMmuIdx = 3,
};

inline constexpr unsigned kTlbBits = 9;
inline constexpr unsigned kTlbSize = 1u << kTlbBits;
// Never equal to a lookup key: lookups use canonical addresses only.
inline constexpr uint64_t kTlbInvalid = 1ull << 63;

// Address-space tags: as many as the key's bits 11:0 hold; a bounded number live at once.
inline constexpr unsigned kTlbTags = 1u << 12;
inline constexpr unsigned kTlbLiveTags = 64;
// The EP4TA of linear mappings (EPT not in use).
inline constexpr uint64_t kNoEpt = ~0ull;

struct TlbEntry {
  // Keys: (linear page | address-space tag) for which the access kind may use the fast path.
  uint64_t tag_read = kTlbInvalid;
  std::atomic<uint64_t> tag_write{kTlbInvalid};  // cleared by other vCPUs when the page becomes code
  uint64_t tag_exec = kTlbInvalid;
  uintptr_t addend = 0;  // host pointer = linear address + addend
};

struct TlbEntryInfo {
  uint64_t pa_page = 0;   // physical (host-physical under EPT) page
  PageMeta* meta = nullptr;
  uint16_t tag = 0;       // address-space tag the entry was filled in
  bool global = false;
  uint8_t page_shift = 12;  // size of the (guest) page the entry is a 4 KiB piece of
};

// An address space as the TLB tags it (SDM Vol. 3 §29.4.1).
struct TlbContext {
  uint64_t ep4ta = kNoEpt;  // EPTP bits 51:12 for combined mappings; kNoEpt for linear mappings
  uint16_t vpid = 0;        // 0 in VMX root operation and when "enable VPID" is 0
  uint16_t pcid = 0;
  bool operator==(const TlbContext&) const = default;
};

class Tlb {
 public:
  Tlb();
  static unsigned index(uint64_t la) { return (la >> 12) & (kTlbSize - 1); }

  TlbEntry& entry(MmuIdx idx, uint64_t la) { return e_[idx][index(la)]; }
  TlbEntryInfo& info(MmuIdx idx, uint64_t la) { return info_[idx][index(la)]; }

  // ---- the current address space -------------------------------------------------------------
  // Its tag, bits 11:0 of every key the fast paths compare.
  uint16_t tag() const { return tag_; }
  const TlbContext& context() const { return cur_; }
  // Switches to another context (VM entry and exit). With flush_vpid0, every mapping tagged
  // with VPID 0 is invalidated first (entries and exits with "enable VPID" = 0, SDM §29.4.3.3).
  void switch_context(const TlbContext& c, bool flush_vpid0);
  // Switches the PCID within the current VPID and EP4TA (MOV to CR3, CR4.PCIDE changes).
  void set_pcid(uint16_t pcid) {
    if (pcid == cur_.pcid) return;
    TlbContext c = cur_;
    c.pcid = pcid;
    switch_to(c);
  }
  // A fill of a global translation in the current context (translate()).
  void note_global_fill() { tags_[tag_].has_globals = true; }

  // ---- invalidation by the guest's own instructions: the current VPID only, every EP4TA
  // (SDM §29.4.3.1), with the rules of §4.10.4.1 ------------------------------------------------
  // Every translation, global ones included (MOV to CR4/CR0 flush cases, INVPCID type 2).
  void flush_all();
  // Every non-global translation of every PCID (MOV to CR3 without PCIDE, INVPCID type 3).
  void flush_nonglobal();
  // The non-global translations of one PCID (INVPCID single-context, MOV CR3 with PCIDE).
  void flush_pcid(uint16_t pcid);
  // Every piece, of whatever page size, of the page that maps la for PCID `pcid`, and global
  // translations of it (INVLPG, INVPCID individual-address).
  void flush_page_any_size(uint64_t la, uint16_t pcid);

  // ---- VMX invalidations (INVVPID, INVEPT, EPT violations; SDM §29.4.3) ---------------------
  // Every mapping tagged with `vpid`: all PCIDs and EP4TAs, globals included.
  void flush_vpid(uint16_t vpid);
  // Every mapping tagged with a VPID other than 0 (INVVPID all-context).
  void flush_all_vpids_but_0();
  // Every non-global mapping tagged with `vpid`.
  void flush_vpid_nonglobal(uint16_t vpid);
  // The mappings of the page containing la tagged with `vpid`, of any PCID, EP4TA and size.
  void flush_vpid_address(uint16_t vpid, uint64_t la);
  // Combined mappings of one EP4TA (INVEPT single-context) or of every EP4TA (all-context).
  void flush_ep4ta(uint64_t ep4ta);
  void flush_all_ep4tas();
  // The current context's mappings of la (an EPT violation on the translation of la).
  void flush_current_page(uint64_t la);

  // Every translation of every context (RESET; the processor running out of tags).
  void flush_everything();

  // Called when an entry for `la` is filled from a page of 2^page_shift bytes (> 4 KiB).
  void note_large_fill(uint64_t la, unsigned page_shift) {
    const unsigned b = large_region_bit(la, page_shift);
    large_regions_[b / 64] |= 1ull << (b % 64);
  }
  // Drops fast write entries that point at a physical page (the page now holds code).
  void drop_writes_to(uint64_t pa_page);

  // Bumped by every flush that can change an instruction fetch's translation, and by the Cpu
  // on mode changes: links between decoded blocks are valid only within one epoch.
  uint32_t epoch() const { return epoch_; }
  void bump_epoch() { ++epoch_; }
  // Where the tag and the epoch live, for the JIT's generated code (cpu/jit/), which reads
  // them at every access and block link as the inline fast paths do.
  const uint16_t* tag_address() const { return &tag_; }
  const uint32_t* epoch_address() const { return &epoch_; }

 private:
  struct TagInfo {
    TlbContext ctx;
    bool live = false;         // entries with this tag may be used
    bool has_globals = false;  // global entries may be keyed with this tag
    uint32_t last_use = 0;
  };
  static void invalidate(TlbEntry& e) {
    e.tag_read = kTlbInvalid;
    e.tag_write.store(kTlbInvalid, std::memory_order_relaxed);
    e.tag_exec = kTlbInvalid;
  }
  void switch_to(const TlbContext& c);
  uint16_t allocate(const TlbContext& c);
  void reset_tags();
  void follow_globals();
  // Invalidates every context `pred(ctx)` selects by retiring its tag (its entries never match
  // again); the current context gets a fresh tag if it was one of them.
  template <typename Pred> void retire_if(Pred pred);
  // Invalidates the entries `pred(info, ctx)` selects, scanning the whole TLB.
  template <typename Pred> void invalidate_if(Pred pred);
  // Invalidates the entries for the page containing la that `pred(info, ctx)` selects.
  template <typename Pred> void invalidate_page_if(uint64_t la, Pred pred);

  uint16_t tag_ = 0;  // first: the fast paths load it with every key
  uint32_t epoch_ = 0;
  TlbContext cur_;
  std::array<std::array<TlbEntry, kTlbSize>, kNumMmuIdx> e_{};
  std::array<std::array<TlbEntryInfo, kTlbSize>, kNumMmuIdx> info_{};
  // The large pages (2M, 4M, 1G regions) entries were filled from since the last full flush, as
  // a 256-bit filter: INVLPG looks beyond the 4 KiB slot of its address only when the filter
  // says a large page around the address may be cached.
  static unsigned large_region_bit(uint64_t la, unsigned page_shift) {
    return unsigned((((la >> page_shift) << 6 | page_shift) * 0x9e3779b97f4a7c15ull) >> 56);
  }
  bool large_page_may_map(uint64_t la) const {
    for (unsigned shift : {21u, 22u, 30u}) {
      const unsigned b = large_region_bit(la, shift);
      if (large_regions_[b / 64] >> (b % 64) & 1) return true;
    }
    return false;
  }
  std::array<uint64_t, 4> large_regions_{};
  std::array<TagInfo, kTlbTags> tags_{};
  std::array<uint16_t, kTlbLiveTags> live_{};
  unsigned n_live_ = 0;
  unsigned next_tag_ = 0;
  uint32_t use_clock_ = 0;
};

}  // namespace nestvm::cpu
