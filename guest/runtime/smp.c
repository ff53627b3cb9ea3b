#include "runtime/smp.h"

#include "runtime/acpi.h"
#include "runtime/apic.h"
#include "runtime/clock.h"
#include "runtime/desc.h"
#include "runtime/libc.h"
#include "runtime/report.h"
#include "runtime/x86.h"

extern const uint8_t ap_trampoline[], ap_trampoline_end[], ap_trampoline_data[];
extern const uint8_t gdt[];
extern const struct {
  uint16_t limit;
  uint64_t base;
} __attribute__((packed)) gdt_descriptor;
void ap_start64(void);

/* Mirrors the data block at the end of trampoline.S. */
struct ap_trampoline_data {
  uint16_t gdt_limit;
  uint32_t gdt_base;
  uint16_t pad;
  uint32_t cr0, cr3, cr4, efer;
  uint64_t stack;
  uint64_t entry;
} __attribute__((packed));
_Static_assert(sizeof(struct ap_trampoline_data) == 40, "trampoline.S layout");

static volatile unsigned online_cpus = 1;
static unsigned expected_cpus = 1;
static volatile unsigned booting_index;

unsigned cpu_count(void) { return online_cpus; }
unsigned smp_expected_cpus(void) { return expected_cpus; }

void ap_main(void) {
  struct percpu* p = &percpu_area[booting_index];
  cpu_tables_init(p);
  lapic_init(false);
  p->apic_id = lapic_id();
  __atomic_store_n(&p->online, 1, __ATOMIC_RELEASE);
  for (;;) {
    cli();
    cpu_fn fn = p->call_fn;
    if (fn) {
      p->call_fn = NULL;
      fn(p->call_arg);
      cli();
      __atomic_store_n(&p->call_done, 1, __ATOMIC_RELEASE);
      continue;
    }
    safe_halt(); /* an on_cpu() request arrives with VECTOR_CALL_FUNCTION */
  }
}

static bool start_ap(unsigned index, uint8_t apic_id) {
  struct percpu* p = &percpu_area[index];
  p->cpu = index;
  struct ap_trampoline_data* d = (void*)(uintptr_t)(AP_TRAMPOLINE_BASE + (ap_trampoline_data - ap_trampoline));
  d->stack = (uint64_t)&p->stack[KERNEL_STACK_SIZE];
  booting_index = index;
  barrier();
  lapic_send_ipi(apic_id, APIC_DM_INIT | APIC_ICR_LEVEL_ASSERT);
  mdelay(10);
  for (int sipi = 0; sipi < 2 && !p->online; ++sipi) {
    lapic_send_ipi(apic_id, APIC_DM_STARTUP | (AP_TRAMPOLINE_BASE >> 12));
    udelay(200);
  }
  uint64_t end = now_us() + 1000000;
  while (!__atomic_load_n(&p->online, __ATOMIC_ACQUIRE) && now_us() < end) pause();
  return p->online;
}

unsigned smp_start(void) {
  struct madt_info m;
  if (!acpi_parse_madt(&m)) {
    report_fail("smp start-up", "no MADT: cannot find the application processors");
    return 1;
  }
  memcpy((void*)(uintptr_t)AP_TRAMPOLINE_BASE, ap_trampoline, (size_t)(ap_trampoline_end - ap_trampoline));
  struct ap_trampoline_data* d = (void*)(uintptr_t)(AP_TRAMPOLINE_BASE + (ap_trampoline_data - ap_trampoline));
  d->gdt_limit = gdt_descriptor.limit;
  d->gdt_base = (uint32_t)(uintptr_t)gdt;
  d->cr0 = (uint32_t)read_cr0();
  d->cr3 = (uint32_t)read_cr3();
  d->cr4 = (uint32_t)read_cr4();
  d->efer = (uint32_t)(rdmsr(MSR_EFER) & (EFER_LME | EFER_NXE));
  d->entry = (uint64_t)ap_start64;
  expected_cpus = m.cpus;
  uint32_t self = lapic_id();
  unsigned index = 1;
  for (unsigned i = 0; i < m.cpus && index < MAX_CPUS; ++i) {
    if (m.apic_ids[i] == self) continue;
    if (start_ap(index, m.apic_ids[i])) {
      ++index;
      online_cpus = index;
    } else {
      report_fail("smp start-up", "the CPU with APIC ID %u did not come up", m.apic_ids[i]);
    }
  }
  return online_cpus;
}

bool smp_restart(unsigned cpu) {
  if (cpu == 0 || cpu >= online_cpus) return false;
  struct percpu* p = &percpu_area[cpu];
  __atomic_store_n(&p->online, 0, __ATOMIC_RELEASE);
  return start_ap(cpu, (uint8_t)p->apic_id);
}

void on_cpu_async(unsigned cpu, cpu_fn fn, void* arg) {
  struct percpu* p = &percpu_area[cpu];
  p->call_arg = arg;
  p->call_done = 0;
  __atomic_store_n(&p->call_fn, fn, __ATOMIC_RELEASE);
  lapic_send_ipi(p->apic_id, APIC_DM_FIXED | VECTOR_CALL_FUNCTION);
}

void on_cpu_wait(unsigned cpu) {
  struct percpu* p = &percpu_area[cpu];
  while (!__atomic_load_n(&p->call_done, __ATOMIC_ACQUIRE)) pause();
}

void on_cpu(unsigned cpu, cpu_fn fn, void* arg) {
  if (cpu == cpu_index()) {
    uint64_t f = irq_save();
    fn(arg);
    irq_restore(f);
    return;
  }
  on_cpu_async(cpu, fn, arg);
  on_cpu_wait(cpu);
}

void on_all_cpus(cpu_fn fn, void* arg) {
  unsigned self = cpu_index();
  for (unsigned c = 0; c < online_cpus; ++c)
    if (c != self) on_cpu_async(c, fn, arg);
  on_cpu(self, fn, arg);
  for (unsigned c = 0; c < online_cpus; ++c)
    if (c != self) on_cpu_wait(c);
}
