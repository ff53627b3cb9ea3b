/* Local APIC (xAPIC, memory-mapped) and I/O APIC helpers. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define LAPIC_BASE 0xfee00000ull
#define IOAPIC_BASE 0xfec00000ull

/* Local APIC registers (SDM Vol. 3 Table 11-1). */
#define APIC_ID 0x20
#define APIC_VERSION 0x30
#define APIC_TPR 0x80
#define APIC_PPR 0xa0
#define APIC_EOI 0xb0
#define APIC_LDR 0xd0
#define APIC_DFR 0xe0
#define APIC_SVR 0xf0
#define APIC_ISR 0x100
#define APIC_TMR 0x180
#define APIC_IRR 0x200
#define APIC_ESR 0x280
#define APIC_ICR_LOW 0x300
#define APIC_ICR_HIGH 0x310
#define APIC_LVT_TIMER 0x320
#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_LVT_ERROR 0x370
#define APIC_TIMER_INITIAL 0x380
#define APIC_TIMER_CURRENT 0x390
#define APIC_TIMER_DIVIDE 0x3e0

#define APIC_LVT_MASKED (1u << 16)
#define APIC_LVT_TIMER_ONESHOT (0u << 17)
#define APIC_LVT_TIMER_PERIODIC (1u << 17)
#define APIC_LVT_TIMER_TSC_DEADLINE (2u << 17)
#define APIC_DM_FIXED (0u << 8)
#define APIC_DM_NMI (4u << 8)
#define APIC_DM_INIT (5u << 8)
#define APIC_DM_STARTUP (6u << 8)
#define APIC_DM_EXTINT (7u << 8)
#define APIC_ICR_BUSY (1u << 12)
#define APIC_ICR_LEVEL_ASSERT (1u << 14)
#define APIC_ICR_LEVEL_TRIGGER (1u << 15)
#define APIC_DEST_SELF (1u << 18)
#define APIC_DEST_ALL (2u << 18)
#define APIC_DEST_ALL_BUT_SELF (3u << 18)

static inline uint32_t lapic_read(uint32_t reg) { return *(volatile uint32_t*)(LAPIC_BASE + reg); }
static inline void lapic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t*)(LAPIC_BASE + reg) = v; }
static inline uint32_t lapic_id(void) { return lapic_read(APIC_ID) >> 24; }
static inline void lapic_eoi(void) { lapic_write(APIC_EOI, 0); }

/* Software-enables this CPU's LAPIC with the spurious vector, TPR 0, and (on the BSP) LINT0 as
 * ExtINT and LINT1 as NMI: the virtual-wire mode in which the 8259's output reaches the CPU
 * (MP spec 3.6.2.2), as firmware leaves it. */
void lapic_init(bool bsp);
/* Bit `vector` of the ISR/IRR/TMR register arrays (SDM Vol. 3 11.8.4). */
bool lapic_in_service(unsigned vector);
bool lapic_requested(unsigned vector);
/* Writes ICR (destination in xAPIC physical mode) and waits for the delivery status to clear. */
void lapic_send_ipi(uint32_t dest_apic_id, uint32_t icr_low);

/* I/O APIC (82093AA data sheet 3.2). */
#define IOAPIC_REG_ID 0x00
#define IOAPIC_REG_VERSION 0x01
#define IOAPIC_REDTBL(n) (0x10 + 2 * (n))
#define IOAPIC_MASKED (1ull << 16)
#define IOAPIC_LEVEL (1ull << 15)
#define IOAPIC_REMOTE_IRR (1ull << 14)
#define IOAPIC_ACTIVE_LOW (1ull << 13)

uint32_t ioapic_read(uint32_t reg);
void ioapic_write(uint32_t reg, uint32_t v);
unsigned ioapic_pins(void);
uint64_t ioapic_read_redir(unsigned pin);
void ioapic_write_redir(unsigned pin, uint64_t entry);
/* Edge-triggered, active-high, fixed delivery of `vector` to the APIC ID `dest`, unmasked. */
void ioapic_route(unsigned pin, uint8_t vector, uint8_t dest);
void ioapic_mask(unsigned pin);
