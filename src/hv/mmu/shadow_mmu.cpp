#include "hv/mmu/shadow_mmu.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstring>

#include "arch/paging.h"

namespace nestvm::hv {

namespace pte = arch::pte;
using cpu::PagingMode;

namespace {
constexpr uint64_t kAddrMask = 0x000ffffffffff000ull;  // bits 51:12 of a PAE-format entry
// A link to a lower shadow table: every right allowed, the leaf decides (KVM's link_shadow_page).
constexpr uint64_t kLinkBits = pte::kP | pte::kRW | pte::kUS | pte::kA;

// Entries change while other vCPUs' silicon walks the tables: whole 8-byte stores.
void store(uint64_t* e, uint64_t v) { std::atomic_ref<uint64_t>(*e).store(v, std::memory_order_release); }
unsigned index_at(uint64_t la, int level) { return unsigned(la >> (12 + 9 * (level - 1))) & 0x1ff; }
}  // namespace

ShadowMmu::ShadowMmu(HostMemory& host, GuestMemory& mem, MmuStats& stats, unsigned vcpus,
                     std::function<void()> flush_remote_tlbs, std::function<void()> reload_remote_roots)
    : host_(host),
      mem_(mem),
      stats_(stats),
      flush_remote_tlbs_(std::move(flush_remote_tlbs)),
      reload_remote_roots_(std::move(reload_remote_roots)),
      ctx_(vcpus) {
  for (Context& c : ctx_) {
    // In PAE paging CR3 holds a 32-bit address (SDM §4.4.1): these come first from the
    // allocator, far below 4 GiB.
    c.pae_root_hpa = host_.alloc_page();
    assert(c.pae_root_hpa && c.pae_root_hpa < (1ull << 32));
    c.pae_root = reinterpret_cast<uint64_t*>(host_.frame(c.pae_root_hpa));
  }
}

ShadowMmu::~ShadowMmu() {
  for (auto& [frame, sp] : pages_) host_.free_page(sp->table_hpa);
  for (Context& c : ctx_) host_.free_page(c.pae_root_hpa);
}

ShadowPage* ShadowMmu::page_of_table(uint64_t table_hpa) {
  auto it = pages_.find(table_hpa >> 12);
  return it == pages_.end() ? nullptr : it->second.get();
}

// KVM's kvm_mmu_get_shadow_page: the page for (gfn, role), made if there is none.
ShadowPage* ShadowMmu::get_page(uint64_t gfn, MmuPageRole role, bool& created) {
  created = false;
  auto [b, e] = hash_.equal_range(gfn);
  for (auto it = b; it != e; ++it)
    if (it->second->role == role) return it->second;
  const uint64_t t = host_.alloc_page();
  if (!t) return nullptr;
  auto sp = std::make_unique<ShadowPage>();
  sp->gfn = gfn;
  sp->role = role;
  sp->table_hpa = t;
  sp->spt = reinterpret_cast<uint64_t*>(host_.frame(t));
  if (!role.direct) sp->gfns = std::make_unique<uint64_t[]>(512);
  ShadowPage* p = sp.get();
  lru_.push_front(p);
  p->lru = lru_.begin();
  hash_.emplace(gfn, p);
  pages_.emplace(t >> 12, std::move(sp));
  if (!role.direct) account_shadowed(gfn);
  created = true;
  ++stats_.shadow_pages_created;
  stats_.shadow_pages = pages_.size();
  return p;
}

// The first shadow of a guest page table write-protects the frame: every leaf mapping it loses
// R/W (KVM's account_shadowed and kvm_mmu_slot_gfn_write_protect). Other vCPUs may hold writable
// translations, so the caller flushes before it relies on the protection.
void ShadowMmu::account_shadowed(uint64_t gfn) {
  if (write_track_[gfn]++ != 0) return;
  rmap_.for_each(gfn, [this](uint64_t spte) {
    uint64_t* e = entry_ptr(spte);
    if (*e & pte::kRW) {
      store(e, *e & ~(pte::kRW | pte::kD));
      need_flush_ = true;
    }
  });
}

void ShadowMmu::unaccount_shadowed(uint64_t gfn) {
  auto it = write_track_.find(gfn);
  assert(it != write_track_.end());
  if (--it->second == 0) write_track_.erase(it);
}

uint64_t ShadowMmu::leaf_gfn(const ShadowPage& sp, unsigned i) const {
  return sp.role.direct ? sp.gfn + i : sp.gfns[i];
}

// KVM's mmu_page_zap_pte: clears entry i, forgetting its reverse-map or parent link.
bool ShadowMmu::drop_spte(ShadowPage& sp, unsigned i) {
  const uint64_t v = sp.spt[i];
  if (!(v & pte::kP)) return false;
  const uint64_t spte_hpa = sp.table_hpa + 8 * i;
  if (sp.role.level == 1) {
    const bool ok = rmap_.remove(leaf_gfn(sp, i), spte_hpa);
    assert(ok);
    (void)ok;
    --leaves_;
  } else {
    ShadowPage* child = page_of_table(v & kAddrMask);
    assert(child);
    auto& pp = child->parent_ptes;
    auto it = std::find(pp.begin(), pp.end(), spte_hpa);
    assert(it != pp.end());
    *it = pp.back();
    pp.pop_back();
  }
  store(&sp.spt[i], 0);
  need_flush_ = true;
  return true;
}

// KVM's kvm_mmu_prepare_zap_page: empties the page and unlinks it; it is freed at commit_zap,
// after the flush, or when the last vCPU using it as a root lets go.
void ShadowMmu::zap_page(ShadowPage* sp) {
  for (unsigned i = 0; i < 512; ++i) drop_spte(*sp, i);
  for (uint64_t p : sp->parent_ptes) store(entry_ptr(p), 0);
  if (!sp->parent_ptes.empty()) need_flush_ = true;
  sp->parent_ptes.clear();
  auto [b, e] = hash_.equal_range(sp->gfn);
  for (auto it = b; it != e; ++it) {
    if (it->second == sp) {
      hash_.erase(it);
      break;
    }
  }
  if (!sp->role.direct) unaccount_shadowed(sp->gfn);
  ++stats_.shadow_pages_zapped;
  if (sp->root_count) {
    sp->role.invalid = 1;
    need_reload_ = true;
  } else {
    invalid_list_.push_back(sp);
  }
}

void ShadowMmu::free_page(ShadowPage* sp) {
  lru_.erase(sp->lru);
  host_.free_page(sp->table_hpa);
  pages_.erase(sp->table_hpa >> 12);
}

// KVM's kvm_mmu_commit_zap_page: vCPUs drop what they cached before the tables are reused.
void ShadowMmu::commit_zap() {
  if (need_reload_) {
    need_reload_ = false;
    if (reload_remote_roots_) reload_remote_roots_();
  }
  if (need_flush_ || !invalid_list_.empty()) {
    need_flush_ = false;
    ++stats_.remote_tlb_flushes;
    if (flush_remote_tlbs_) flush_remote_tlbs_();
  }
  for (ShadowPage* sp : invalid_list_) free_page(sp);
  invalid_list_.clear();
  stats_.shadow_pages = pages_.size();
  stats_.shadow_mapped_pages = leaves_;
}

// KVM's make_mmu_pages_available: past the limit (2% of guest RAM, as KVM's default), the oldest
// pages that are not roots go.
void ShadowMmu::make_pages_available() {
  const uint64_t limit = std::max<uint64_t>(64, mem_.ram_size() / 4096 / 50);
  while (pages_.size() >= limit) {
    ShadowPage* victim = nullptr;
    for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
      if (!(*it)->root_count && !(*it)->role.invalid) {
        victim = *it;
        break;
      }
    }
    if (!victim) break;
    zap_page(victim);
    commit_zap();
  }
}

// ---- roots -------------------------------------------------------------------------------------

bool ShadowMmu::set_guest_paging(unsigned vcpu, const GuestPagingState& s) {
  std::lock_guard lock(mu_);
  Context& c = ctx_[vcpu];
  if (c.guest == s) return false;
  c.guest = s;
  MmuPageRole r;
  if (s.mode != PagingMode::kNone) {
    r.has_4_byte_gpte = s.mode == PagingMode::k32Bit;
    r.cr4_pse = s.mode == PagingMode::k32Bit && s.pse;
    r.efer_nx = s.nxe;
    r.cr0_wp = s.wp;
    r.smep_andnot_wp = s.smep && !s.wp;
    r.smap_andnot_wp = s.smap && !s.wp;
  }
  c.base_role = r;
  release_roots(c);
  commit_zap();
  return true;
}

void ShadowMmu::release_roots(Context& c) {
  auto put = [this](ShadowPage*& sp) {
    if (!sp) return;
    if (--sp->root_count == 0 && sp->role.invalid) invalid_list_.push_back(sp);
    sp = nullptr;
  };
  put(c.root);
  for (unsigned i = 0; i < 4; ++i) {
    put(c.pae_roots[i]);
    store(&c.pae_root[i], 0);
  }
  c.loaded = false;
}

bool ShadowMmu::roots_valid(const Context& c) const {
  if (!c.loaded) return false;
  if (c.root && c.root->role.invalid) return false;
  for (const ShadowPage* sp : c.pae_roots)
    if (sp && sp->role.invalid) return false;
  return true;
}

// KVM's mmu_alloc_shadow_roots: a 4-level root for 4-level paging; otherwise four level-2
// roots under the PAE root: the four quadrants of a 32-bit page directory, the page directories
// of the present PDPTE registers, or direct maps of the four GiB of a nonpaging guest.
bool ShadowMmu::load_roots(Context& c) {
  release_roots(c);
  const GuestPagingState& g = c.guest;
  const uint64_t phys = pte::phys_mask(g.maxphyaddr);
  MmuPageRole role = c.base_role;
  bool created;
  if (g.mode == PagingMode::k4Level) {
    role.level = 4;
    ShadowPage* sp = get_page((g.cr3 & phys) >> 12, role, created);
    if (!sp) return false;
    ++sp->root_count;
    c.root = sp;
  } else {
    role.level = 2;
    for (unsigned i = 0; i < 4; ++i) {
      MmuPageRole r = role;
      uint64_t gfn;
      if (g.mode == PagingMode::kNone) {
        r.direct = 1;
        gfn = uint64_t(i) << 18;
      } else if (g.mode == PagingMode::k32Bit) {
        r.quadrant = i;
        gfn = (g.cr3 & 0xfffff000ull) >> 12;
      } else {
        if (!(g.pdptes[i] & pte::kP)) continue;  // accesses there fault as L1's (not present)
        gfn = (g.pdptes[i] & phys) >> 12;
      }
      ShadowPage* sp = get_page(gfn, r, created);
      if (!sp) return false;
      ++sp->root_count;
      c.pae_roots[i] = sp;
      store(&c.pae_root[i], sp->table_hpa | pte::kP);
    }
  }
  c.loaded = true;
  return true;
}

bool ShadowMmu::root_loaded(unsigned vcpu) {
  std::lock_guard lock(mu_);
  return roots_valid(ctx_[vcpu]);
}

uint64_t ShadowMmu::load_root(unsigned vcpu) {
  std::lock_guard lock(mu_);
  Context& c = ctx_[vcpu];
  if (!roots_valid(c)) {
    make_pages_available();
    const bool ok = load_roots(c);
    commit_zap();  // write-protection of the root tables
    if (!ok) return 0;
  }
  return c.guest.mode == PagingMode::k4Level ? c.root->table_hpa : c.pae_root_hpa;
}

// ---- faults ------------------------------------------------------------------------------------

// The leaf for a translation (KVM's make_spte with FNAME(gpte_access)): L1's rights, the host
// frame, L1's caching attributes and global bit. Writable only once L1's D is set, so that the
// first write faults and sets D as the processor would; never while the frame is a guest page
// table. With CR0.WP = 0 a supervisor write to a read-only page makes it a supervisor-only
// writable page (and with SMEP not executable), flipping back on a user access (KVM's mmu.rst,
// "cr0.wp=0").
uint64_t ShadowMmu::make_leaf(const Context& c, const GuestWalk& w, uint64_t hpa, const GuestAccess& a,
                              bool tracked) const {
  const bool paging = c.guest.mode != PagingMode::kNone;
  uint8_t rights = paging ? w.pte_access : acc::kAll;
  if (paging && a.write && !a.user && !c.guest.wp && !(rights & acc::kWrite)) {
    rights = uint8_t((rights | acc::kWrite) & ~acc::kUser);
    if (c.guest.smep) rights &= uint8_t(~acc::kExec);
  }
  uint64_t spte = hpa | pte::kP | pte::kA;
  if (rights & acc::kUser) spte |= pte::kUS;
  if (!(rights & acc::kExec)) spte |= pte::kXD;
  if ((rights & acc::kWrite) && !tracked && (!paging || w.dirty)) spte |= pte::kRW | pte::kD;
  if (paging) {
    const uint64_t g = w.pte[w.level];
    spte |= g & (pte::kPWT | pte::kPCD);
    if (g & (w.level == 1 ? pte::kPAT4K : pte::kPATLarge)) spte |= pte::kPAT4K;
    if (w.global) spte |= pte::kG;
  }
  return spte;
}

// KVM's FNAME(fetch): from the root down to the 4 KiB leaf for la, making the shadow pages the
// path lacks. Levels where L1 has a table get indirect pages for that table; below a large page
// of L1 (or with paging off) direct pages map its frames.
ShadowMmu::Fault ShadowMmu::fetch(Context& c, uint64_t la, const GuestWalk& w, uint64_t hpa, const GuestAccess& a) {
  ShadowPage* sp = c.guest.mode == PagingMode::k4Level ? c.root : c.pae_roots[(la >> 30) & 3];
  if (!sp) return {Fault::Kind::kRetry};
  const bool direct_map = c.guest.mode == PagingMode::kNone;
  std::array<ShadowPage*, 5> path{};
  std::array<bool, 5> fresh{};
  int level = sp->role.level;
  path[level] = sp;
  for (; level > 1; --level) {
    sp->write_flooding = 0;
    const unsigned idx = index_at(la, level);
    const uint64_t e = sp->spt[idx];
    ShadowPage* child;
    if (e & pte::kP) {
      child = page_of_table(e & kAddrMask);
      assert(child);
    } else {
      const int cl = level - 1;
      MmuPageRole role = c.base_role;
      role.level = cl;
      uint64_t gfn;
      if (!direct_map && cl >= w.level) {
        role.access = w.pt_access[level];
        role.quadrant = role.has_4_byte_gpte ? quadrant_of(la, cl) : 0;
        gfn = w.table_gfn[cl];
      } else {
        role.direct = 1;
        role.has_4_byte_gpte = 0;
        role.cr4_pse = 0;
        role.access = direct_map ? acc::kAll : w.pte_access;
        gfn = w.gfn & ~((1ull << (9 * cl)) - 1);
      }
      bool created;
      child = get_page(gfn, role, created);
      if (!child) return {Fault::Kind::kOutOfMemory};
      fresh[cl] = created && !role.direct;
      store(&sp->spt[idx], child->table_hpa | kLinkBits);
      child->parent_ptes.push_back(sp->table_hpa + 8 * idx);
    }
    sp = child;
    path[level - 1] = sp;
  }
  sp->write_flooding = 0;

  // Guest tables write-protected just now were read before the protection held: once every
  // vCPU has dropped its writable translations, check that L1 did not change them meanwhile
  // (KVM's FNAME(gpte_changed)).
  if (need_flush_) {
    need_flush_ = false;
    ++stats_.remote_tlb_flushes;
    if (flush_remote_tlbs_) flush_remote_tlbs_();
  }
  bool changed = false;
  for (int l = 1; l <= 4; ++l) {
    if (!fresh[l]) continue;
    // The guest entry at level l + 1 led to this table; its own entries were read at level l.
    if (read_guest_pte(mem_, w.pte_gpa[l], c.guest.mode != PagingMode::k32Bit) != w.pte[l]) {
      drop_spte(*path[l], index_at(la, l));
      changed = true;
    }
  }
  if (changed) return {Fault::Kind::kRetry};

  const unsigned idx = index_at(la, 1);
  const bool tracked = write_track_.count(w.gfn);
  const uint64_t leaf = make_leaf(c, w, hpa, a, tracked);
  const uint64_t old = sp->spt[idx];
  Fault f;
  if (old & pte::kP) {
    if (old == leaf) return {Fault::Kind::kSpurious};
    if (leaf_gfn(*sp, idx) != w.gfn) {
      drop_spte(*sp, idx);  // cannot happen while the guest table is protected; stay exact anyway
    } else {
      f.flush_address = true;
    }
  }
  if (!(sp->spt[idx] & pte::kP)) {
    if (!sp->role.direct) sp->gfns[idx] = w.gfn;
    rmap_.add(w.gfn, sp->table_hpa + 8 * idx);
    ++leaves_;
  }
  store(&sp->spt[idx], leaf);
  ++stats_.shadow_faults_fixed;
  // The leaf's own frame became a guest page table on the way (a table mapping itself).
  if (a.write && tracked) {
    f.kind = Fault::Kind::kEmulateWrite;
    f.gfn = w.gfn;
  }
  return f;
}

ShadowMmu::Fault ShadowMmu::page_fault(unsigned vcpu, uint64_t la, uint32_t error_code, bool smap_exempt) {
  std::lock_guard lock(mu_);
  ++stats_.shadow_page_faults;
  Context& c = ctx_[vcpu];
  if (!roots_valid(c)) return {Fault::Kind::kRetry};
  make_pages_available();
  const GuestAccess a = GuestAccess::from_error_code(error_code, smap_exempt);
  const GuestWalk w = walk_guest(mem_, c.guest, la, a);
  if (w.fault) {
    ++stats_.guest_page_faults;
    return {Fault::Kind::kInject, w.error_code};
  }
  if (!mem_.is_ram(w.gpa)) {
    ++stats_.mmio_page_faults;
    return {Fault::Kind::kMmio};
  }
  const uint64_t hpa = mem_.backing(w.gpa);
  if (!hpa) return {Fault::Kind::kOutOfMemory};
  Fault f;
  if (a.write && write_track_.count(w.gfn)) {
    f.kind = Fault::Kind::kEmulateWrite;
    f.gfn = w.gfn;
  } else {
    f = fetch(c, la, w, hpa, a);
    commit_zap();
    if (f.kind != Fault::Kind::kEmulateWrite) return f;
  }
  ++stats_.write_protect_faults;
  // A write near the end of the page may run into the next one (the emulator does both).
  if ((la & 0xfff) > 0xf00) {
    const uint64_t next = (la | 0xfff) + 1;
    const GuestWalk n = walk_guest(mem_, c.guest, next, a, false);
    if (!n.fault && n.gfn != f.gfn && write_track_.count(n.gfn)) f.next_gfn = n.gfn;
  }
  return f;
}

// ---- emulated writes to guest page tables ------------------------------------------------------

ShadowMmu::PageSnapshot ShadowMmu::snapshot(uint64_t gfn, uint64_t next_gfn) {
  PageSnapshot s;
  s.gfn[0] = gfn;
  s.gfn[1] = next_gfn;
  s.bytes = std::make_unique<uint8_t[]>(2 * 4096);
  for (int k = 0; k < 2; ++k)
    if (s.gfn[k] != ~0ull && !mem_.read(s.gfn[k] << 12, s.bytes.get() + 4096 * k, 4096)) s.gfn[k] = ~0ull;
  return s;
}

// KVM's kvm_mmu_pte_write: for every guest entry that changed, the shadow entries computed from
// it go (a link takes the lower pages out of this path; a leaf is rebuilt at the next fault).
// A shadow page written again and again without being used is probably no page table any more
// and goes whole (KVM's detect_write_flooding), ending the write-protection.
void ShadowMmu::pte_write(const PageSnapshot& before) {
  std::lock_guard lock(mu_);
  uint8_t now[4096];
  for (int k = 0; k < 2; ++k) {
    const uint64_t gfn = before.gfn[k];
    if (gfn == ~0ull || !mem_.read(gfn << 12, now, sizeof now)) continue;
    const uint8_t* old = before.bytes.get() + 4096 * k;
    if (std::memcmp(old, now, sizeof now) == 0) continue;
    std::vector<ShadowPage*> sps;
    auto [b, e] = hash_.equal_range(gfn);
    for (auto it = b; it != e; ++it)
      if (!it->second->role.direct) sps.push_back(it->second);
    for (ShadowPage* sp : sps) {
      if (++sp->write_flooding >= 3) {
        zap_page(sp);
        continue;
      }
      const unsigned width = sp->role.has_4_byte_gpte ? 4 : 8;
      for (unsigned off = 0; off < 4096; off += width) {
        if (std::memcmp(old + off, now + off, width) == 0) continue;
        const unsigned g = off / width;  // the guest entry's index
        unsigned n = 0;
        if (width == 8) {
          n += drop_spte(*sp, g);
        } else if (sp->role.level == 1) {
          if (g / 512 == sp->role.quadrant) n += drop_spte(*sp, g % 512);
        } else if (g / 256 == sp->role.quadrant) {
          // A 4 MiB guest PDE is two shadow PDEs of 2 MiB.
          n += drop_spte(*sp, 2 * (g % 256));
          n += drop_spte(*sp, 2 * (g % 256) + 1);
        }
        stats_.pte_writes_zapped += n;
      }
    }
  }
  commit_zap();
}

// ---- whole-MMU operations ----------------------------------------------------------------------

void ShadowMmu::zap_all() {
  std::lock_guard lock(mu_);
  std::vector<ShadowPage*> all;
  for (auto& [frame, sp] : pages_)
    if (!sp->role.invalid) all.push_back(sp.get());
  for (ShadowPage* sp : all) zap_page(sp);
  commit_zap();
}

void ShadowMmu::unprotect(uint64_t gfn) {
  std::lock_guard lock(mu_);
  std::vector<ShadowPage*> sps;
  auto [b, e] = hash_.equal_range(gfn);
  for (auto it = b; it != e; ++it)
    if (!it->second->role.direct) sps.push_back(it->second);
  for (ShadowPage* sp : sps) zap_page(sp);
  commit_zap();
}

bool ShadowMmu::is_write_tracked(uint64_t gfn) {
  std::lock_guard lock(mu_);
  return write_track_.count(gfn) != 0;
}

uint64_t ShadowMmu::page_count() {
  std::lock_guard lock(mu_);
  return pages_.size();
}

bool ShadowMmu::audit(std::string* why) {
  std::lock_guard lock(mu_);
  auto fail = [why](std::string m) {
    if (why) *why = std::move(m);
    return false;
  };
  uint64_t leaves = 0;
  std::unordered_map<uint64_t, unsigned> shadowed;
  size_t hashed = 0;
  for (auto& [frame, owned] : pages_) {
    ShadowPage* sp = owned.get();
    if (sp->role.invalid) {
      if (!sp->root_count) return fail("an invalid page is not a root");
      for (unsigned i = 0; i < 512; ++i)
        if (sp->spt[i] & pte::kP) return fail("an invalid page still has entries");
      continue;
    }
    ++hashed;
    if (!sp->role.direct) ++shadowed[sp->gfn];
    for (unsigned i = 0; i < 512; ++i) {
      const uint64_t e = sp->spt[i];
      if (!(e & pte::kP)) continue;
      const uint64_t spte_hpa = sp->table_hpa + 8 * i;
      if (sp->role.level == 1) {
        ++leaves;
        const uint64_t gfn = leaf_gfn(*sp, i);
        if (!rmap_.contains(gfn, spte_hpa)) return fail("a present leaf is missing from the reverse map");
        if ((e & kAddrMask) != mem_.backing(gfn << 12, false)) return fail("a leaf maps another frame than its gfn's");
        if ((e & pte::kRW) && write_track_.count(gfn)) return fail("a guest page table is mapped writable");
      } else {
        ShadowPage* child = page_of_table(e & kAddrMask);
        if (!child) return fail("a link to a table that is no shadow page");
        if (child->role.invalid) return fail("a link to an invalid page");
        if (child->role.level != sp->role.level - 1) return fail("a link skips a level");
        if (std::find(child->parent_ptes.begin(), child->parent_ptes.end(), spte_hpa) == child->parent_ptes.end())
          return fail("a link missing from its child's parents");
      }
    }
    for (uint64_t p : sp->parent_ptes) {
      const uint64_t e = *entry_ptr(p);
      if (!(e & pte::kP) || (e & kAddrMask) != sp->table_hpa) return fail("a parent entry does not link here");
    }
  }
  if (hashed != hash_.size()) return fail("the hash and the valid pages differ");
  if (leaves != rmap_.size() || leaves != leaves_) return fail("the reverse map records entries that are no leaves");
  if (shadowed != std::unordered_map<uint64_t, unsigned>(write_track_.begin(), write_track_.end()))
    return fail("write-tracking counts differ from the indirect pages");
  bool ok = true;
  rmap_.for_all([&](uint64_t gfn, uint64_t spte) {
    ShadowPage* sp = page_of_table(spte & ~0xfffull);
    if (!sp || sp->role.level != 1 || !(*entry_ptr(spte) & pte::kP) || leaf_gfn(*sp, unsigned(spte & 0xfff) / 8) != gfn)
      ok = false;
  });
  return ok ? true : fail("a reverse-map entry is not a leaf mapping its frame");
}

}  // namespace nestvm::hv
