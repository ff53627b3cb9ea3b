/* Interprocessor interrupts through the local APIC (SDM Vol. 3 11.6, 11.8): self-IPIs by
 * shorthand and by destination, IRR/ISR/EOI bookkeeping, priority order among pending vectors,
 * the TPR holding back a lower class, fixed IPIs to one other CPU in physical and in flat
 * logical mode, the all-excluding-self and all-including-self shorthands, and NMI IPIs.
 * Needs -smp 2 or more for the cross-CPU checks. */
#include "runtime/apic.h"
#include "runtime/clock.h"
#include "runtime/libc.h"
#include "runtime/report.h"
#include "runtime/smp.h"
#include "runtime/traps.h"
#include "runtime/x86.h"

#define VEC_SELF 0x60
#define VEC_LOW 0x61
#define VEC_HIGH 0x91
#define VEC_REMOTE 0x62

static volatile uint32_t hits[MAX_CPUS];
static volatile uint32_t nmis[MAX_CPUS];
static volatile uint32_t order[4];
static volatile uint32_t order_n;
static volatile bool isr_seen;

static void self_handler(struct trap_frame* f) {
  isr_seen = lapic_in_service(VEC_SELF);
  hits[cpu_index()]++;
  lapic_eoi();
}

static void order_handler(struct trap_frame* f) {
  if (order_n < 4) order[order_n++] = (uint32_t)f->vector;
  lapic_eoi();
}

static void remote_handler(struct trap_frame* f) {
  __atomic_add_fetch(&hits[cpu_index()], 1, __ATOMIC_RELAXED);
  lapic_eoi();
}

static void nmi_handler(struct trap_frame* f) { __atomic_add_fetch(&nmis[cpu_index()], 1, __ATOMIC_RELAXED); }

/* Waits until `total` deliveries were counted over all CPUs (or a second passed), then a little
 * longer so that a duplicate would show. */
static void wait_hits(unsigned total) {
  uint64_t end = now_us() + 1000000;
  for (;;) {
    unsigned sum = 0;
    for (int i = 0; i < MAX_CPUS; ++i) sum += hits[i];
    if (sum >= total || now_us() > end) break;
    pause();
  }
  mdelay(2);
}

static void clear_hits(void) {
  for (int i = 0; i < MAX_CPUS; ++i) hits[i] = nmis[i] = 0;
}

static void check_self_ipi(void) {
  clear_hits();
  lapic_send_ipi(0, APIC_DEST_SELF | APIC_DM_FIXED | VEC_SELF);
  report(!(lapic_read(APIC_ICR_LOW) & APIC_ICR_BUSY), "ICR delivery status is idle after sending");
  report(lapic_requested(VEC_SELF), "self-IPI with IF = 0 waits in the IRR");
  report(!lapic_in_service(VEC_SELF), "self-IPI with IF = 0 is not in service yet");
  check_eq("self-IPI with IF = 0 is not delivered", hits[0], 0);
  sti();
  wait_flag(&hits[0], 1000);
  cli();
  check_eq("self-IPI (shorthand) is delivered once when IF = 1", hits[0], 1);
  report(isr_seen, "the vector is in service while its handler runs");
  report(!lapic_in_service(VEC_SELF) && !lapic_requested(VEC_SELF), "EOI clears the in-service bit");

  clear_hits();
  lapic_send_ipi(lapic_id(), APIC_DM_FIXED | VEC_SELF);
  sti();
  wait_flag(&hits[0], 1000);
  cli();
  check_eq("IPI to our own APIC ID (no shorthand) is delivered", hits[0], 1);
}

static void check_priority(void) {
  order_n = 0;
  lapic_send_ipi(0, APIC_DEST_SELF | APIC_DM_FIXED | VEC_LOW);
  lapic_send_ipi(0, APIC_DEST_SELF | APIC_DM_FIXED | VEC_HIGH);
  sti();
  wait_count(&order_n, 2, 1000);
  cli();
  report_why(order_n == 2 && order[0] == VEC_HIGH && order[1] == VEC_LOW,
             "pending vectors are delivered highest first (0x91 before 0x61)", "%u delivered: %#x %#x", order_n,
             order[0], order[1]);

  /* TPR class 7 holds back a class-6 vector until it is lowered (SDM 11.8.3.1). */
  clear_hits();
  lapic_write(APIC_TPR, 0x70);
  lapic_send_ipi(0, APIC_DEST_SELF | APIC_DM_FIXED | VEC_SELF);
  sti();
  mdelay(2);
  cli();
  check_eq("TPR 0x70 blocks vector 0x60", hits[0], 0);
  check_eq("PPR follows TPR when nothing is in service", lapic_read(APIC_PPR) & 0xf0, 0x70);
  report(lapic_requested(VEC_SELF), "the blocked vector stays in the IRR");
  lapic_write(APIC_TPR, 0);
  sti();
  wait_flag(&hits[0], 1000);
  cli();
  check_eq("lowering the TPR delivers it", hits[0], 1);
}

static void set_logical_id(void* arg) {
  lapic_write(APIC_DFR, 0xffffffffu); /* flat model */
  lapic_write(APIC_LDR, (1u << cpu_index()) << 24);
}

static void check_cross_cpu(unsigned n) {
  if (n < 2) {
    report_fail("IPIs between CPUs", "only %u CPU online", n);
    return;
  }
  clear_hits();
  lapic_send_ipi(percpu_area[1].apic_id, APIC_DM_FIXED | VEC_REMOTE);
  bool got = wait_flag(&hits[1], 1000);
  report(got, "fixed IPI to CPU 1 by APIC ID arrives there");
  mdelay(2);
  check_eq("fixed IPI to CPU 1 arrives exactly once", hits[1], 1);
  check_eq("fixed IPI to CPU 1 does not reach the sender", hits[0], 0);

  on_all_cpus(set_logical_id, NULL);
  clear_hits();
  lapic_send_ipi(0x02, APIC_DM_FIXED | VEC_REMOTE | (1u << 11) /* logical */);
  got = wait_flag(&hits[1], 1000);
  mdelay(2);
  report(got && hits[0] == 0, "logical (flat) destination 0x02 reaches CPU 1 only");

  clear_hits();
  lapic_send_ipi(0, APIC_DEST_ALL_BUT_SELF | APIC_DM_FIXED | VEC_REMOTE);
  wait_hits(n - 1);
  unsigned others = 0;
  for (unsigned c = 1; c < n; ++c) others += hits[c] == 1;
  check_eq("all-excluding-self reaches every other CPU once", others, n - 1);
  check_eq("all-excluding-self skips the sender", hits[0], 0);

  clear_hits();
  lapic_send_ipi(0, APIC_DEST_ALL | APIC_DM_FIXED | VEC_REMOTE);
  sti();
  wait_hits(n);
  cli();
  unsigned all = 0;
  for (unsigned c = 0; c < n; ++c) all += hits[c] == 1;
  check_eq("all-including-self reaches every CPU once", all, n);

  clear_hits();
  lapic_send_ipi(percpu_area[1].apic_id, APIC_DM_NMI);
  got = wait_flag(&nmis[1], 1000);
  report(got && nmis[0] == 0, "NMI IPI reaches CPU 1 through vector 2");
}

int main(int argc, char** argv) {
  set_trap_handler(VEC_SELF, self_handler);
  set_trap_handler(VEC_LOW, order_handler);
  set_trap_handler(VEC_HIGH, order_handler);
  set_trap_handler(VEC_REMOTE, remote_handler);
  set_trap_handler(NMI_VECTOR, nmi_handler);
  check_self_ipi();
  check_priority();
  unsigned n = smp_start();
  printf("%u CPUs online\n", n);
  check_cross_cpu(n);
  return 0;
}
