/* Application processors: start-up through INIT-SIPI-SIPI (SDM Vol. 3 9.4.4.1 and the MP
 * specification's universal start-up algorithm) and running functions on them. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "runtime/percpu.h"

/* Starts every enabled processor the MADT lists; returns how many CPUs are online (1 if there
 * is no MADT). CPU indexes follow the MADT's order, the BSP being 0. A CPU that does not come up
 * within a second is reported as a failure and left out. */
unsigned smp_start(void);
unsigned cpu_count(void);
/* APIC IDs the MADT listed, in CPU-index order (valid after smp_start()). */
unsigned smp_expected_cpus(void);

/* Sends INIT-SIPI-SIPI to a CPU that is already running: INIT puts it back into
 * wait-for-SIPI (SDM Vol. 3 9.4.4.1), and it comes up again through the trampoline. Returns
 * whether it came back online. */
bool smp_restart(unsigned cpu);

/* Runs fn(arg) on CPU `cpu` with interrupts disabled and waits for it to return (directly if
 * cpu is the caller). */
void on_cpu(unsigned cpu, cpu_fn fn, void* arg);
void on_cpu_async(unsigned cpu, cpu_fn fn, void* arg);
void on_cpu_wait(unsigned cpu);
/* Runs fn(arg) on every online CPU at once (the caller's last) and waits for all. */
void on_all_cpus(cpu_fn fn, void* arg);
