/* SMP start-up as a PC does it (SDM Vol. 3 9.4.4.1; MP specification B.4): the MADT's
 * application processors start with INIT-SIPI-SIPI at the SIPI vector in real mode, reach long
 * mode through guest/runtime/trampoline.S, and then run code concurrently: each with its own APIC
 * ID, stack and per-CPU data, the BSP flag only on the BSP, and locked read-modify-writes that do
 * not lose updates. A running CPU sent INIT again comes back through another SIPI.
 * Arguments: cpus=<-smp>. */
#include "runtime/acpi.h"
#include "runtime/apic.h"
#include "runtime/libc.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/smp.h"
#include "runtime/x86.h"

struct cpu_report {
  uint32_t apic_id;
  uint64_t efer, cr0, cr3, rsp, gs_base, apic_base, svr;
};
static struct cpu_report reports[MAX_CPUS];

static void report_self(void* arg) {
  struct cpu_report* r = &reports[cpu_index()];
  r->apic_id = lapic_id();
  r->efer = rdmsr(MSR_EFER);
  r->cr0 = read_cr0();
  r->cr3 = read_cr3();
  r->rsp = read_rsp();
  r->gs_base = rdmsr(MSR_GS_BASE);
  r->apic_base = rdmsr(MSR_APIC_BASE);
  r->svr = lapic_read(APIC_SVR);
}

#define ROUNDS 200000
static volatile uint64_t locked_counter;
static volatile uint64_t cmpxchg_counter;
static volatile uint32_t start_line;

static void contend(void* arg) {
  unsigned n = *(unsigned*)arg;
  /* Start together so that the increments really overlap. */
  __atomic_add_fetch(&start_line, 1, __ATOMIC_ACQ_REL);
  while (__atomic_load_n(&start_line, __ATOMIC_ACQUIRE) < n) pause();
  for (int i = 0; i < ROUNDS; ++i) {
    __atomic_fetch_add(&locked_counter, 1, __ATOMIC_RELAXED); /* LOCK XADD */
    uint64_t old = cmpxchg_counter;
    while (!__atomic_compare_exchange_n(&cmpxchg_counter, &old, old + 1, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
  }
}

int main(int argc, char** argv) {
  unsigned want = (unsigned)arg_u64("cpus", 1);
  struct madt_info m;
  acpi_parse_madt(&m);
  unsigned n = smp_start();
  printf("%u of %u CPUs online\n", n, smp_expected_cpus());
  check_eq("every CPU the MADT lists comes online", n, m.cpus);
  check_eq("as many CPUs as -smp", n, want);

  on_all_cpus(report_self, NULL);
  uint64_t bsp_cr3 = read_cr3();
  for (unsigned c = 0; c < n; ++c) {
    struct cpu_report* r = &reports[c];
    struct percpu* p = &percpu_area[c];
    char name[96];
    printf("CPU %u: APIC ID %u, EFER %#lx, RSP %#lx\n", c, r->apic_id, r->efer, r->rsp);
    snprintf(name, sizeof(name), "CPU %u: APIC ID is the MADT's entry for it", c);
    check_eq(name, r->apic_id, p->apic_id);
    snprintf(name, sizeof(name), "CPU %u: in long mode (EFER.LMA) with paging (CR0.PG)", c);
    report(((r->efer & EFER_LMA) != 0) && ((r->cr0 & CR0_PG) != 0), "%s", name);
    snprintf(name, sizeof(name), "CPU %u: on the shared page tables", c);
    check_eq(name, r->cr3, bsp_cr3);
    snprintf(name, sizeof(name), "CPU %u: per-CPU data through GS", c);
    check_eq(name, r->gs_base, (uint64_t)p);
    if (c > 0) {
      snprintf(name, sizeof(name), "CPU %u: runs on its own stack", c);
      report_why(r->rsp > (uint64_t)p->stack && r->rsp <= (uint64_t)&p->stack[KERNEL_STACK_SIZE], name, "RSP %#lx",
                 r->rsp);
    }
    snprintf(name, sizeof(name), "CPU %u: IA32_APIC_BASE.BSP is %s", c, c ? "clear" : "set");
    check_eq(name, (r->apic_base >> 8) & 1, c == 0);
    snprintf(name, sizeof(name), "CPU %u: LAPIC software-enabled", c);
    check_eq(name, (r->svr >> 8) & 1, 1);
  }
  bool unique = true;
  for (unsigned i = 0; i < n; ++i)
    for (unsigned j = 0; j < i; ++j) unique = unique && reports[i].apic_id != reports[j].apic_id;
  report(unique, "APIC IDs are unique");

  on_all_cpus(contend, &n);
  check_eq("LOCK XADD from every CPU loses no update", locked_counter, (uint64_t)ROUNDS * n);
  check_eq("LOCK CMPXCHG loops from every CPU lose no update", cmpxchg_counter, (uint64_t)ROUNDS * n);

  if (n >= 2) {
    unsigned last = n - 1;
    uint32_t id = percpu_area[last].apic_id;
    bool back = smp_restart(last);
    report(back, "CPU %u (APIC ID %u) restarts after another INIT-SIPI-SIPI", last, id);
    if (back) {
      memset(&reports[last], 0, sizeof(reports[last]));
      on_cpu(last, report_self, NULL);
      check_eq("the restarted CPU runs code again", reports[last].apic_id, id);
    }
  }
  return 0;
}
