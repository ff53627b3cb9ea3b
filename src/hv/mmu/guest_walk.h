// Walks L1's page tables in guest memory (KVM's paging_tmpl.h FNAME(walk_addr)): 32-bit, PAE and
// 4-level paging as SDM Vol. 3 §4.3-4.5 define them, with the permission checks of §4.6, the
// #PF error code of §4.7 and the accessed/dirty updates of §4.8, done atomically on guest memory
// as the processor does them. The shadow MMU builds its entries from the result; the emulator
// and the fault path answer L1 with it. Entry formats are src/arch/paging.h's.
#pragma once
#include <array>
#include <cstdint>

#include "cpu/cpu.h"
#include "hv/guest_memory.h"

namespace nestvm::hv {

// L1's paging as its control registers define it (KVM's cpu_role plus CR3 and the PDPTEs).
struct GuestPagingState {
  cpu::PagingMode mode = cpu::PagingMode::kNone;
  uint64_t cr3 = 0;
  std::array<uint64_t, 4> pdptes{};  // PAE: the PDPTE registers (loaded at MOV to CR0/CR3/CR4)
  bool wp = false;                   // CR0.WP
  bool pse = false;                  // CR4.PSE (32-bit paging's 4 MiB pages)
  bool pge = false;                  // CR4.PGE
  bool smep = false;                 // CR4.SMEP
  bool smap = false;                 // CR4.SMAP
  bool nxe = false;                  // EFER.NXE
  int maxphyaddr = 40;
  bool pdpe1gb = true;  // 1-GByte pages (CPUID.80000001H:EDX[26])
  bool operator==(const GuestPagingState&) const = default;
};

// One access, as a #PF error code describes it.
struct GuestAccess {
  bool write = false;
  bool user = false;   // a user-mode access (CPL 3, not an implicit supervisor access)
  bool fetch = false;  // an instruction fetch
  // A supervisor-mode data access that SMAP does not restrict: explicit, with EFLAGS.AC = 1 at
  // CPL < 3 (SDM §4.6.1).
  bool smap_exempt = false;
  static GuestAccess from_error_code(uint32_t pfec, bool smap_exempt);
};

struct GuestWalk {
  bool fault = false;
  uint32_t error_code = 0;  // the #PF error code when fault (SDM §4.7)

  uint64_t gpa = 0;        // the translation of the linear address
  uint64_t gfn = 0;        // gpa's 4 KiB frame (also inside a large page)
  int level = 1;           // level of the leaf: 1 (4 KiB), 2 (2 MiB/4 MiB), 3 (1 GiB)
  int top_level = 0;       // 4 (4-level), 3 (PAE: the PDPTE registers), 2 (32-bit)
  uint8_t pte_access = 0;  // acc:: rights of the whole translation
  bool dirty = false;      // the leaf's D flag (after this walk's update)
  bool global = false;     // G in the leaf, with CR4.PGE
  // Per level L (top_level down to level): the entry, its guest-physical address, the frame of
  // the table holding it, and the rights of levels top_level..L. PAE's level 3 are the PDPTE
  // registers: the entry is the register, its table the 32-byte table at CR3.
  std::array<uint64_t, 5> pte{};
  std::array<uint64_t, 5> pte_gpa{};
  std::array<uint64_t, 5> table_gfn{};
  std::array<uint8_t, 5> pt_access{};
};

// Walks for la. With set_accessed_dirty, a successful walk sets A in every entry used and D in
// the leaf for a write, each by a compare-and-exchange that restarts the walk if L1 changed the
// entry meanwhile (KVM's FNAME(update_accessed_dirty_bits)). Tables that are not RAM read as all
// ones (a floating bus).
GuestWalk walk_guest(GuestMemory& mem, const GuestPagingState& s, uint64_t la, const GuestAccess& a,
                     bool set_accessed_dirty = true);

// Reads the guest entry at gpa (4 or 8 bytes) as the walk does.
uint64_t read_guest_pte(GuestMemory& mem, uint64_t gpa, bool wide);

}  // namespace nestvm::hv
