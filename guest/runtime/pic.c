#include "runtime/pic.h"

#include "runtime/config.h"
#include "runtime/x86.h"

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xa0
#define PIC2_DATA 0xa1

void pic_init(void) {
  outb(PIC1_CMD, 0x11);  /* ICW1: edge, cascade, ICW4 needed */
  outb(PIC2_CMD, 0x11);
  outb(PIC1_DATA, PIC_VECTOR_BASE);      /* ICW2: vector base */
  outb(PIC2_DATA, PIC_VECTOR_BASE + 8);
  outb(PIC1_DATA, 0x04); /* ICW3: slave on IRQ2 */
  outb(PIC2_DATA, 0x02); /* ICW3: slave identity 2 */
  outb(PIC1_DATA, 0x01); /* ICW4: 8086 mode, normal EOI */
  outb(PIC2_DATA, 0x01);
  pic_set_mask(0xffff);
}

void pic_set_mask(uint16_t mask) {
  outb(PIC1_DATA, (uint8_t)mask);
  outb(PIC2_DATA, (uint8_t)(mask >> 8));
}

uint16_t pic_get_mask(void) { return (uint16_t)(inb(PIC1_DATA) | (inb(PIC2_DATA) << 8)); }

void pic_mask(unsigned irq) { pic_set_mask(pic_get_mask() | (uint16_t)(1u << irq)); }

void pic_unmask(unsigned irq) {
  uint16_t m = pic_get_mask() & (uint16_t)~(1u << irq);
  if (irq >= 8) m &= (uint16_t)~(1u << 2);
  pic_set_mask(m);
}

void pic_eoi(unsigned irq) {
  if (irq >= 8) outb(PIC2_CMD, 0x20);
  outb(PIC1_CMD, 0x20);
}

static uint16_t ocw3_read(uint8_t ocw3) {
  outb(PIC1_CMD, ocw3);
  outb(PIC2_CMD, ocw3);
  uint16_t v = (uint16_t)(inb(PIC1_CMD) | (inb(PIC2_CMD) << 8));
  outb(PIC1_CMD, 0x0a); /* leave the read register on IRR, its reset state */
  outb(PIC2_CMD, 0x0a);
  return v;
}

uint16_t pic_read_irr(void) { return ocw3_read(0x0a); }
uint16_t pic_read_isr(void) { return ocw3_read(0x0b); }

void pic_eoi_if_in_service(unsigned irq) {
  if (pic_read_isr() & (1u << irq)) pic_eoi(irq);
}
