/* Device interrupts end to end: the PIT's IRQ 0 through the master 8259 and the local APIC's
 * LINT0 (virtual-wire ExtINT), the 8259's IRR/ISR and mask; the same line through the I/O APIC
 * on the GSI the MADT names, to this CPU and to another one; and a level-triggered I/O APIC entry
 * (the UART's IRQ 4) with remote IRR, the TMR, and redelivery at EOI while the line stays high
 * (82093AA data sheet 3.2.4; SDM Vol. 3 11.8.4-11.8.5). */
#include "runtime/acpi.h"
#include "runtime/apic.h"
#include "runtime/clock.h"
#include "runtime/libc.h"
#include "runtime/pic.h"
#include "runtime/pit.h"
#include "runtime/report.h"
#include "runtime/serial.h"
#include "runtime/smp.h"
#include "runtime/traps.h"
#include "runtime/x86.h"

#define VEC_PIT_PIC PIC_VECTOR_BASE
#define VEC_PIT_IOAPIC 0x40
#define VEC_UART_LEVEL 0x48

static volatile uint32_t ticks[MAX_CPUS];
static volatile uint16_t isr_in_handler;

static void pit_pic_handler(struct trap_frame* f) {
  isr_in_handler = pic_read_isr();
  ticks[cpu_index()]++;
  pic_eoi(0);
}

static void pit_ioapic_handler(struct trap_frame* f) {
  __atomic_add_fetch(&ticks[cpu_index()], 1, __ATOMIC_RELAXED);
  lapic_eoi();
}

static void clear_ticks(void) {
  for (int i = 0; i < MAX_CPUS; ++i) ticks[i] = 0;
}

static void check_pic_path(void) {
  clear_ticks();
  pit_start_periodic(1000);
  mdelay(3);
  report(pic_read_irr() & 1, "a masked IRQ 0 is latched in the 8259's IRR");
  pic_unmask(0);
  uint64_t t0 = now_us();
  sti();
  bool got = wait_count(&ticks[0], 20, 2000);
  uint64_t dt = now_us() - t0;
  cli();
  report_why(got, "PIT interrupts arrive through the 8259 and LINT0", "%u in 2 s", ticks[0]);
  report_why(got && dt >= 10000, "20 ticks at 1000 Hz take at least 10 ms", "%lu us", dt);
  report_why(isr_in_handler & 1, "IRQ 0 is in service in the 8259 during its handler", "ISR %#x", isr_in_handler);
  report_why(!(pic_read_isr() & 1), "EOI to the 8259 clears it", "ISR %#x", pic_read_isr());
  pic_mask(0);
  sti();
  mdelay(2);
  uint32_t before = ticks[0];
  mdelay(20);
  uint32_t after = ticks[0];
  cli();
  check_eq("masking IRQ 0 in the 8259 stops them", after, before);
}

static void check_ioapic_path(unsigned gsi, unsigned ncpus) {
  unsigned pins = ioapic_pins();
  printf("I/O APIC: version %#x, %u pins; IRQ 0 is GSI %u\n", ioapic_read(IOAPIC_REG_VERSION) & 0xff, pins, gsi);
  check_eq("I/O APIC has 24 redirection entries", pins, 24);
  report_why(ioapic_read_redir(gsi) & IOAPIC_MASKED, "redirection entries start masked", "entry %#lx",
             ioapic_read_redir(gsi));

  clear_ticks();
  ioapic_route(gsi, VEC_PIT_IOAPIC, (uint8_t)lapic_id());
  check_eq("the redirection entry reads back", ioapic_read_redir(gsi), ((uint64_t)lapic_id() << 56) | VEC_PIT_IOAPIC);
  sti();
  bool got = wait_count(&ticks[0], 20, 2000);
  cli();
  report_why(got, "PIT interrupts arrive through the I/O APIC", "%u in 2 s", ticks[0]);
  ioapic_mask(gsi);
  sti();
  mdelay(2);
  uint32_t before = ticks[0];
  mdelay(20);
  uint32_t after = ticks[0];
  cli();
  check_eq("masking the redirection entry stops them", after, before);

  if (ncpus < 2) {
    report_fail("I/O APIC routing to another CPU", "only %u CPU online", ncpus);
    return;
  }
  clear_ticks();
  ioapic_route(gsi, VEC_PIT_IOAPIC, (uint8_t)percpu_area[1].apic_id);
  got = wait_count(&ticks[1], 20, 2000);
  ioapic_mask(gsi);
  sti();
  mdelay(2);
  cli();
  report_why(got, "an entry with CPU 1's APIC ID delivers to CPU 1", "%u on CPU 1", ticks[1]);
  check_eq("an entry with CPU 1's APIC ID does not deliver to CPU 0", ticks[0], 0);
}

static volatile uint32_t level_irqs;
static volatile uint64_t remote_irr_in_handler[2];
static volatile bool tmr_in_handler;
static unsigned uart_gsi;

static void uart_level_handler(struct trap_frame* f) {
  uint32_t n = level_irqs++;
  if (n < 2) remote_irr_in_handler[n] = ioapic_read_redir(uart_gsi) & IOAPIC_REMOTE_IRR;
  tmr_in_handler = (lapic_read(APIC_TMR + (VEC_UART_LEVEL / 32) * 0x10) >> (VEC_UART_LEVEL % 32)) & 1;
  /* The first time, leave the UART asserting its line: the EOI must bring it back. */
  if (n >= 1) outb(COM1 + UART_IER, 0);
  lapic_eoi();
}

static void check_level_triggered(void) {
  uart_gsi = acpi_isa_irq_to_gsi(4);
  level_irqs = 0;
  for (int i = 0; i < 1000000 && !(inb(COM1 + UART_LSR) & UART_LSR_TEMT); ++i) pause();
  ioapic_write_redir(uart_gsi, ((uint64_t)lapic_id() << 56) | IOAPIC_LEVEL | VEC_UART_LEVEL);
  sti();
  outb(COM1 + UART_IER, 0x02); /* THR empty: the UART holds IRQ 4 high until IIR is read or IER cleared */
  wait_count(&level_irqs, 2, 1000);
  mdelay(5);
  cli();
  outb(COM1 + UART_IER, 0);
  uint64_t entry = ioapic_read_redir(uart_gsi);
  ioapic_mask(uart_gsi);
  report(tmr_in_handler, "a level-triggered vector is set in the LAPIC's TMR");
  report(remote_irr_in_handler[0], "remote IRR is set while the level interrupt is in service");
  check_eq("EOI with the line still high delivers the interrupt again, once", level_irqs, 2);
  report_why(!(entry & IOAPIC_REMOTE_IRR), "remote IRR is clear after the last EOI", "entry %#lx", entry);
  (void)inb(COM1 + UART_IIR);
}

int main(int argc, char** argv) {
  set_trap_handler(VEC_PIT_PIC, pit_pic_handler);
  set_trap_handler(VEC_PIT_IOAPIC, pit_ioapic_handler);
  set_trap_handler(VEC_UART_LEVEL, uart_level_handler);
  unsigned ncpus = smp_start();
  check_pic_path();
  check_ioapic_path(acpi_isa_irq_to_gsi(0), ncpus);
  pit_stop();
  check_level_triggered();
  return 0;
}
