/* 4-level paging on the full path (SDM Vol. 3 chapter 4): #PF error codes and CR2 for
 * not-present, write-protect (CR0.WP), execute-disable, reserved-bit and user/supervisor
 * violations from ring 0 and ring 3; accessed and dirty bits; INVLPG and CR3 writes taking a
 * changed translation; mappings in the upper canonical half, 2 MiB pages and (when CPUID says so)
 * 1 GiB pages.
 * Arguments: rsvd_p=1 also requires P in reserved-bit error codes. Processors set it (SDM 4.7: P
 * is 0 only when some entry was not present; KVM's walker reports PFERR_RSVD | PFERR_PRESENT),
 * but QEMU 7.2's TCG leaves it clear, so the QEMU run checks the other bits only. */
#include "runtime/libc.h"
#include "runtime/paging.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/traps.h"
#include "runtime/x86.h"

#define VA 0x0000100000000000ull       /* PML4 slot 32: nothing there until we map it */
#define VA_HIGH 0xffff800000001000ull  /* upper canonical half, PML4 slot 256 */
#define VA_LARGE 0x0000100040000000ull /* a 2 MiB page */
#define VA_HUGE 0x0000100080000000ull  /* a 1 GiB page */

static volatile uint64_t sink;

static void read_at(void* p) { sink = *(volatile uint64_t*)p; }
static void write_at(void* p) { *(volatile uint64_t*)p = 0x1234; }
static void call_at(void* p) { ((void (*)(void))p)(); }

static bool strict_rsvd;

static void expect_pf(const char* what, cpu_fn fn, void* addr, bool user, uint32_t want_error) {
  struct fault_info fi;
  int v = user ? trap_run_user(fn, addr, &fi) : trap_run(fn, addr, &fi);
  char name[128];
  snprintf(name, sizeof(name), "%s: #PF", what);
  if (!report_why(v == PF_VECTOR, name, "got vector %d", v)) return;
  snprintf(name, sizeof(name), "%s: error code %#x", what, want_error);
  if ((want_error & PFEC_RSVD) && !strict_rsvd) {
    snprintf(name, sizeof(name), "%s: error code %#x (P not checked)", what, want_error);
    check_eq(name, fi.error_code & ~PFEC_P, want_error & ~PFEC_P);
  } else {
    check_eq(name, fi.error_code, want_error);
  }
  snprintf(name, sizeof(name), "%s: CR2 is the address", what);
  check_eq(name, fi.cr2, (uint64_t)addr);
}

static void expect_ok(const char* what, cpu_fn fn, void* addr, bool user) {
  struct fault_info fi;
  int v = user ? trap_run_user(fn, addr, &fi) : trap_run(fn, addr, &fi);
  report_why(v == -1, what, "%s at rip %#lx, error %#lx, cr2 %#lx", exception_name((unsigned)v), fi.rip,
             fi.error_code, fi.cr2);
}

static void check_error_codes(void) {
  void* va = (void*)VA;
  uint8_t* frame = page_alloc();
  unmap_page(VA);
  expect_pf("read of a not-present page", read_at, va, false, 0);
  expect_pf("write to a not-present page", write_at, va, false, PFEC_W);
  expect_pf("ring 3 read of a not-present page", read_at, va, true, PFEC_U);

  map_page(VA, (uint64_t)frame, PTE_U); /* read-only */
  expect_ok("read of a read-only page", read_at, va, false);
  expect_pf("write to a read-only page with CR0.WP = 1", write_at, va, false, PFEC_P | PFEC_W);
  write_cr0(read_cr0() & ~CR0_WP);
  expect_ok("supervisor write to a read-only page with CR0.WP = 0", write_at, va, false);
  write_cr0(read_cr0() | CR0_WP);
  expect_pf("ring 3 write to a read-only user page", write_at, va, true, PFEC_P | PFEC_W | PFEC_U);

  map_page(VA, (uint64_t)frame, PTE_W); /* supervisor-only */
  expect_ok("supervisor write to a supervisor page", write_at, va, false);
  expect_pf("ring 3 read of a supervisor page", read_at, va, true, PFEC_P | PFEC_U);
  expect_pf("ring 3 write to a supervisor page", write_at, va, true, PFEC_P | PFEC_W | PFEC_U);
  map_page(VA, (uint64_t)frame, PTE_W | PTE_U);
  expect_ok("ring 3 write to a user page", write_at, va, true);

  if (boot_nx) {
    frame[0] = 0xc3; /* RET */
    map_page(VA, (uint64_t)frame, PTE_W | PTE_NX);
    expect_pf("fetch from an execute-disable page", call_at, va, false, PFEC_P | PFEC_I);
    map_page(VA, (uint64_t)frame, PTE_W);
    expect_ok("fetch from the same page without XD", call_at, va, false);
    unmap_page(VA);
    expect_pf("fetch from a not-present page (NXE = 1: I/D set)", call_at, va, false, PFEC_I);
  } else {
    report_skip("execute-disable", "CPUID.80000001H:EDX.NX is clear");
  }

  /* A reserved bit: an address bit at or above MAXPHYADDR (SDM 4.5.4, Table 4-19). */
  unsigned maxphy = phys_addr_bits();
  if (maxphy < 52) {
    map_page(VA, (uint64_t)frame | (1ull << maxphy), PTE_W);
    expect_pf("a PTE with a reserved address bit set", read_at, va, false, PFEC_P | PFEC_RSVD);
  } else {
    report_skip("reserved-bit #PF", "MAXPHYADDR is 52: no reserved address bits");
  }
  /* PS in a PML4 entry is reserved too. */
  uint64_t* pml4 = (uint64_t*)(uintptr_t)(read_cr3() & PTE_ADDR_MASK);
  map_page(VA, (uint64_t)frame, PTE_W);
  uint64_t saved = pml4[(VA >> 39) & 511];
  pml4[(VA >> 39) & 511] = saved | PTE_PS;
  write_cr3(read_cr3());
  expect_pf("a PML4 entry with PS set (reserved)", read_at, va, false, PFEC_P | PFEC_RSVD);
  pml4[(VA >> 39) & 511] = saved;
  write_cr3(read_cr3());
  unmap_page(VA);
}

static void check_accessed_dirty(void) {
  uint8_t* frame = page_alloc();
  map_page(VA, (uint64_t)frame, PTE_W);
  volatile uint64_t* pte = get_pte(VA);
  check_eq("a fresh PTE has A and D clear", *pte & (PTE_A | PTE_D), 0);
  read_at((void*)VA);
  check_eq("a read sets A, not D", *pte & (PTE_A | PTE_D), PTE_A);
  write_at((void*)VA);
  check_eq("a write sets D", *pte & (PTE_A | PTE_D), PTE_A | PTE_D);
  unmap_page(VA);
}

static void check_tlb(void) {
  uint64_t* a = page_alloc();
  uint64_t* b = page_alloc();
  a[0] = 0xaaaa;
  b[0] = 0xbbbb;
  volatile uint64_t* v = (volatile uint64_t*)VA;
  map_page(VA, (uint64_t)a, PTE_W);
  check_eq("a new mapping reads its frame", v[0], 0xaaaa);
  *get_pte(VA) = (uint64_t)b | PTE_P | PTE_W; /* remap without invalidating ... */
  invlpg((void*)VA);                           /* ... until INVLPG */
  check_eq("after INVLPG the new translation is used", v[0], 0xbbbb);
  *get_pte(VA) = (uint64_t)a | PTE_P | PTE_W;
  write_cr3(read_cr3());
  check_eq("after a CR3 write the new translation is used", v[0], 0xaaaa);
  v[1] = 0x5555;
  check_eq("a write through the mapping lands in its frame", a[1], 0x5555);
  unmap_page(VA);
  struct fault_info fi;
  report(trap_run(read_at, (void*)VA, &fi) == PF_VECTOR, "INVLPG after unmapping: the page faults again");

  uint64_t* c = page_alloc();
  c[0] = 0xcccc;
  map_page(VA_HIGH, (uint64_t)c, PTE_W);
  check_eq("a mapping in the upper canonical half", *(volatile uint64_t*)VA_HIGH, 0xcccc);
  /* Two linear pages on one frame see each other's writes. */
  map_page(VA, (uint64_t)c, PTE_W);
  *(volatile uint64_t*)VA = 0xdddd;
  check_eq("two linear addresses of one frame alias", *(volatile uint64_t*)VA_HIGH, 0xdddd);
  unmap_page(VA);
  unmap_page(VA_HIGH);
}

static void check_large_pages(void) {
  /* 2 MiB page onto the first 2 MiB of RAM: its offset 0x100000 is this image's start. */
  map_large_page(VA_LARGE, 0, 2, PTE_W);
  check_eq("a 2 MiB page translates its offset", *(volatile uint32_t*)(VA_LARGE + 0x100000),
           *(volatile uint32_t*)0x100000);
  uint8_t* frame = page_alloc();
  frame[8] = 0x77;
  check_eq("a 2 MiB page reaches an offset past 1 MiB", *(volatile uint8_t*)(VA_LARGE + (uint64_t)frame + 8 - 0), 0x77);
  if ((cpuid(0x80000001).d >> 26) & 1) {
    map_large_page(VA_HUGE, 0, 3, PTE_W);
    check_eq("a 1 GiB page translates its offset", *(volatile uint8_t*)(VA_HUGE + (uint64_t)frame + 8), 0x77);
  } else {
    report_skip("1 GiB pages", "CPUID.80000001H:EDX.Page1GB is clear");
  }
}

int main(int argc, char** argv) {
  strict_rsvd = arg_u64("rsvd_p", 0);
  check_error_codes();
  check_accessed_dirty();
  check_tlb();
  check_large_pages();
  return 0;
}
