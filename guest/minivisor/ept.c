/* EPT12 (SDM Vol. 3 29.3): L2's guest-physical addresses map to the same L1 addresses, read,
 * write and execute, with 2 MiB pages (Table 29-4) where the mapping allows, except
 *   - the minivisor's own pages [1 MiB, window_end): L2's view of them maps to the RAM private
 *     to L1 instead (the same offset from its start), with 4 KiB pages below 2 MiB;
 *   - the private RAM itself, which stays unmapped: it is not L2's (an access is an EPT
 *     violation the minivisor reports). */
#include "minivisor/minivisor.h"

#include "runtime/libc.h"
#include "runtime/x86.h"

#define EPT_RWX 0x7ull
#define EPT_LARGE (1ull << 7)
#define EPT_MT_UC 0ull
#define EPT_MT_WB 6ull
#define TWO_MIB (1ull << 21)

static bool is_ram(const struct mvl_handover* h, uint64_t gpa) {
  if (gpa < h->l2_low_ram_top) return true;
  for (unsigned i = 0; i < h->req.mmap_count; ++i)
    if (h->mmap[i].type == 1 && gpa >= h->mmap[i].addr && gpa - h->mmap[i].addr < h->mmap[i].len) return true;
  return false;
}

static uint64_t* table(uint64_t* parent, unsigned index) {
  if (!(parent[index] & EPT_RWX)) parent[index] = page_alloc_mv() | EPT_RWX; /* non-leaf: no memory type */
  return (uint64_t*)(uintptr_t)(parent[index] & 0x000ffffffffff000ull);
}

static void map(uint64_t* pml4, uint64_t gpa, uint64_t target, bool large, uint64_t type) {
  uint64_t* pdpt = table(pml4, (unsigned)(gpa >> 39) & 511);
  uint64_t* pd = table(pdpt, (unsigned)(gpa >> 30) & 511);
  /* Memory type in bits 5:3 of a leaf (SDM Vol. 3 29.3.7). */
  if (large) {
    pd[(gpa >> 21) & 511] = target | EPT_RWX | EPT_LARGE | (type << 3);
    return;
  }
  uint64_t* pt = table(pd, (unsigned)(gpa >> 21) & 511);
  pt[(gpa >> 12) & 511] = target | EPT_RWX | (type << 3);
}

uint64_t ept_build(const struct mvl_handover* h, uint64_t window_end, uint64_t top) {
  uint64_t* pml4 = (uint64_t*)(uintptr_t)page_alloc_mv();
  unsigned mapped = 0;
  for (uint64_t gpa = 0; gpa < TWO_MIB; gpa += 4096) {
    const bool window = gpa >= 0x100000 && gpa < window_end;
    map(pml4, gpa, window ? h->own_low + gpa : gpa, false, is_ram(h, gpa) ? EPT_MT_WB : EPT_MT_UC);
  }
  for (uint64_t gpa = TWO_MIB; gpa < top; gpa += TWO_MIB) {
    if (gpa < h->own_high && h->own_low < gpa + TWO_MIB) continue; /* L1's private RAM */
    map(pml4, gpa, gpa < window_end ? h->own_low + gpa : gpa, true, is_ram(h, gpa) ? EPT_MT_WB : EPT_MT_UC);
    ++mapped;
  }
  printf("minivisor: EPT12: [0, %#lx) identity (%u 2 MiB pages) but [0x100000, %#lx) -> [%#lx, ...), and not "
         "[%#lx, %#lx)\n", top, mapped, window_end, h->own_low + 0x100000, h->own_low, h->own_high);
  /* EPTP (SDM Vol. 3 25.6.11): write-back paging structures when supported, 4-level walk. */
  const uint64_t caps = rdmsr(MSR_IA32_VMX_EPT_VPID_CAP);
  return (uint64_t)(uintptr_t)pml4 | (3ull << 3) | ((caps & EPT_CAP_WB) ? EPT_MT_WB : EPT_MT_UC);
}
