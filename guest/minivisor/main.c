/* The minivisor's start-up: decode nestvm's hand-over (loader.h, src/vmm/level.h), start L1's
 * processors, load L2's kernel, build EPT12, and launch one L2 vCPU per processor: L2's
 * bootstrap processor at the kernel's entry, the others waiting for L2's INIT-SIPI-SIPI. */
#include <stdarg.h>

#include "runtime/config.h"
#include "runtime/libc.h"
#include "runtime/multiboot.h"
#include "runtime/percpu.h"
#include "runtime/runtime.h"
#include "runtime/smp.h"
#include "runtime/x86.h"
#include "minivisor/minivisor.h"

#define TWO_MIB (1ull << 21)
#define HEAP_BYTES (1ull << 20) /* VMXON regions, VMCSs, bitmaps, EPT12 tables */

extern char __bss_end[];

struct minivisor mv;
static struct mvl_handover handover;
static struct vcpu vcpus[MAX_CPUS];
static uint64_t heap_next, heap_end, window_end;

void minivisor_stop(uint32_t code, const char* fmt, ...) {
  cli();
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  printf("minivisor: %s\n", line);
  outl(DEBUG_EXIT_PORT, code);
  /* No isa-debug-exit at the runtime's port: stop the machine by a triple fault. */
  static const struct {
    uint16_t limit;
    uint64_t base;
  } __attribute__((packed)) no_idt = {0, 0};
  __asm__ volatile("lidt %0; int3" : : "m"(no_idt));
  for (;;) halt();
}

uint64_t page_alloc_mv(void) {
  if (heap_next + 4096 > heap_end) minivisor_stop(MINIVISOR_EXIT_ERROR, "out of pages");
  const uint64_t p = heap_next;
  heap_next += 4096;
  memset((void*)(uintptr_t)p, 0, 4096);
  return p;
}

/* L1 memory is identity-mapped (the runtime maps 4 GiB). */
static const void* l1_ptr(void* ctx, uint64_t gpa, uint64_t len) {
  (void)ctx;
  return gpa + len <= (1ull << 32) ? (const void*)(uintptr_t)gpa : NULL;
}

/* L2 memory as EPT12 maps it (ept.c): its RAM below 4 GiB, L2's view of the minivisor's pages
 * being in L1's private RAM. Writes above 4 GiB are refused (the loader puts nothing there). */
static uint64_t l2_to_l1(uint64_t gpa) { return gpa >= 0x100000 && gpa < window_end ? handover.own_low + gpa : gpa; }

static bool l2_access(uint64_t gpa, const void* src, uint64_t len) {
  if (gpa + len < gpa || gpa + len > handover.l2_low_ram_top) return false;
  while (len) {
    /* One piece on either side of the window's edges. */
    uint64_t n = len;
    if (gpa < 0x100000 && gpa + n > 0x100000) n = 0x100000 - gpa;
    if (gpa < window_end && gpa + n > window_end) n = window_end - gpa;
    void* dst = (void*)(uintptr_t)l2_to_l1(gpa);
    if (src) memcpy(dst, src, n);
    else memset(dst, 0, n);
    gpa += n;
    src = src ? (const uint8_t*)src + n : NULL;
    len -= n;
  }
  return true;
}
static bool l2_write(void* ctx, uint64_t gpa, const void* src, uint64_t len) {
  (void)ctx;
  return l2_access(gpa, src, len);
}
static bool l2_zero(void* ctx, uint64_t gpa, uint64_t len) {
  (void)ctx;
  return l2_access(gpa, NULL, len);
}

static void ap_launch(void* arg) { vcpu_run(arg); }

int main(int argc, char** argv) {
  (void)argc;
  (void)argv;
  char error[MVL_ERROR_MAX];
  const struct mvl_l1 l1 = {NULL, l1_ptr};
  if (!mvl_handover_parse(&l1, boot_state.mbi, (uint64_t)(uintptr_t)__bss_end, &handover, error, sizeof(error)))
    minivisor_stop(MINIVISOR_EXIT_ERROR, "nestvm's hand-over: %s", error);
  /* The minivisor's pages: from 1 MiB (its image) through the modules and its heap. */
  heap_next = handover.free_low;
  heap_end = heap_next + HEAP_BYTES;
  window_end = (heap_end + TWO_MIB - 1) & ~(TWO_MIB - 1);
  if (window_end > handover.own_high - handover.own_low || window_end > handover.l2_low_ram_top)
    minivisor_stop(MINIVISOR_EXIT_ERROR, "the kernel and modules (up to %#lx) do not fit in the private RAM [%#lx, %#lx)",
                   window_end, handover.own_low, handover.own_high);
  printf("minivisor: L2 kernel %lu bytes, %u modules, command line \"%s\"\n", handover.req.kernel_size,
         handover.req.module_count, handover.cmdline);

  if (!vmx_probe()) minivisor_stop(MINIVISOR_EXIT_ERROR, "cannot run L2 without VMX");
  const unsigned cpus = smp_start();

  const struct mvl_mem mem = {NULL, l2_write, l2_zero};
  if (!mvl_load(&mem, &handover.req, &mv.boot)) minivisor_stop(MINIVISOR_EXIT_ERROR, "loading L2: %s", mv.boot.error);
  printf("minivisor: L2 loaded: %s, [%#lx, %#lx), entry %#lx\n", mv.boot.protocol, mv.boot.image_low,
         mv.boot.image_high, mv.boot.entry);

  uint64_t top = 1ull << 32;
  for (unsigned i = 0; i < handover.req.mmap_count; ++i)
    if (handover.mmap[i].addr + handover.mmap[i].len > top) top = handover.mmap[i].addr + handover.mmap[i].len;
  mv.eptp = ept_build(&handover, window_end, (top + TWO_MIB - 1) & ~(TWO_MIB - 1));
  mv.io_bitmap_a = page_alloc_mv();
  mv.io_bitmap_b = page_alloc_mv();
  mv.msr_bitmap = page_alloc_mv();
  for (unsigned c = 0; c < cpus; ++c) {
    vcpus[c].index = c;
    vcpus[c].bsp = c == 0;
    vcpus[c].vmxon_region = page_alloc_mv();
    vcpus[c].vmcs = page_alloc_mv();
  }
  /* The APs first, so that they wait for SIPI in L2 before L2's BSP sends it. */
  for (unsigned c = 1; c < cpus; ++c) {
    on_cpu_async(c, ap_launch, &vcpus[c]);
    while (!__atomic_load_n(&vcpus[c].ready, __ATOMIC_ACQUIRE)) pause();
  }
  printf("minivisor: launching L2 on %u processor%s\n", cpus, cpus == 1 ? "" : "s");
  vcpu_run(&vcpus[0]);
}
