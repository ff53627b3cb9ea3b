#include "hv/mmu/guest_walk.h"

#include <atomic>

#include "arch/exception.h"
#include "arch/paging.h"
#include "hv/mmu/mmu_role.h"

namespace nestvm::hv {

namespace pte = arch::pte;
namespace pfec = arch::pfec;
using cpu::PagingMode;

GuestAccess GuestAccess::from_error_code(uint32_t code, bool smap_exempt) {
  GuestAccess a;
  a.write = code & pfec::kWrite;
  a.user = code & pfec::kUser;
  a.fetch = code & pfec::kFetch;
  a.smap_exempt = smap_exempt;
  return a;
}

namespace {

// A guest entry's location: a host pointer when its page is backed RAM.
uint8_t* entry_host(GuestMemory& mem, uint64_t gpa) {
  const uint64_t h = mem.backing(gpa, false);
  return h ? mem.host().frame(h) + (gpa & 0xfff) : nullptr;
}

uint64_t load_entry(GuestMemory& mem, uint64_t gpa, bool wide) {
  uint8_t* p = entry_host(mem, gpa);
  // RAM never written reads as zero (and is not backed for it); elsewhere the bus floats high.
  if (!p) return mem.is_ram(gpa) ? 0 : (wide ? ~0ull : 0xffffffffull);
  if (wide) return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(p)).load(std::memory_order_acquire);
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(p)).load(std::memory_order_acquire);
}

// Sets `bits` in the entry if it still holds `old` (SDM §4.8: the processor's updates are
// locked operations). False when L1 changed the entry since the walk read it.
bool set_entry_bits(GuestMemory& mem, uint64_t gpa, bool wide, uint64_t old, uint64_t bits) {
  uint8_t* p = entry_host(mem, gpa);
  if (!p) return true;  // not RAM: nothing to update (and nothing present there to change)
  if (wide) {
    uint64_t expected = old;
    return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(p)).compare_exchange_strong(expected, old | bits);
  }
  uint32_t expected = uint32_t(old);
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(p))
      .compare_exchange_strong(expected, uint32_t(old | bits));
}

uint8_t entry_access(uint64_t e, bool nxe) {
  return uint8_t(((e & pte::kRW) ? acc::kWrite : 0) | ((e & pte::kUS) ? acc::kUser : 0) |
                 ((nxe && (e & pte::kXD)) ? 0 : acc::kExec));
}

// SDM §4.6: whether the access is allowed by the rights of the translation.
bool permitted(const GuestPagingState& s, const GuestAccess& a, uint8_t rights) {
  const bool u = rights & acc::kUser, w = rights & acc::kWrite, x = rights & acc::kExec;
  if (a.user) return u && (!a.write || w) && (!a.fetch || x);
  if (a.fetch) return x && !(s.smep && u);
  // Supervisor data access: SMAP forbids user pages unless exempt (§4.6.1); writes to
  // read-only pages need CR0.WP = 0.
  if (s.smap && u && !a.smap_exempt) return false;
  return !a.write || w || !s.wp;
}

// One walk. Returns false when an accessed/dirty update lost a race with L1 (walk again).
bool walk_once(GuestMemory& mem, const GuestPagingState& s, uint64_t la, const GuestAccess& a, bool set_ad,
               GuestWalk& w) {
  const uint64_t phys = pte::phys_mask(s.maxphyaddr);
  uint32_t code = (a.write ? pfec::kWrite : 0) | (a.user ? pfec::kUser : 0);
  if (a.fetch && (s.smep || (s.mode != PagingMode::k32Bit && s.nxe))) code |= pfec::kFetch;
  auto fail = [&](uint32_t extra) {
    w.fault = true;
    w.error_code = code | extra;
    return true;
  };

  uint8_t rights = acc::kAll;
  uint64_t page_base = 0, offset_mask = 0xfff;
  int level;
  const bool wide = s.mode != PagingMode::k32Bit;
  if (s.mode == PagingMode::k32Bit) {
    // SDM §4.3: a page directory of 1024 4-byte entries at CR3, 4 MiB pages with CR4.PSE.
    la &= 0xffffffffull;
    w.top_level = 2;
    uint64_t table = s.cr3 & 0xfffff000ull;
    for (level = 2;; --level) {
      const unsigned shift = level == 2 ? 22 : 12;
      const uint64_t gpa = table + ((la >> shift) & 0x3ff) * 4;
      const uint64_t e = load_entry(mem, gpa, false);
      w.pte[level] = e;
      w.pte_gpa[level] = gpa;
      w.table_gfn[level] = table >> 12;
      if (!(e & pte::kP)) return fail(0);
      rights &= entry_access(e, false);
      w.pt_access[level] = rights;
      if (level == 2 && s.pse && (e & pte::kPS)) {
        // PSE-36: bits 20:13 hold PA[39:32]; bits above MAXPHYADDR (at most 40) and bit 21 are
        // reserved.
        const int maxpa = s.maxphyaddr > 40 ? 40 : s.maxphyaddr;
        const uint64_t rsvd = (0x3fe000ull & ~(((1ull << (maxpa - 32)) - 1) << 13)) | (1ull << 21);
        if (e & rsvd) return fail(pfec::kPresent | pfec::kReserved);
        page_base = (e & 0xffc00000ull) | (((e >> 13) & 0xff) << 32);
        offset_mask = 0x3fffff;
        break;
      }
      if (level == 1) {
        page_base = e & 0xfffff000ull;
        break;
      }
      table = e & 0xfffff000ull;
    }
  } else {
    // PAE (§4.4) and 4-level (§4.5) paging: 8-byte entries. Reserved: address bits at or above
    // MAXPHYADDR (to bit 51 for 4-level, 62 for PAE), XD without EFER.NXE, PS in a PML4E, PS in
    // a PDPTE without 1-GByte pages, and the low address bits of a large page.
    const uint64_t xd_rsvd = s.nxe ? 0 : pte::kXD;
    const uint64_t rsvd_common = s.mode == PagingMode::kPae ? ((~phys & 0x7ffffffffffff000ull) | xd_rsvd)
                                                            : ((~phys & 0x000ffffffffff000ull) | xd_rsvd);
    uint64_t table;
    if (s.mode == PagingMode::kPae) {
      // The PDPTE registers, checked for reserved bits when they were loaded (§4.4.1).
      la &= 0xffffffffull;
      w.top_level = 3;
      const unsigned i = unsigned(la >> 30) & 3;
      const uint64_t pdpte = s.pdptes[i];
      w.pte[3] = pdpte;
      w.pte_gpa[3] = (s.cr3 & 0xffffffe0ull) + 8 * i;
      w.table_gfn[3] = (s.cr3 & 0xffffffe0ull) >> 12;
      w.pt_access[3] = acc::kAll;
      if (!(pdpte & pte::kP)) return fail(0);
      table = pdpte & phys;
      level = 2;
    } else {
      w.top_level = 4;
      table = s.cr3 & phys;
      level = 4;
    }
    for (;; --level) {
      const unsigned shift = 12 + 9 * (level - 1);
      const uint64_t gpa = table + ((la >> shift) & 0x1ff) * 8;
      const uint64_t e = load_entry(mem, gpa, true);
      w.pte[level] = e;
      w.pte_gpa[level] = gpa;
      w.table_gfn[level] = table >> 12;
      if (!(e & pte::kP)) return fail(0);
      uint64_t rsvd = rsvd_common;
      const bool large = (level == 2 || level == 3) && (e & pte::kPS);
      if (level == 4) rsvd |= pte::kPS;
      if (level == 3 && (e & pte::kPS) && !s.pdpe1gb) rsvd |= pte::kPS;
      if (large) rsvd |= ((1ull << shift) - 1) & ~0x1fffull;
      if (e & rsvd) return fail(pfec::kPresent | pfec::kReserved);
      rights &= entry_access(e, s.nxe);
      w.pt_access[level] = rights;
      if (level == 1 || large) {
        page_base = e & phys & ~((1ull << shift) - 1);
        offset_mask = (1ull << shift) - 1;
        break;
      }
      table = e & phys;
    }
  }
  w.level = level;
  if (!permitted(s, a, rights)) return fail(pfec::kPresent);

  // §4.8: A in every entry used (not PAE's PDPTE registers), D in the leaf for a write.
  const int first = s.mode == PagingMode::kPae ? 2 : w.top_level;
  for (int l = first; l >= level; --l) {
    const uint64_t bits = pte::kA | (l == level && a.write ? pte::kD : 0);
    if ((w.pte[l] & bits) == bits) continue;
    if (set_ad) {
      if (!set_entry_bits(mem, w.pte_gpa[l], wide, w.pte[l], bits)) return false;
      w.pte[l] |= bits;
    }
  }
  w.pte_access = rights;
  w.gpa = page_base | (la & offset_mask);
  w.gfn = w.gpa >> 12;
  w.dirty = w.pte[level] & pte::kD;
  w.global = s.pge && (w.pte[level] & pte::kG);
  return true;
}

}  // namespace

uint64_t read_guest_pte(GuestMemory& mem, uint64_t gpa, bool wide) { return load_entry(mem, gpa, wide); }

GuestWalk walk_guest(GuestMemory& mem, const GuestPagingState& s, uint64_t la, const GuestAccess& a,
                     bool set_accessed_dirty) {
  if (s.mode == PagingMode::kNone) {
    GuestWalk w;
    w.gpa = la & 0xffffffffull;  // protected mode without paging: linear is physical (32 bits)
    w.gfn = w.gpa >> 12;
    w.pte_access = acc::kAll;
    w.dirty = true;
    return w;
  }
  for (;;) {
    GuestWalk w;
    if (walk_once(mem, s, la, a, set_accessed_dirty, w)) return w;
  }
}

}  // namespace nestvm::hv
