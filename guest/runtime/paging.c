#include "runtime/paging.h"

#include "runtime/libc.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/x86.h"

#define POOL_PAGES 128
static uint8_t pool[POOL_PAGES][4096] __attribute__((aligned(4096)));
static unsigned pool_used;

void* page_alloc(void) {
  unsigned i = __atomic_fetch_add(&pool_used, 1, __ATOMIC_RELAXED);
  if (i >= POOL_PAGES) report_abort("page_alloc: the pool of %u pages is exhausted", POOL_PAGES);
  memset(pool[i], 0, 4096);
  return pool[i];
}

static uint64_t* table_of(uint64_t entry) { return (uint64_t*)(uintptr_t)(entry & PTE_ADDR_MASK); }

volatile uint64_t* get_pte(uint64_t va) {
  uint64_t* table = (uint64_t*)(uintptr_t)(read_cr3() & PTE_ADDR_MASK);
  for (int level = 4; level > 1; --level) {
    uint64_t* e = &table[(va >> (12 + 9 * (level - 1))) & 511];
    if (!(*e & PTE_P)) {
      *e = (uint64_t)(uintptr_t)page_alloc() | PTE_P | PTE_W | PTE_U;
    } else if (level == 2 && (*e & PTE_PS)) {
      /* Split the 2 MiB page into 512 PTEs with the same translation and attributes (bit 7
       * is PS in a PDE and PAT in a PTE; PAT is not used). */
      uint64_t* pt = page_alloc();
      uint64_t base = *e & 0x000fffffffe00000ull;
      uint64_t attrs = (*e & 0xfffull & ~PTE_PS) | (*e & PTE_NX);
      for (int i = 0; i < 512; ++i) pt[i] = (base + ((uint64_t)i << 12)) | attrs;
      *e = (uint64_t)(uintptr_t)pt | PTE_P | PTE_W | PTE_U;
      write_cr3(read_cr3()); /* the old 2 MiB translation may be cached */
    }
    table = table_of(*e);
  }
  return &table[(va >> 12) & 511];
}

void map_page(uint64_t va, uint64_t pa, uint64_t flags) {
  volatile uint64_t* pte = get_pte(va);
  *pte = (pa & PTE_ADDR_MASK) | flags | PTE_P;
  invlpg((void*)va);
}

void map_large_page(uint64_t va, uint64_t pa, int level, uint64_t flags) {
  uint64_t* table = (uint64_t*)(uintptr_t)(read_cr3() & PTE_ADDR_MASK);
  for (int l = 4; l > level; --l) {
    uint64_t* e = &table[(va >> (12 + 9 * (l - 1))) & 511];
    if (!(*e & PTE_P)) *e = (uint64_t)(uintptr_t)page_alloc() | PTE_P | PTE_W | PTE_U;
    else if (*e & PTE_PS) report_abort("map_large_page: %#lx is inside a larger page", va);
    table = table_of(*e);
  }
  table[(va >> (12 + 9 * (level - 1))) & 511] = (pa & PTE_ADDR_MASK) | flags | PTE_P | PTE_PS;
  write_cr3(read_cr3());
}

void unmap_page(uint64_t va) {
  volatile uint64_t* pte = get_pte(va);
  *pte = 0;
  invlpg((void*)va);
}

void identity_map_page(uint64_t va) {
  uint64_t flags = PTE_W | PTE_U;
  if (va >= 0xc0000000ull) flags |= PTE_PCD | PTE_PWT;
  map_page(va, va, flags);
}

unsigned phys_addr_bits(void) {
  if (cpuid(0x80000000).a < 0x80000008) return 36;
  return cpuid(0x80000008).a & 0xff;
}
