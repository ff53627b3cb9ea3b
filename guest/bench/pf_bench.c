/* The page-fault-heavy machine benchmark image (docs/performance.md, "Machine: nestvm vs QEMU
 * TCG"): demand paging on the guest's own page tables, so that the time goes to guest #PFs,
 * page-table writes, INVLPG, CR3 loads and first touches of fresh guest-physical memory, i.e.
 * to L0's EPT-violation path (ept=on) or its shadow-paging path (ept=off).
 * Each round maps a window of `pages` 4 KiB pages on demand: every first write to a window
 * page faults, the #PF handler points the PTE at the next frame of a pool of `frames` frames
 * (so the first rounds touch fresh guest-physical memory, later ones reuse it) and INVLPGs it.
 * The main loop alternates CR3 between two PML4s sharing the window's tables every 64 pages,
 * then checks every value through the identity map, unmaps the window page by page with
 * INVLPG and reloads CR3. Frames move by `pages` frames per round, so a translation that
 * survived its INVLPG or CR3 load would write the wrong frame and miss a fault: both counted.
 * Arguments (-append): rounds=R pages=W frames=F (defaults 16, 4096, 61440: the pool needs
 * 64 MiB + F * 4 KiB of RAM, -m 512M).
 * Output: "BENCH: pf rounds=R pages=W frames=F faults=N tsc=T us=U", PASS/FAIL lines, the
 * runtime's SUMMARY and isa-debug-exit. */
#include "runtime/clock.h"
#include "runtime/libc.h"
#include "runtime/multiboot.h"
#include "runtime/paging.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/traps.h"
#include "runtime/x86.h"

#define WINDOW 0x0000100000000000ull /* PML4 slot 32: nothing else there */
#define FRAME_BASE (64ull << 20)     /* above the image, its tables and the boot modules */
#define MAX_PTS 64                   /* page tables of the window: up to 32768 pages */
#define CR3_SWITCH_PAGES 64

static uint64_t pml4_a[512] __attribute__((aligned(4096)));
static uint64_t pml4_b[512] __attribute__((aligned(4096)));
static uint64_t window_pdpt[512] __attribute__((aligned(4096)));
static uint64_t window_pd[512] __attribute__((aligned(4096)));
static uint64_t window_pt[MAX_PTS][512] __attribute__((aligned(4096)));

static uint64_t pages, frames, round_no, faults;

static volatile uint64_t* window_pte(uint64_t i) { return &window_pt[i / 512][i % 512]; }

static uint64_t frame_of(uint64_t round, uint64_t i) {
  return FRAME_BASE + ((round * pages + i) % frames) * 4096;
}

static uint64_t value_of(uint64_t round, uint64_t i) { return (round << 32 | i) ^ 0x5a5a5a5a00000000ull; }

/* Page i's value lives at a different cache line of each page, so lines are not all alike. */
static uint64_t offset_of(uint64_t i) { return (i * 64) % 4096; }

static void on_page_fault(struct trap_frame* f) {
  const uint64_t va = read_cr2();
  const uint64_t i = (va - WINDOW) / 4096;
  if (va < WINDOW || i >= pages || (*window_pte(i) & PTE_P) || (f->error_code & PFEC_P)) {
    /* Not a demand fault of the window: nothing to map; resuming would loop. */
    report_abort("unexpected #PF at rip %#lx, cr2 %#lx, error %#lx", f->rip, va, f->error_code);
  }
  *window_pte(i) = frame_of(round_no, i) | PTE_P | PTE_W;
  invlpg((void*)va);
  ++faults;
}

static void build_address_spaces(void) {
  for (int i = 0; i < 512; ++i) pml4_a[i] = pml4_b[i] = boot_pml4[i];
  const uint64_t table = PTE_P | PTE_W;
  pml4_a[32] = pml4_b[32] = (uint64_t)(uintptr_t)window_pdpt | table;
  window_pdpt[0] = (uint64_t)(uintptr_t)window_pd | table;
  for (uint64_t t = 0; t < (pages + 511) / 512; ++t) window_pd[t] = (uint64_t)(uintptr_t)window_pt[t] | table;
}

int main(int argc, char** argv) {
  const uint64_t rounds = arg_u64("rounds", 16);
  pages = arg_u64("pages", 4096);
  frames = arg_u64("frames", 61440);
  if (!pages || pages > MAX_PTS * 512 || frames < pages || !rounds)
    report_abort("bad arguments: rounds=%lu pages=%lu frames=%lu", rounds, pages, frames);
  if (!multiboot_mmap_is_available(FRAME_BASE, frames * 4096))
    report_abort("the frame pool [%#llx, +%#lx) is not RAM: give more memory (-m)", FRAME_BASE, frames * 4096);
  build_address_spaces();
  set_trap_handler(PF_VECTOR, on_page_fault);
  const uint64_t boot_cr3 = read_cr3();
  const uint64_t cr3[2] = {(uint64_t)(uintptr_t)pml4_a, (uint64_t)(uintptr_t)pml4_b};

  uint64_t mismatches = 0;
  const uint64_t t0 = rdtsc();
  write_cr3(cr3[0]);
  for (round_no = 0; round_no < rounds; ++round_no) {
    for (uint64_t i = 0; i < pages; ++i) {
      if (i % CR3_SWITCH_PAGES == 0) write_cr3(cr3[(i / CR3_SWITCH_PAGES) & 1]);
      *(volatile uint64_t*)(WINDOW + i * 4096 + offset_of(i)) = value_of(round_no, i);
    }
    for (uint64_t i = 0; i < pages; ++i)
      mismatches += *(volatile uint64_t*)(uintptr_t)(frame_of(round_no, i) + offset_of(i)) != value_of(round_no, i);
    for (uint64_t i = 0; i < pages; ++i) {
      *window_pte(i) = 0;
      invlpg((void*)(WINDOW + i * 4096));
    }
    write_cr3(read_cr3());
  }
  write_cr3(boot_cr3);
  const uint64_t tsc = rdtsc() - t0;
  set_trap_handler(PF_VECTOR, NULL);

  printf("BENCH: pf rounds=%lu pages=%lu frames=%lu faults=%lu tsc=%lu us=%lu\n", rounds, pages, frames, faults,
         tsc, tsc * 1000 / tsc_khz());
  check_eq("one #PF per window page and round", faults, rounds * pages);
  check_eq("every value reached its frame", mismatches, 0);
  return 0;
}
