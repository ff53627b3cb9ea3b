#include "hv/mmu/nested_ept.h"

#include <atomic>

#include "arch/vmx.h"

namespace nestvm::hv {

namespace ept = arch::ept;
namespace q = arch::exit_qual::ept;

namespace {
constexpr uint64_t kAddrMask = 0x000ffffffffff000ull;  // EPT entry bits 51:12
constexpr uint64_t ep4ta(uint64_t eptp) { return eptp & kAddrMask; }
// EPT memory types 2, 3 and 7 are reserved (SDM §29.3.7).
constexpr bool memory_type_valid(unsigned t) { return t != 2 && t != 3 && t != 7; }
// The silicon walks EPT02 while another thread may read it: whole 8-byte stores.
void store(uint64_t& e, uint64_t v) { std::atomic_ref<uint64_t>(e).store(v, std::memory_order_release); }
}  // namespace

// One walk of EPT12: the entries used (their L1-physical addresses, for the A/D updates), the
// permissions every entry allowed, and the L1-physical address reached.
struct NestedEpt::Walk {
  uint64_t entry_gpa[4] = {};
  uint64_t entry_val[4] = {};
  int n = 0;
  unsigned rwx = 7;
  uint64_t l1_gpa = 0;
  bool present = false;   // every entry had one of bits 2:0 set
  bool misconfig = false;
};

NestedEpt::NestedEpt(HostMemory& host, GuestMemory& mem, MmuStats& stats, uint64_t ept_vpid_cap, int maxphyaddr,
                     std::function<void(uint64_t)> flush)
    : host_(host), mem_(mem), stats_(stats), ept_vpid_cap_(ept_vpid_cap), maxphyaddr_(maxphyaddr), flush_(std::move(flush)) {}

NestedEpt::~NestedEpt() {
  // No flush: the vCPU (and its silicon) goes with it.
  flush_ = nullptr;
  invalidate_all();
}

uint64_t NestedEpt::eptp02(uint64_t eptp12) {
  auto it = roots_.find(eptp12);
  if (it == roots_.end()) {
    const uint64_t hpa = host_.alloc_page();
    if (!hpa) return 0;
    it = roots_.emplace(eptp12, Root{hpa, {}}).first;
    ++tables_;
    ++stats_.ept02_roots;
    ++stats_.ept02_table_pages;
  }
  return it->second.hpa | arch::eptp::kMemTypeWb | (3u << arch::eptp::kWalkLengthShift);
}

// The walk of SDM §29.3.2 on L1's tables with L1's capabilities: misconfigurations of §29.3.3.1
// (write without read, execute-only where not offered, reserved bits, bad memory type; an entry
// in memory that does not exist reads as all ones, which is reserved bits), permissions ANDed.
bool NestedEpt::walk_ept12(uint64_t eptp12, uint64_t l2_gpa, Walk& w) {
  const uint64_t rsvd_high = 0x000fffffffffffffull & ~((1ull << maxphyaddr_) - 1);
  const uint64_t addr_mask = kAddrMask & ~rsvd_high;
  const bool exec_only = ept_vpid_cap_ & arch::ept_vpid_cap::kExecuteOnly;
  const bool pages_2m = ept_vpid_cap_ & arch::ept_vpid_cap::kPde2M;
  const bool pages_1g = ept_vpid_cap_ & arch::ept_vpid_cap::kPdpte1G;
  uint64_t table = eptp12 & addr_mask;
  for (int level = 4;; --level) {
    const unsigned shift = 12 + 9 * unsigned(level - 1);
    const uint64_t gpa = table + ((l2_gpa >> shift) & 0x1ff) * 8;
    uint64_t v = ~0ull;
    if (!mem_.read(gpa, &v, 8)) v = ~0ull;
    if (!(v & ept::kRwxMask)) return false;  // not present
    if ((v & (ept::kRead | ept::kWrite)) == ept::kWrite ||
        (!exec_only && (v & (ept::kRead | ept::kExec)) == ept::kExec)) {
      w.misconfig = true;
      return false;
    }
    const bool large = ((level == 2 && pages_2m) || level == 3) && (v & ept::kLargePage);
    const bool leaf = level == 1 || large;
    // Reserved bits (SDM Tables 29-1 to 29-6): 7:3 of a PML4E, 6:3 (and 7 where large pages are
    // not offered) of an entry that references a table, the low address bits of a large page,
    // and bits 51:MAXPHYADDR.
    uint64_t rsvd = rsvd_high;
    if (level == 4) rsvd |= 0xf8;
    else if (!leaf) rsvd |= 0x78 | ((level == 2 || level == 3) ? ept::kLargePage : 0);
    else if (large) rsvd |= ((1ull << shift) - 1) & ~0xfffull;
    if (level == 3 && large && !pages_1g) rsvd |= ept::kLargePage;
    if ((v & rsvd) || (leaf && !memory_type_valid(unsigned(v & ept::kMemTypeMask) >> ept::kMemTypeShift))) {
      w.misconfig = true;
      return false;
    }
    w.entry_gpa[w.n] = gpa;
    w.entry_val[w.n] = v;
    ++w.n;
    w.rwx &= unsigned(v & ept::kRwxMask);
    if (leaf) {
      const uint64_t offset = (1ull << shift) - 1;
      w.l1_gpa = (v & addr_mask & ~offset) | (l2_gpa & offset);
      w.present = true;
      return true;
    }
    table = v & addr_mask;
  }
}

std::optional<uint64_t> NestedEpt::translate(uint64_t eptp12, uint64_t l2_gpa, unsigned* rwx) {
  Walk w;
  if (!walk_ept12(eptp12, l2_gpa, w)) return std::nullopt;
  if (rwx) *rwx = w.rwx;
  return w.l1_gpa;
}

uint64_t* NestedEpt::leaf_for(Root& root, uint64_t l2_gpa) {
  uint64_t t = root.hpa;
  for (int level = 4; level > 1; --level) {
    uint64_t& e = reinterpret_cast<uint64_t*>(host_.frame(t))[(l2_gpa >> (12 + 9 * (level - 1))) & 0x1ff];
    if (!(e & ept::kRwxMask)) {
      const uint64_t next = host_.alloc_page();
      if (!next) return nullptr;
      root.tables.push_back(next);
      ++tables_;
      ++stats_.ept02_table_pages;
      store(e, next | ept::kRwxMask);
    }
    t = e & kAddrMask;
  }
  return reinterpret_cast<uint64_t*>(host_.frame(t)) + ((l2_gpa >> 12) & 0x1ff);
}

NestedEpt::Fault NestedEpt::handle_violation(uint64_t eptp12, uint64_t l2_gpa, uint64_t qual02) {
  ++stats_.ept02_violations;
  Fault f;
  const bool ad = eptp12 & arch::eptp::kAdEnable;
  // What the access was (SDM Table 28-7, bits 2:0). With A/D flags enabled in EPT12, an access to
  // an L2 paging-structure entry is a write for EPT12 (§29.3.3.2), as hardware walking EPT12
  // would have reported; EPT02 has A/D off, so the silicon reported a read.
  const bool paging_access = (qual02 & q::kGlaValid) && !(qual02 & q::kGlaTranslation);
  uint64_t access = qual02 & (q::kRead | q::kWrite | q::kFetch);
  if (ad && paging_access) access |= q::kRead | q::kWrite;
  const unsigned need = (access & q::kFetch) ? ept::kExec : (access & q::kWrite) ? ept::kWrite : ept::kRead;
  Walk w;
  const bool mapped = walk_ept12(eptp12, l2_gpa, w);
  if (w.misconfig) {
    f.kind = Fault::Kind::kMisconfig;
    return f;
  }
  if (!mapped || !(w.rwx & need)) {
    // Bits 5:3: what EPT12's translation allowed (0 when not present); bits 7, 8 and 12 as the
    // silicon found them for this access.
    f.kind = Fault::Kind::kViolation;
    f.qualification = access | (uint64_t(mapped ? w.rwx : 0) << 3) |
                      (qual02 & (q::kGlaValid | q::kGlaTranslation | q::kNmiUnblockingDueToIret));
    return f;
  }
  f.l1_gpa = w.l1_gpa;
  if (!mem_.is_ram(w.l1_gpa)) {
    f.kind = Fault::Kind::kMmio;
    return f;
  }
  const uint64_t hpa = mem_.backing(w.l1_gpa);
  if (!hpa) {
    f.kind = Fault::Kind::kOutOfMemory;
    return f;
  }
  // §29.3.5: the accessed flag of every EPT12 entry used, the dirty flag of the leaf for a
  // write. Until the leaf is dirty, EPT02 withholds write permission so that the first write
  // comes back here to set it (KVM does the same for nested A/D).
  unsigned rwx = w.rwx;
  if (ad) {
    const bool write = need == ept::kWrite;
    for (int k = 0; k < w.n; ++k) {
      const uint64_t bits = ept::kAccessed | (k == w.n - 1 && write ? ept::kDirty : 0);
      if ((w.entry_val[k] & bits) == bits) continue;
      if (uint8_t* p = mem_.host_ptr(w.entry_gpa[k]))
        std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(p)).fetch_or(bits);
    }
    if (!write && !(w.entry_val[w.n - 1] & ept::kDirty)) rwx &= ~unsigned(ept::kWrite);
  }
  if (!eptp02(eptp12)) {
    f.kind = Fault::Kind::kOutOfMemory;
    return f;
  }
  Root& root = roots_.at(eptp12);
  uint64_t* leaf = leaf_for(root, l2_gpa);
  if (!leaf) {
    f.kind = Fault::Kind::kOutOfMemory;
    return f;
  }
  const uint64_t leaf_hpa = uint64_t(reinterpret_cast<uint8_t*>(leaf) - host_.frame(0));
  const uint64_t old = *leaf;
  if (old & ept::kRwxMask) {
    rmap_.remove((old & kAddrMask) >> 12, leaf_hpa);
    --stats_.ept02_mapped_pages;
  }
  // L1 RAM is write-back memory for L0 (as in EPT01); L1's memory type governs nothing here.
  store(*leaf, hpa | rwx | (uint64_t(arch::eptp::kMemTypeWb) << ept::kMemTypeShift));
  rmap_.add(hpa >> 12, leaf_hpa);
  ++stats_.ept02_mapped_pages;
  // A leaf that loses no permission needs no flush; one that changes frame or permissions does
  // (the silicon may hold the old combined mapping).
  if ((old & ept::kRwxMask) && flush_) flush_(root.hpa | arch::eptp::kMemTypeWb | (3u << arch::eptp::kWalkLengthShift));
  f.kind = Fault::Kind::kFixed;
  return f;
}

void NestedEpt::drop_root(uint64_t, Root& root) {
  auto forget_leaves = [&](uint64_t table_hpa) {
    uint64_t* t = reinterpret_cast<uint64_t*>(host_.frame(table_hpa));
    for (unsigned i = 0; i < 512; ++i) {
      // Leaves live in level-1 tables only: a table entry points to one of root.tables, never
      // to RAM mapped for L2, so only those whose frame the reverse map names are leaves.
      const uint64_t e = t[i];
      if ((e & ept::kRwxMask) && rmap_.remove((e & kAddrMask) >> 12, table_hpa + 8 * i)) --stats_.ept02_mapped_pages;
    }
  };
  for (uint64_t t : root.tables) forget_leaves(t);
  if (flush_) flush_(root.hpa | arch::eptp::kMemTypeWb | (3u << arch::eptp::kWalkLengthShift));
  for (uint64_t t : root.tables) host_.free_page(t);
  host_.free_page(root.hpa);
  tables_ -= root.tables.size() + 1;
  stats_.ept02_table_pages -= root.tables.size() + 1;
  --stats_.ept02_roots;
}

void NestedEpt::invalidate(uint64_t eptp12) {
  for (auto it = roots_.begin(); it != roots_.end();) {
    if (ep4ta(it->first) == ep4ta(eptp12)) {
      drop_root(it->first, it->second);
      it = roots_.erase(it);
    } else {
      ++it;
    }
  }
}

void NestedEpt::invalidate_all() {
  for (auto& [eptp12, root] : roots_) drop_root(eptp12, root);
  roots_.clear();
}

void NestedEpt::zap_host_frame(uint64_t hpa) {
  const std::vector<uint64_t> leaves = rmap_.entries(hpa >> 12);
  for (uint64_t l : leaves) {
    store(*entry(l), 0);
    rmap_.remove(hpa >> 12, l);
    --stats_.ept02_mapped_pages;
  }
  if (!leaves.empty() && flush_)
    for (auto& [eptp12, root] : roots_) flush_(root.hpa | arch::eptp::kMemTypeWb | (3u << arch::eptp::kWalkLengthShift));
}

}  // namespace nestvm::hv
