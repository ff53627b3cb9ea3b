/* The 16550 UART on COM1 (PC16550D data sheet): registers that read back, the divisor latch
 * behind DLAB, line and interrupt status, loopback with the modem-status mapping, and its
 * interrupt (IRQ 4) end to end through the 8259 and through the I/O APIC. */
#include "runtime/acpi.h"
#include "runtime/apic.h"
#include "runtime/clock.h"
#include "runtime/libc.h"
#include "runtime/pic.h"
#include "runtime/report.h"
#include "runtime/serial.h"
#include "runtime/traps.h"
#include "runtime/x86.h"

#define VEC_PIC (PIC_VECTOR_BASE + 4)
#define VEC_IOAPIC 0x44

static uint8_t rd(int reg) { return inb(COM1 + reg); }
static void wr(int reg, uint8_t v) { outb(COM1 + reg, v); }

static void wait_transmitter_empty(void) {
  for (int i = 0; i < 1000000 && (rd(UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT)) != (UART_LSR_THRE | UART_LSR_TEMT); ++i)
    pause();
}

static void check_registers(void) {
  static const uint8_t patterns[] = {0x00, 0x55, 0xaa, 0xff, 0x5a};
  bool ok = true;
  uint8_t bad_w = 0, bad_r = 0;
  for (size_t i = 0; i < ARRAY_SIZE(patterns); ++i) {
    wr(UART_SCR, patterns[i]);
    uint8_t r = rd(UART_SCR);
    if (r != patterns[i] && ok) ok = false, bad_w = patterns[i], bad_r = r;
  }
  report_why(ok, "scratch register holds what was written", "wrote %#x, read %#x", bad_w, bad_r);

  wr(UART_IER, 0x0f);
  check_eq("IER reads back its four enable bits", rd(UART_IER), 0x0f);
  wr(UART_IER, 0xff);
  check_eq("IER bits 7:4 read as zero", rd(UART_IER), 0x0f);
  wr(UART_IER, 0x00);
  check_eq("IER cleared", rd(UART_IER), 0x00);

  wr(UART_LCR, 0x1b); /* 8 bits, 1 stop, even parity */
  check_eq("LCR reads back", rd(UART_LCR), 0x1b);
  wr(UART_LCR, 0x03 | UART_LCR_DLAB);
  wr(UART_DLL, 0x34);
  wr(UART_DLM, 0x12);
  uint8_t dll = rd(UART_DLL), dlm = rd(UART_DLM);
  wr(UART_LCR, 0x03);
  check_eq("divisor latch low reads back under DLAB", dll, 0x34);
  check_eq("divisor latch high reads back under DLAB", dlm, 0x12);
  check_eq("without DLAB, offset 1 is IER again", rd(UART_IER), 0x00);
  wr(UART_LCR, 0x03 | UART_LCR_DLAB);
  wr(UART_DLL, 0x01); /* back to 115200 baud */
  wr(UART_DLM, 0x00);
  wr(UART_LCR, 0x03);

  wait_transmitter_empty();
  uint8_t lsr = rd(UART_LSR);
  check_eq("LSR: THRE and TEMT set once the transmitter is idle", lsr & (UART_LSR_THRE | UART_LSR_TEMT),
           UART_LSR_THRE | UART_LSR_TEMT);
  check_eq("LSR: no data ready, no errors", lsr & 0x9f, 0);
  uint8_t iir = rd(UART_IIR);
  check_eq("IIR: no interrupt pending (bit 0 set)", iir & 0x0f, 0x01);
  check_eq("IIR: FIFOs enabled (bits 7:6)", iir & 0xc0, 0xc0);
  wr(UART_FCR, 0x00);
  check_eq("IIR: FIFOs disabled by FCR", rd(UART_IIR) & 0xc0, 0);
  wr(UART_FCR, 0xc7);
}

static void check_loopback(void) {
  /* Nothing can be printed while the UART is looped back: gather results first. */
  wait_transmitter_empty();
  uint8_t msr[4];
  static const uint8_t mcr_bits[4] = {0x01, 0x02, 0x04, 0x08}; /* DTR, RTS, OUT1, OUT2 */
  wr(UART_MCR, 0x10);
  (void)rd(UART_MSR); /* clear the delta bits */
  for (int i = 0; i < 4; ++i) {
    wr(UART_MCR, 0x10 | mcr_bits[i]);
    msr[i] = rd(UART_MSR) & 0xf0;
  }
  wr(UART_MCR, 0x10);
  while (rd(UART_LSR) & UART_LSR_DR) (void)rd(UART_RBR);
  static const char text[] = "nestvm";
  for (size_t i = 0; i < 6; ++i) wr(UART_THR, (uint8_t)text[i]);
  char got[7] = {0};
  uint8_t lsr_before = 0;
  for (int i = 0; i < 6; ++i) {
    for (int spin = 0; spin < 100000 && !(rd(UART_LSR) & UART_LSR_DR); ++spin) pause();
    if (i == 0) lsr_before = rd(UART_LSR);
    got[i] = (char)rd(UART_RBR);
  }
  uint8_t lsr_after = rd(UART_LSR);
  wr(UART_MCR, 0x0b);

  /* PC16550D, MCR bit 4: DTR->DSR (MSR bit 5), RTS->CTS (4), OUT1->RI (6), OUT2->DCD (7). */
  check_eq("loopback: DTR drives DSR", msr[0], 0x20);
  check_eq("loopback: RTS drives CTS", msr[1], 0x10);
  check_eq("loopback: OUT1 drives RI", msr[2], 0x40);
  check_eq("loopback: OUT2 drives DCD", msr[3], 0x80);
  report_why(lsr_before & UART_LSR_DR, "loopback: transmitted data sets LSR.DR", "LSR %#x", lsr_before);
  report_why(!strcmp(got, text), "loopback: the receiver returns the transmitted bytes in order", "got \"%s\"", got);
  report_why(!(lsr_after & UART_LSR_DR), "loopback: LSR.DR clears when the FIFO is empty", "LSR %#x", lsr_after);
}

static volatile uint32_t irq_count;
static volatile uint8_t irq_iir;
static volatile uint64_t irq_vector;

static void uart_irq(struct trap_frame* f) {
  irq_iir = rd(UART_IIR); /* reading IIR acknowledges the THR-empty interrupt */
  wr(UART_IER, 0);
  irq_vector = f->vector;
  irq_count++;
  if (f->vector == VEC_PIC) pic_eoi(4);
  else lapic_eoi();
}

static void check_thre_interrupt(const char* path, unsigned vector) {
  irq_count = 0;
  irq_vector = 0;
  irq_iir = 0;
  wait_transmitter_empty();
  sti();
  wr(UART_IER, 0x02); /* ETBEI: interrupt while THR is empty, i.e. now */
  bool got = wait_flag(&irq_count, 1000);
  cli();
  wr(UART_IER, 0);
  char name[96];
  snprintf(name, sizeof(name), "THR-empty interrupt arrives through %s", path);
  report_why(got, name, "no interrupt within 1 s");
  snprintf(name, sizeof(name), "IIR names THR empty (0x2) in the handler (%s)", path);
  check_eq(name, irq_iir & 0x0f, 0x02);
  snprintf(name, sizeof(name), "vector programmed in %s", path);
  check_eq(name, irq_vector, vector);
}

int main(int argc, char** argv) {
  check_registers();
  check_loopback();

  set_trap_handler(VEC_PIC, uart_irq);
  set_trap_handler(VEC_IOAPIC, uart_irq);
  pic_unmask(4);
  check_thre_interrupt("the 8259 (IRQ 4)", VEC_PIC);
  pic_mask(4);

  unsigned gsi = acpi_isa_irq_to_gsi(4);
  ioapic_route(gsi, VEC_IOAPIC, (uint8_t)lapic_id());
  check_thre_interrupt("the I/O APIC", VEC_IOAPIC);
  ioapic_mask(gsi);
  printf("IRQ 4 is GSI %u\n", gsi);
  return 0;
}
