#include "hv/mmu/tdp_mmu.h"

#include <atomic>

#include "arch/vmx.h"

namespace nestvm::hv {

namespace ept = arch::ept;

namespace {
constexpr uint64_t kAddrMask = 0x000ffffffffff000ull;  // EPT entry bits 51:12
constexpr unsigned level_shift(int level) { return 9 * unsigned(level - 1); }  // in frames

// Entries change while other vCPUs' silicon walks the tables: whole 8-byte stores.
void store(uint64_t& e, uint64_t v) { std::atomic_ref<uint64_t>(e).store(v, std::memory_order_release); }
}  // namespace

TdpMmu::TdpMmu(HostMemory& host, GuestMemory& mem, MmuStats& stats, std::function<void()> flush_remote_tlbs)
    : host_(host), mem_(mem), stats_(stats), flush_remote_tlbs_(std::move(flush_remote_tlbs)), root_(host.alloc_page()) {
  stats_.tdp_table_pages = tables_;
}

TdpMmu::~TdpMmu() {
  std::vector<uint64_t> freed;
  drop_table(root_, 4, freed);
  for (uint64_t t : freed) host_.free_page(t);
  host_.free_page(root_);
}

uint64_t* TdpMmu::entry_for(uint64_t gpa, bool create) {
  uint64_t t = root_;
  for (int level = 4; level > 1; --level) {
    uint64_t& e = table(t)[(gpa >> (12 + 9 * (level - 1))) & 0x1ff];
    if (!(e & ept::kRwxMask)) {
      if (!create) return nullptr;
      const uint64_t next = host_.alloc_page();
      if (!next) return nullptr;
      ++tables_;
      store(e, next | ept::kRwxMask);
    }
    t = e & kAddrMask;
  }
  return table(t) + ((gpa >> 12) & 0x1ff);
}

TdpMmu::Fault TdpMmu::handle_ept_violation(uint64_t gpa) {
  ++stats_.ept_violations;
  if (!mem_.is_ram(gpa)) return Fault::kMmio;
  const uint64_t hpa = mem_.backing(gpa);
  if (!hpa) return Fault::kOutOfMemory;
  std::lock_guard lock(mu_);
  uint64_t* leaf = entry_for(gpa, true);
  stats_.tdp_table_pages = tables_;
  if (!leaf) return Fault::kOutOfMemory;
  // The leaf's own host-physical address names it in the reverse map.
  const uint64_t leaf_hpa = uint64_t(reinterpret_cast<uint8_t*>(leaf) - host_.frame(0));
  if (*leaf & ept::kRwxMask) {
    // Another vCPU mapped it first.
    if ((*leaf & kAddrMask) == hpa) return Fault::kFixed;
    rmap_.remove((*leaf & kAddrMask) >> 12, leaf_hpa);
    --mapped_;
  }
  // RAM is write-back memory, readable, writable and executable by L1 (SDM Table 29-6).
  store(*leaf, hpa | ept::kRwxMask | (6ull << ept::kMemTypeShift));
  rmap_.add(hpa >> 12, leaf_hpa);
  ++mapped_;
  stats_.tdp_mapped_pages = mapped_;
  return Fault::kFixed;
}

// Frees the tables under table_hpa (level > 1), forgetting their leaves.
void TdpMmu::drop_table(uint64_t table_hpa, int level, std::vector<uint64_t>& freed) {
  uint64_t* t = table(table_hpa);
  for (unsigned i = 0; i < 512; ++i) {
    const uint64_t e = t[i];
    if (!(e & ept::kRwxMask)) continue;
    if (level == 1 || (e & ept::kLargePage)) {
      rmap_.remove((e & kAddrMask) >> 12, table_hpa + 8 * i);
      --mapped_;
      ++stats_.tdp_zapped_pages;
    } else {
      drop_table(e & kAddrMask, level - 1, freed);
      freed.push_back(e & kAddrMask);
      --tables_;
    }
    store(t[i], 0);
  }
}

// Zaps what [start, end) covers in the level-`level` table mapping frames from base_gfn.
bool TdpMmu::zap_table(uint64_t table_hpa, int level, uint64_t base_gfn, uint64_t start, uint64_t end,
                       std::vector<uint64_t>& freed) {
  bool zapped = false;
  uint64_t* t = table(table_hpa);
  const uint64_t span = 1ull << level_shift(level);
  for (unsigned i = 0; i < 512; ++i) {
    const uint64_t lo = base_gfn + i * span, hi = lo + span;
    if (hi <= start || lo >= end) continue;
    const uint64_t e = t[i];
    if (!(e & ept::kRwxMask)) continue;
    if (level == 1 || (e & ept::kLargePage)) {
      rmap_.remove((e & kAddrMask) >> 12, table_hpa + 8 * i);
      --mapped_;
      ++stats_.tdp_zapped_pages;
      store(t[i], 0);
      zapped = true;
    } else if (lo >= start && hi <= end) {
      // The whole table goes: unlink it first, free it once no vCPU can be walking it.
      store(t[i], 0);
      drop_table(e & kAddrMask, level - 1, freed);
      freed.push_back(e & kAddrMask);
      --tables_;
      zapped = true;
    } else {
      zapped |= zap_table(e & kAddrMask, level - 1, lo, start, end, freed);
    }
  }
  return zapped;
}

// KVM's kvm_mmu_commit_zap_page: the flush comes before the frames are reused.
void TdpMmu::commit_zap(bool flush, std::vector<uint64_t>& freed) {
  stats_.tdp_mapped_pages = mapped_;
  stats_.tdp_table_pages = tables_;
  if ((flush || !freed.empty()) && flush_remote_tlbs_) flush_remote_tlbs_();
  for (uint64_t t : freed) host_.free_page(t);
}

void TdpMmu::zap_gfn_range(uint64_t gfn_start, uint64_t gfn_end) {
  if (gfn_start >= gfn_end) return;
  std::lock_guard lock(mu_);
  std::vector<uint64_t> freed;
  const bool flush = zap_table(root_, 4, 0, gfn_start, gfn_end, freed);
  commit_zap(flush, freed);
}

void TdpMmu::zap_all() {
  std::lock_guard lock(mu_);
  std::vector<uint64_t> freed;
  const uint64_t before = mapped_;
  drop_table(root_, 4, freed);
  commit_zap(before != 0, freed);
}

std::vector<uint64_t> TdpMmu::leaves_mapping(uint64_t hpa) {
  std::lock_guard lock(mu_);
  return rmap_.entries(hpa >> 12);
}

bool TdpMmu::audit(std::string* why) {
  std::lock_guard lock(mu_);
  auto fail = [why](std::string m) {
    if (why) *why = std::move(m);
    return false;
  };
  uint64_t leaves = 0, tables = 1;
  std::string err;
  std::function<bool(uint64_t, int)> visit = [&](uint64_t t_hpa, int level) {
    const uint64_t* t = table(t_hpa);
    for (unsigned i = 0; i < 512; ++i) {
      const uint64_t e = t[i];
      if (!(e & ept::kRwxMask)) continue;
      if (level == 1 || (e & ept::kLargePage)) {
        ++leaves;
        if (!rmap_.contains((e & kAddrMask) >> 12, t_hpa + 8 * i)) {
          err = "a present EPT01 leaf is missing from the reverse map";
          return false;
        }
      } else {
        ++tables;
        if (!visit(e & kAddrMask, level - 1)) return false;
      }
    }
    return true;
  };
  if (!visit(root_, 4)) return fail(err);
  if (leaves != rmap_.size()) return fail("the reverse map records entries that are not present leaves");
  if (leaves != mapped_) return fail("mapped-page count differs from the tables");
  if (tables != tables_) return fail("table count differs from the tables");
  bool ok = true;
  rmap_.for_all([&](uint64_t frame, uint64_t spte) {
    const uint64_t e = *reinterpret_cast<const uint64_t*>(host_.frame(spte) + (spte & 0xfff));
    if (!(e & ept::kRwxMask) || ((e & kAddrMask) >> 12) != frame) ok = false;
  });
  return ok ? true : fail("a reverse-map entry does not map its frame");
}

}  // namespace nestvm::hv
