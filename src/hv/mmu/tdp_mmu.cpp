#include "hv/mmu/tdp_mmu.h"

#include "arch/vmx.h"

namespace nestvm::hv {

namespace ept = arch::ept;

TdpMmu::TdpMmu(HostMemory& host, GuestMemory& mem) : host_(host), mem_(mem), root_(host.alloc_page()) {}

uint64_t* TdpMmu::entry_for(uint64_t gpa, bool create) {
  uint64_t table = root_;
  for (int level = 4; level > 1; --level) {
    auto* t = reinterpret_cast<uint64_t*>(host_.frame(table));
    uint64_t& e = t[(gpa >> (12 + 9 * (level - 1))) & 0x1ff];
    if (!(e & ept::kRwxMask)) {
      if (!create) return nullptr;
      const uint64_t next = host_.alloc_page();
      if (!next) return nullptr;
      ++tables_;
      e = next | ept::kRwxMask;
    }
    table = e & ~0xfffull & ((1ull << 52) - 1);
  }
  return reinterpret_cast<uint64_t*>(host_.frame(table)) + ((gpa >> 12) & 0x1ff);
}

TdpMmu::Fault TdpMmu::handle_ept_violation(uint64_t gpa) {
  if (!mem_.is_ram(gpa)) return Fault::kMmio;
  const uint64_t hpa = mem_.backing(gpa);
  if (!hpa) return Fault::kOutOfMemory;
  std::lock_guard lock(mu_);
  uint64_t* leaf = entry_for(gpa, true);
  if (!leaf) return Fault::kOutOfMemory;
  if (!(*leaf & ept::kRwxMask)) ++mapped_;
  // RAM is write-back memory, readable, writable and executable by L1 (SDM Table 29-6).
  *leaf = hpa | ept::kRwxMask | (6ull << ept::kMemTypeShift);
  return Fault::kFixed;
}

}  // namespace nestvm::hv
