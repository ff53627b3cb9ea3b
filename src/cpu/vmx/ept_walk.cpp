// The EPT walk (SDM Vol. 3 §29.3.2): 4-level paging structures from the EPTP, 4 KiB, 2 MiB and
// 1 GiB pages, read/write/execute permissions with execute-only translations, EPT memory types,
// accessed and dirty flags (§29.3.5), EPT misconfigurations (§29.3.3.1) and EPT violations
// (§29.3.3.2) with the exit qualification of Table 28-7.
#include "cpu/vmx/ept_walk.h"

#include <atomic>

#include "arch/paging.h"
#include "cpu/cpu.h"

namespace nestvm::cpu {

using namespace arch;


namespace {

// An EPT paging-structure entry in host-physical memory (L0's tables).
struct EptEntry {
  uint64_t* host = nullptr;  // nullptr: not RAM
  uint64_t value = 0;
};

EptEntry read_ept_entry(PhysMem& mem, uint64_t hpa) {
  EptEntry e;
  uint8_t* page = mem.ram_page(hpa);
  if (!page) {
    e.value = mem.mmio_read(hpa, 8);
    return e;
  }
  e.host = reinterpret_cast<uint64_t*>(page + (hpa & (kPageSize - 1)));
  e.value = std::atomic_ref<uint64_t>(*e.host).load(std::memory_order_relaxed);
  return e;
}

void set_ept_bits(const EptEntry& e, uint64_t bits) {
  if (e.host && (e.value & bits) != bits) std::atomic_ref<uint64_t>(*e.host).fetch_or(bits);
}

}  // namespace

Status Cpu::ept_translate(uint64_t gpa, EptAccess access, uint64_t gla, EptTranslation& out) {
  const uint64_t eptp = vmx_.ctl.eptp;
  const bool ad = eptp & eptp::kAdEnable;
  const int maxpa = model_.maxphyaddr();
  const uint64_t addr_mask = pte::phys_mask(maxpa);
  const uint64_t rsvd_high = 0x000fffffffffffffull & ~((1ull << maxpa) - 1);  // bits 51:MAXPHYADDR
  const bool exec_only = vmx_caps_.ept_vpid_cap & ept_vpid_cap::kExecuteOnly;
  const bool pages_1g = vmx_caps_.ept_vpid_cap & ept_vpid_cap::kPdpte1G;
  // §29.3.3.2: with EPT A/D flags enabled, accesses to guest paging structures are writes
  // (except the PDPTE loads of MOV to CR, which are reads).
  const bool write = access == EptAccess::kWrite || access == EptAccess::kPagingWrite ||
                     (ad && access == EptAccess::kPagingRead);

  EptEntry used[4];
  int n = 0;
  unsigned rwx = 7;
  unsigned shift = 12;
  uint64_t table = eptp & addr_mask;
  for (int level = 4;; --level) {
    shift = 12 + 9 * (level - 1);
    const EptEntry e = read_ept_entry(mem_, table + ((gpa >> shift) & 0x1ff) * 8);
    const uint64_t v = e.value;
    // Not present: none of bits 2:0 set (§29.3.2).
    if (!(v & ept::kRwxMask)) return ept_violation(gpa, access, gla, 0);
    // §29.3.3.1: write without read; execute-only where the processor lacks it.
    if ((v & (ept::kRead | ept::kWrite)) == ept::kWrite) return ept_misconfig(gpa);
    if (!exec_only && (v & (ept::kRead | ept::kExec)) == ept::kExec) return ept_misconfig(gpa);
    const bool large = (level == 2 || level == 3) && (v & ept::kLargePage);
    const bool leaf = level == 1 || large;
    // Reserved bits (Tables 29-1 to 29-6): bits 7:3 of a PML4E, bits 6:3 of an entry that
    // references a table, the low address bits of a large page, a 1 GiB page where the
    // processor has none, and bits 51:MAXPHYADDR everywhere.
    uint64_t rsvd = rsvd_high;
    if (level == 4) rsvd |= 0xf8;
    else if (!leaf) rsvd |= 0x78;
    else if (large) rsvd |= ((1ull << shift) - 1) & ~0xfffull;
    if (level == 3 && large && !pages_1g) rsvd |= ept::kLargePage;
    if (v & rsvd) return ept_misconfig(gpa);
    if (leaf && !ept_memory_type_valid(unsigned(v & ept::kMemTypeMask) >> ept::kMemTypeShift)) return ept_misconfig(gpa);
    rwx &= unsigned(v & ept::kRwxMask);
    used[n++] = e;
    if (leaf) break;
    table = v & addr_mask;
  }

  const unsigned need = access == EptAccess::kFetch ? ept::kExec : write ? ept::kWrite : ept::kRead;
  if (!(rwx & need)) return ept_violation(gpa, access, gla, rwx);

  // §29.3.5: the accessed flag in every entry used, the dirty flag in the leaf for writes.
  const EptEntry& leaf = used[n - 1];
  if (ad) {
    for (int k = 0; k < n; ++k) set_ept_bits(used[k], ept::kAccessed | (k == n - 1 && write ? ept::kDirty : 0));
  }
  const uint64_t offset_mask = (1ull << shift) - 1;
  out.hpa = (leaf.value & addr_mask & ~offset_mask) | (gpa & offset_mask);
  out.rwx = uint8_t(rwx);
  out.dirty = !ad || write || (leaf.value & ept::kDirty);
  return Status::kNext;
}

Status Cpu::ept_violation(uint64_t gpa, EptAccess access, uint64_t gla, unsigned rwx) {
  namespace q = exit_qual::ept;
  const bool ad = vmx_.ctl.eptp & eptp::kAdEnable;
  uint64_t qual = 0;
  switch (access) {
    case EptAccess::kRead: case EptAccess::kPdpteLoad: qual = q::kRead; break;
    case EptAccess::kWrite: qual = q::kWrite; break;
    case EptAccess::kFetch: qual = q::kFetch; break;
    // Table 28-7, bit 1: a guest paging-structure access that counts as a write because EPT
    // A/D flags are enabled sets both bits 0 and 1.
    case EptAccess::kPagingRead: qual = ad ? (q::kRead | q::kWrite) : q::kRead; break;
    case EptAccess::kPagingWrite: qual = ad ? (q::kRead | q::kWrite) : q::kWrite; break;
  }
  qual |= uint64_t(rwx & 7) << 3;  // bits 5:3: what the translation allowed
  VmExitInfo e;
  e.reason = uint32_t(ExitReason::EPT_VIOLATION);
  e.guest_physical_address = gpa;
  // Bit 7: the guest-linear address is valid except for the PDPTE loads of MOV to CR. Bit 8:
  // the access was to the translation of that address, not to a paging-structure entry.
  if (access != EptAccess::kPdpteLoad) {
    const bool final = access == EptAccess::kRead || access == EptAccess::kWrite || access == EptAccess::kFetch;
    qual |= q::kGlaValid | (final ? q::kGlaTranslation : 0);
    e.guest_linear_address = gla;
    // §29.4.3.1: the violation invalidates the combined mappings of that linear address.
    if (final) tlb_.flush_current_page(gla);
  }
  // §28.2.3: the violation happened while IRET was unblocking NMIs.
  if (vmx_nmi_unblocked_by_iret()) qual |= q::kNmiUnblockingDueToIret;
  e.qualification = qual;
  return vm_exit(e);
}

Status Cpu::ept_misconfig(uint64_t gpa) {
  // §28.2.1: the exit qualification and guest-linear address are not defined for an EPT
  // misconfiguration (nestvm writes 0); the guest-physical address is.
  VmExitInfo e;
  e.reason = uint32_t(ExitReason::EPT_MISCONFIG);
  e.guest_physical_address = gpa;
  return vm_exit(e);
}

}  // namespace nestvm::cpu
