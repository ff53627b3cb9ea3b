/* The two cascaded 8259A PICs (master 0x20/0x21, slave 0xa0/0xa1, slave on IRQ2). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

/* ICW1-ICW4: edge-triggered, vectors PIC_VECTOR_BASE + 0..15, every IRQ masked. */
void pic_init(void);
void pic_mask(unsigned irq);
void pic_unmask(unsigned irq); /* also unmasks the cascade for IRQ 8-15 */
void pic_set_mask(uint16_t mask);
uint16_t pic_get_mask(void);
/* Non-specific EOI to the slave (IRQ 8-15) and the master. */
void pic_eoi(unsigned irq);
void pic_eoi_if_in_service(unsigned irq);
/* OCW3 reads: interrupt request and in-service registers, slave in the high byte. */
uint16_t pic_read_irr(void);
uint16_t pic_read_isr(void);
