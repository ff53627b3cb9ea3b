/* GDT, TSS and IDT of the runtime (one GDT and IDT shared by all CPUs, one TSS per CPU). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "runtime/percpu.h"

/* Loads the GDT, this CPU's TSS (RSP0 and IST stacks from its percpu) and the IDT, and points
 * GS at the percpu. */
void cpu_tables_init(struct percpu* p);

/* Gate attributes: every gate is a 64-bit interrupt gate (IF cleared on entry). */
void idt_set_dpl(int vector, int dpl);
/* ist 0 means the current stack; 1..3 the CPU's IST stacks (SDM Vol. 3 6.14.5). */
void idt_set_ist(int vector, int ist);
/* Clears or sets the gate's P bit (a not-present gate raises #NP, SDM Vol. 3 6.12.1.1). */
void idt_set_present(int vector, bool present);
