/* The minivisor: a small L1 hypervisor on the test-guest runtime. It boots the kernel nestvm
 * hands over (loader.h) as L2 on every processor, with an EPT12 that is the identity except for
 * its own pages (ept.c), and intercepts nothing it can avoid: L2 reaches nestvm's devices, MSRs and interrupts
 * through L0. See guest/minivisor/main.c for the start-up, vcpu.c for the VMCS and the exits. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "minivisor/loader.h"
#include "minivisor/vmx.h"

/* isa-debug-exit values the minivisor stops with (nestvm's and QEMU's status: value * 2 + 1),
 * distinct from the test guests' 0 (pass) and 1 (fail). Without the device it triple-faults,
 * which nestvm reports as status 4. */
#define MINIVISOR_EXIT_L2_TRIPLE_FAULT 0x7a /* status 245: L2 triple-faulted */
#define MINIVISOR_EXIT_ERROR 0x7b           /* status 247: the minivisor could not go on */

/* What every vCPU shares. */
struct minivisor {
  struct mvl_boot boot; /* how L2's bootstrap processor starts */
  uint64_t eptp;
  uint64_t io_bitmap_a, io_bitmap_b, msr_bitmap;
  uint32_t revision;
  uint64_t cr0_fixed0, cr0_fixed1, cr4_fixed0, cr4_fixed1;
  uint32_t pin, proc, proc2, exit, entry; /* control values, before IA-32e mode guest */
};
extern struct minivisor mv;

struct vcpu {
  unsigned index;
  bool bsp;
  uint64_t vmxon_region, vmcs; /* physical addresses (L1 is identity-mapped) */
  struct guest_regs regs;
  bool launched;
  volatile bool ready;
};

/* A zeroed page from the minivisor's RAM. */
uint64_t page_alloc_mv(void);

/* Prints why and stops the machine through isa-debug-exit with `code`. */
void minivisor_stop(uint32_t code, const char* fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* Checks VMX and reads the capabilities into mv (on the BSP, once); false with a message. */
bool vmx_probe(void);
/* This processor into VMX root operation (FEATURE_CONTROL, CR0/CR4 fixed bits, VMXON). */
void vmx_enable(struct vcpu* v);
/* Sets up v's VMCS for L2 and runs L2 on this processor forever. */
void vcpu_run(struct vcpu* v) __attribute__((noreturn));

/* EPT12 over [0, top) as ept.c describes, the minivisor's own pages being [1 MiB, window_end)
 * (2 MiB-aligned); L2's RAM write-back, the rest uncached. Returns the EPTP. */
uint64_t ept_build(const struct mvl_handover* h, uint64_t window_end, uint64_t top);
