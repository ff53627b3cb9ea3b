/* 4-level paging helpers on the runtime's page tables (boot.S identity-maps 4 GiB with 2 MiB
 * pages; mapping a 4 KiB page inside such a region splits it into a page table first).
 * Changes are local to the calling CPU's TLB: no shootdown. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define PTE_P (1ull << 0)
#define PTE_W (1ull << 1)
#define PTE_U (1ull << 2)
#define PTE_PWT (1ull << 3)
#define PTE_PCD (1ull << 4)
#define PTE_A (1ull << 5)
#define PTE_D (1ull << 6)
#define PTE_PS (1ull << 7)
#define PTE_G (1ull << 8)
#define PTE_NX (1ull << 63)
#define PTE_ADDR_MASK 0x000ffffffffff000ull

/* A zeroed 4 KiB page from a static pool (never freed). */
void* page_alloc(void);
/* The PTE that maps va with a 4 KiB page, creating tables and splitting 2 MiB pages as
 * needed. */
volatile uint64_t* get_pte(uint64_t va);
/* Maps va -> pa with flags (PTE_P is added) and invalidates va on this CPU. */
void map_page(uint64_t va, uint64_t pa, uint64_t flags);
void unmap_page(uint64_t va);
/* Maps a 2 MiB page (level 2) or a 1 GiB page (level 3) at va -> pa; both must be aligned and
 * the region must not already be mapped by smaller pages. */
void map_large_page(uint64_t va, uint64_t pa, int level, uint64_t flags);
/* Restores the identity mapping of the 4 KiB page at va (va < 4 GiB). */
void identity_map_page(uint64_t va);
/* MAXPHYADDR from CPUID.80000008H:EAX[7:0]. */
unsigned phys_addr_bits(void);
