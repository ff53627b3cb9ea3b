// The core's software TLB: linear page -> host pointer, per access kind, for the fast path of
// every memory access. It caches complete translations (paging, and EPT under VMX), tagged as
// hardware tags them: by PCID here, by VPID/EPTP through the VMX layer, which flushes it when the
// architecture says the processor's TLB is flushed.
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

struct TlbEntry {
  // Keys: (linear page | PCID) for which the access kind may use the fast path.
  uint64_t tag_read = kTlbInvalid;
  std::atomic<uint64_t> tag_write{kTlbInvalid};  // cleared by other vCPUs when the page becomes code
  uint64_t tag_exec = kTlbInvalid;
  uintptr_t addend = 0;  // host pointer = linear address + addend
};

struct TlbEntryInfo {
  uint64_t pa_page = 0;   // physical (host-physical under EPT) page
  PageMeta* meta = nullptr;
  uint16_t pcid = 0;
  bool global = false;
  uint8_t page_shift = 12;  // size of the page the entry is a 4 KiB piece of
};

class Tlb {
 public:
  static unsigned index(uint64_t la) { return (la >> 12) & (kTlbSize - 1); }

  TlbEntry& entry(MmuIdx idx, uint64_t la) { return e_[idx][index(la)]; }
  TlbEntryInfo& info(MmuIdx idx, uint64_t la) { return info_[idx][index(la)]; }

  void flush_all();
  // Flushes entries that are not global (MOV to CR3 without PCID, SDM §4.10.4.1).
  void flush_nonglobal();
  // Flushes the non-global entries of one PCID (INVPCID single-context, MOV CR3 with PCIDE).
  void flush_pcid(uint16_t pcid);
  // Flushes the translations of one linear page for one PCID plus global ones (INVLPG,
  // INVPCID individual-address).
  void flush_page(uint64_t la, uint16_t pcid, bool all_pcids = false);
  // Flushes every piece of the page, of whatever size, that maps la (INVLPG, INVPCID type 0):
  // large pages are held as 4 KiB pieces, each remembering the size it came from.
  void flush_page_any_size(uint64_t la, uint16_t pcid);
  // Called when an entry is filled from a page larger than 4 KiB.
  void note_large_fill() { ++large_fills_; }
  // Re-keys global entries to the PCID being switched to, so they keep matching.
  void retag_globals(uint16_t pcid);
  // Drops fast write entries that point at a physical page (the page now holds code).
  void drop_writes_to(uint64_t pa_page);

  // Bumped by every flush that can change an instruction fetch's translation, and by the Cpu
  // on mode changes: links between decoded blocks are valid only within one epoch.
  uint32_t epoch() const { return epoch_; }
  void bump_epoch() { ++epoch_; }

 private:
  void invalidate(TlbEntry& e) {
    e.tag_read = kTlbInvalid;
    e.tag_write.store(kTlbInvalid, std::memory_order_relaxed);
    e.tag_exec = kTlbInvalid;
  }
  std::array<std::array<TlbEntry, kTlbSize>, kNumMmuIdx> e_{};
  std::array<std::array<TlbEntryInfo, kTlbSize>, kNumMmuIdx> info_{};
  uint32_t epoch_ = 0;
  uint32_t large_fills_ = 0;  // entries from large pages filled since the last full flush
};

}  // namespace nestvm::cpu
