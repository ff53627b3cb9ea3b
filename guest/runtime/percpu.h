/* Per-CPU state, reached through the GS base (MSR_GS_BASE points at the CPU's struct percpu). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "runtime/config.h"

/* The 64-bit TSS (SDM Vol. 3 8.7, Figure 8-11). */
struct tss64 {
  uint32_t reserved0;
  uint64_t rsp[3];
  uint64_t ist[8]; /* ist[1..7] are IST1..IST7; ist[0] is the reserved quadword before IST1 */
  uint64_t reserved1;
  uint16_t reserved2;
  uint16_t iomap_base;
} __attribute__((packed));
_Static_assert(sizeof(struct tss64) == 104, "TSS layout");
_Static_assert(offsetof(struct tss64, ist[1]) == 36, "TSS layout: IST1 at byte 36");

/* What the last exception caught by catch_call() looked like. */
struct fault_info {
  uint64_t vector;
  uint64_t error_code;
  uint64_t rip;
  uint64_t cr2;
  uint64_t cs;
  uint64_t rsp;
  uint64_t frame; /* where the processor pushed its frame: the stack the handler ran on */
};

typedef void (*cpu_fn)(void* arg);

struct percpu {
  struct percpu* self;          /* PERCPU_SELF */
  uint64_t catch_rsp;           /* PERCPU_CATCH_RSP: nonzero while catch_call() runs */
  uint32_t cpu;                 /* index, 0 = BSP */
  uint32_t apic_id;
  volatile uint32_t online;
  struct fault_info fault;
  /* on_cpu() mailbox */
  volatile cpu_fn call_fn;
  void* volatile call_arg;
  volatile uint32_t call_done;
  struct tss64 tss __attribute__((aligned(16)));
  uint8_t stack[KERNEL_STACK_SIZE] __attribute__((aligned(16)));
  uint8_t ist_stack[3][IST_STACK_SIZE] __attribute__((aligned(16))); /* IST1..IST3 */
  uint8_t rsp0_stack[IST_STACK_SIZE] __attribute__((aligned(16)));
};
_Static_assert(offsetof(struct percpu, self) == PERCPU_SELF, "percpu layout");
_Static_assert(offsetof(struct percpu, catch_rsp) == PERCPU_CATCH_RSP, "percpu layout");

extern struct percpu percpu_area[MAX_CPUS];

static inline struct percpu* this_cpu(void) {
  struct percpu* p;
  __asm__ volatile("mov %%gs:0, %0" : "=r"(p));
  return p;
}
static inline unsigned cpu_index(void) { return this_cpu()->cpu; }
static inline uint64_t ist_stack_top(struct percpu* p, int ist) {
  return (uint64_t)&p->ist_stack[ist - 1][IST_STACK_SIZE];
}
