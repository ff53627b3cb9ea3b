// What a shadow page is a shadow of (KVM's union kvm_mmu_page_role): the level of its table, the
// guest paging mode and control bits its entries were computed under, whether it shadows a
// guest page table (indirect) or maps a linear range straight to guest frames (direct), and the
// access rights the levels above it allowed. Two walks reach the same shadow page only if every
// one of these agrees, so its entries are right for both. The TDP MMU's tables (EPT01) are
// direct pages at every level; nested EPT (EPT02) is the shadow MMU over EPT12 with guest_mode.
#pragma once
#include <bit>
#include <cstdint>

namespace nestvm::hv {

// Access rights of a translation as KVM's ACC_* bits: the AND of U/S and R/W over the levels,
// and "executable" for XD clear at every level (or EFER.NXE = 0).
namespace acc {
inline constexpr uint8_t kExec = 1;
inline constexpr uint8_t kWrite = 2;
inline constexpr uint8_t kUser = 4;
inline constexpr uint8_t kAll = kExec | kWrite | kUser;
}  // namespace acc

struct MmuPageRole {
  uint32_t level : 4 = 0;            // 1: page table ... 4: PML4 (shadow levels, 512 entries each)
  uint32_t has_4_byte_gpte : 1 = 0;  // shadows 32-bit paging: one guest table spans 2 or 4 pages
  uint32_t quadrant : 2 = 0;         // which part of a 4-byte guest table (see quadrant_of)
  uint32_t direct : 1 = 0;           // maps guest frames gfn + i << (9 * (level - 1)); no guest table
  uint32_t access : 3 = acc::kAll;   // rights the levels above allow (indirect pages)
  uint32_t invalid : 1 = 0;          // zapped while a vCPU still uses it as a root
  uint32_t efer_nx : 1 = 0;          // EFER.NXE: XD is a permission, not a reserved bit
  uint32_t cr0_wp : 1 = 0;           // CR0.WP: see ShadowMmu's treatment of supervisor writes
  uint32_t cr4_pse : 1 = 0;          // CR4.PSE: whether a 32-bit PDE with PS = 1 maps 4 MiB
  uint32_t smep_andnot_wp : 1 = 0;   // CR4.SMEP && !CR0.WP
  uint32_t smap_andnot_wp : 1 = 0;   // CR4.SMAP && !CR0.WP
  uint32_t guest_mode : 1 = 0;       // shadows L2's translations (nested EPT)
  uint32_t reserved : 14 = 0;

  uint32_t word() const { return std::bit_cast<uint32_t>(*this); }
  bool operator==(const MmuPageRole& o) const { return word() == o.word(); }
};
static_assert(sizeof(MmuPageRole) == 4);

// Guest paging with 4-byte entries (SDM §4.3) is shadowed by PAE-format tables of 512 8-byte
// entries: a guest page table (1024 entries, 4 MiB) by two shadow tables, a guest page
// directory (4 GiB) by four. The quadrant says which part of the guest table a shadow page
// covers (KVM's role.quadrant), from the linear address being translated.
constexpr unsigned quadrant_of(uint64_t la, unsigned level) {
  return level == 1 ? unsigned(la >> 21) & 1 : level == 2 ? unsigned(la >> 30) & 3 : 0;
}

}  // namespace nestvm::hv
