// Linear-address translation: 32-bit, PAE and 4-level paging (SDM Vol. 3 §4.3-4.5), with
// permission checks (§4.6), #PF error codes (§4.7) and accessed/dirty updates (§4.8), done
// atomically on guest memory so that several vCPUs sharing page tables see consistent bits.
// Under EPT every paging-structure access is to a guest-physical address that EPT translates
// (SDM Vol. 3 §29.3.3: walk reads, accessed/dirty updates, the PDPTE loads of MOV to CR).
#include <atomic>

#include "arch/paging.h"
#include "cpu/memory.h"

namespace nestvm::cpu {

namespace pte = arch::pte;

namespace {

struct Level {
  uint8_t* host = nullptr;  // nullptr: the entry is not in RAM (reads as all ones)
  uint64_t value = 0;
  uint64_t gpa = 0;  // the entry's (guest-)physical address
  bool wide = true;  // 8-byte entry
};

}  // namespace

// Reads a paging-structure entry at physical address pa.
static bool read_entry(PhysMem& mem, uint64_t pa, bool wide, Level& l) {
  l.wide = wide;
  uint8_t* page = mem.ram_page(pa);
  if (!page) {
    l.host = nullptr;
    l.value = wide ? mem.mmio_read(pa, 8) : mem.mmio_read(pa, 4);
    return true;
  }
  l.host = page + (pa & (kPageSize - 1));
  if (wide) l.value = std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(l.host)).load(std::memory_order_relaxed);
  else l.value = std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(l.host)).load(std::memory_order_relaxed);
  return true;
}

static void set_bits(const Level& l, uint64_t bits) {
  if (!l.host || (l.value & bits) == bits) return;
  if (l.wide) std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(l.host)).fetch_or(bits);
  else std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(l.host)).fetch_or(uint32_t(bits));
}

// SDM §4.4.1: the four PDPTEs are loaded from the 32-byte-aligned table CR3[31:5] points to
// (at `base`, physical); a present PDPTE with a reserved bit set makes the load fail.
static bool read_pdptes(PhysMem& mem, uint64_t base, int maxphyaddr, std::array<uint64_t, 4>& p) {
  const uint64_t rsvd = ~pte::phys_mask(maxphyaddr) & ~0xfffull;
  for (int i = 0; i < 4; ++i) {
    Level l;
    read_entry(mem, base + 8 * i, true, l);
    p[i] = l.value;
    if ((p[i] & pte::kP) && (p[i] & (rsvd | 0x1e6ull))) return false;
  }
  return true;
}

bool Cpu::load_pdptes(uint64_t cr3) {
  std::array<uint64_t, 4> p{};
  if (!read_pdptes(mem_, cr3 & 0xffffffe0ull, model_.maxphyaddr(), p)) return false;
  state.pdpte = p;
  return true;
}

Status Cpu::load_pdptes_checked(uint64_t cr3) {
  uint64_t base = cr3 & 0xffffffe0ull;
  if (ept_active()) {
    // A read through EPT without a linear address; it needs no EPT write permission and sets no
    // EPT dirty flag even with EPT A/D flags enabled (SDM §29.3.3.2, §29.3.5). The 32-byte
    // table lies within one page.
    EptTranslation et;
    const Status st = ept_translate(base, EptAccess::kPdpteLoad, 0, et);
    if (st != Status::kNext) return st;
    base = et.hpa;
  }
  std::array<uint64_t, 4> p{};
  if (!read_pdptes(mem_, base, model_.maxphyaddr(), p)) return fault(arch::Vector::kGP, 0);
  state.pdpte = p;
  return Status::kNext;
}

Status Cpu::walk(uint64_t la, AccessKind kind, MmuIdx idx, Translation& t) {
  using namespace arch;
  const bool user = idx == kMmuUser;
  const bool nxe = state.msr.efer & efer::kNXE;
  const bool smep = state.cr4 & cr4::kSMEP;
  const uint64_t phys = pte::phys_mask(model_.maxphyaddr());
  uint32_t pfec = (kind == AccessKind::kWrite ? pfec::kWrite : 0) | (user ? pfec::kUser : 0);
  if (kind == AccessKind::kExec && (smep || (paging_mode_ != PagingMode::k32Bit && nxe))) pfec |= pfec::kFetch;

  Level levels[4];
  int n = 0;
  uint64_t pa_page = 0, page_offset_mask = 0xfff;
  // A paging-structure entry at (guest-)physical address pa: a read through EPT when it is on.
  const bool ept = ept_active();
  auto load = [&](uint64_t pa, bool wide, Level& l) {
    l.gpa = pa;
    if (ept) {
      EptTranslation et;
      const Status st = ept_translate(pa, EptAccess::kPagingRead, la, et);
      if (st != Status::kNext) return st;
      pa = et.hpa;
    }
    read_entry(mem_, pa, wide, l);
    return Status::kNext;
  };
  t.user = true;
  t.writable = true;
  t.nx = false;

  auto not_present = [&] { return page_fault(la, pfec); };
  auto reserved = [&] { return page_fault(la, pfec | pfec::kPresent | pfec::kReserved); };
  auto accumulate = [&](uint64_t e) {
    t.user &= (e & pte::kUS) != 0;
    t.writable &= (e & pte::kRW) != 0;
    t.nx |= nxe && (e & pte::kXD);
  };

  if (paging_mode_ == PagingMode::k32Bit) {
    // SDM §4.3: 32-bit paging, 4-byte entries, optional 4 MiB pages with PSE (and PSE-36).
    const bool pse = state.cr4 & cr4::kPSE;
    Level& pde = levels[n++];
    if (Status st = load((state.cr3 & 0xfffff000ull) + ((la >> 22) & 0x3ff) * 4, false, pde); st != Status::kNext) return st;
    if (!(pde.value & pte::kP)) return not_present();
    accumulate(pde.value);
    if (pse && (pde.value & pte::kPS)) {
      // Bits 20:13 hold PA[39:32] (PSE-36); bits above MAXPHYADDR-32+13 and bit 21 are reserved.
      const int maxpa = model_.maxphyaddr() > 40 ? 40 : model_.maxphyaddr();
      const uint64_t rsvd = (0x3fe000ull & ~(((1ull << (maxpa - 32)) - 1) << 13)) | (1ull << 21);
      if (pde.value & rsvd) return reserved();
      pa_page = (pde.value & 0xffc00000ull) | (((pde.value >> 13) & 0xff) << 32);
      page_offset_mask = 0x3fffff;
      t.page_shift = 22;
      t.global = (state.cr4 & cr4::kPGE) && (pde.value & pte::kG);
    } else {
      Level& p = levels[n++];
      if (Status st = load((pde.value & 0xfffff000ull) + ((la >> 12) & 0x3ff) * 4, false, p); st != Status::kNext) return st;
      if (!(p.value & pte::kP)) return not_present();
      accumulate(p.value);
      pa_page = p.value & 0xfffff000ull;
      t.global = (state.cr4 & cr4::kPGE) && (p.value & pte::kG);
    }
  } else {
    // PAE (§4.4) and 4-level (§4.5) paging share the 8-byte entry format.
    // Reserved bits: PA bits at or above MAXPHYADDR (up to bit 51 with 4-level paging, 62 with
    // PAE, Tables 4-8 to 4-19), and XD when EFER.NXE = 0.
    const uint64_t xd_rsvd = nxe ? 0 : pte::kXD;
    const uint64_t rsvd_common = paging_mode_ == PagingMode::kPae
        ? ((~phys & 0x7ffffffffffff000ull) | xd_rsvd)
        : ((~phys & 0x000ffffffffff000ull) | xd_rsvd);
    uint64_t table;
    int level;
    if (paging_mode_ == PagingMode::kPae) {
      const uint64_t pdpte = state.pdpte[(la >> 30) & 3];
      if (!(pdpte & pte::kP)) return not_present();
      table = pdpte & phys;
      level = 2;  // next: page directory
    } else {
      table = state.cr3 & phys;
      level = 4;
    }
    for (; level >= 1; --level) {
      const unsigned shift = 12 + 9 * (level - 1);
      Level& l = levels[n++];
      if (Status st = load(table + ((la >> shift) & 0x1ff) * 8, true, l); st != Status::kNext) return st;
      const uint64_t e = l.value;
      if (!(e & pte::kP)) return not_present();
      uint64_t rsvd = rsvd_common;
      const bool large = level <= 3 && level >= 2 && (e & pte::kPS);
      if (level == 4) rsvd |= pte::kPS;  // PML4E bit 7 is reserved
      if (level == 3 && (e & pte::kPS) && !model_.has(Feature::kPdpe1gb)) rsvd |= pte::kPS;
      if (large) rsvd |= ((1ull << shift) - 1) & ~0x1fffull;  // 2M: bits 20:13, 1G: bits 29:13
      if (e & rsvd) return reserved();
      accumulate(e);
      if (level == 1 || large) {
        pa_page = e & phys & ~((1ull << shift) - 1);
        page_offset_mask = (1ull << shift) - 1;
        t.page_shift = uint8_t(shift);
        t.global = (state.cr4 & cr4::kPGE) && (e & pte::kG);
        break;
      }
      table = e & phys;
    }
  }

  // Permission check (§4.6) with the error code of §4.7.
  bool ok;
  const bool smap = state.cr4 & cr4::kSMAP;
  const bool wp = state.cr0 & cr0::kWP;
  switch (kind) {
    case AccessKind::kRead:
      ok = user ? t.user : !(idx == kMmuSupervisor && smap && t.user);
      break;
    case AccessKind::kWrite:
      ok = user ? (t.user && t.writable)
                : !(idx == kMmuSupervisor && smap && t.user) && (t.writable || !wp);
      break;
    default:
      ok = !t.nx && (user ? t.user : !(smep && t.user));
      break;
  }
  if (!ok) return page_fault(la, pfec | pfec::kPresent);

  // Accessed flags on every entry used, dirty on the leaf for writes (§4.8). Under EPT each
  // update is a write to a guest-physical address (§29.3.3.2); with EPT A/D flags enabled the
  // walk's reads were writes already.
  const bool ad_checked = !ept || (vmx_.ctl.eptp & arch::eptp::kAdEnable);
  for (int i = 0; i < n; ++i) {
    const bool leaf = i == n - 1;
    const uint64_t bits = pte::kA | (leaf && kind == AccessKind::kWrite ? pte::kD : 0);
    if ((levels[i].value & bits) == bits) continue;
    if (!ad_checked) {
      EptTranslation et;
      const Status st = ept_translate(levels[i].gpa, EptAccess::kPagingWrite, la, et);
      if (st != Status::kNext) return st;
    }
    set_bits(levels[i], bits);
  }
  t.dirty = kind == AccessKind::kWrite || (levels[n - 1].value & pte::kD);
  t.pa = pa_page | (la & page_offset_mask);
  return Status::kNext;
}

}  // namespace nestvm::cpu
