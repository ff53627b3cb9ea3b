#include "runtime/apic.h"

#include "runtime/config.h"
#include "runtime/x86.h"

void lapic_init(bool bsp) {
  uint64_t base = rdmsr(MSR_APIC_BASE);
  if (!(base & (1u << 11))) wrmsr(MSR_APIC_BASE, base | (1u << 11)); /* global enable */
  lapic_write(APIC_SVR, 0x100 | VECTOR_SPURIOUS);
  lapic_write(APIC_TPR, 0);
  lapic_write(APIC_LVT_TIMER, APIC_LVT_MASKED);
  lapic_write(APIC_LVT_ERROR, APIC_LVT_MASKED);
  if (bsp) {
    lapic_write(APIC_LVT_LINT0, APIC_DM_EXTINT);
    lapic_write(APIC_LVT_LINT1, APIC_DM_NMI);
  } else {
    lapic_write(APIC_LVT_LINT0, APIC_LVT_MASKED);
    lapic_write(APIC_LVT_LINT1, APIC_LVT_MASKED);
  }
}

bool lapic_in_service(unsigned vector) { return (lapic_read(APIC_ISR + (vector / 32) * 0x10) >> (vector % 32)) & 1; }

bool lapic_requested(unsigned vector) { return (lapic_read(APIC_IRR + (vector / 32) * 0x10) >> (vector % 32)) & 1; }

void lapic_send_ipi(uint32_t dest_apic_id, uint32_t icr_low) {
  uint64_t f = irq_save();
  lapic_write(APIC_ICR_HIGH, dest_apic_id << 24);
  lapic_write(APIC_ICR_LOW, icr_low);
  for (int i = 0; i < 1000000 && (lapic_read(APIC_ICR_LOW) & APIC_ICR_BUSY); ++i) pause();
  irq_restore(f);
}

uint32_t ioapic_read(uint32_t reg) {
  mmio_write32(IOAPIC_BASE, reg);
  return mmio_read32(IOAPIC_BASE + 0x10);
}

void ioapic_write(uint32_t reg, uint32_t v) {
  mmio_write32(IOAPIC_BASE, reg);
  mmio_write32(IOAPIC_BASE + 0x10, v);
}

unsigned ioapic_pins(void) { return ((ioapic_read(IOAPIC_REG_VERSION) >> 16) & 0xff) + 1; }

uint64_t ioapic_read_redir(unsigned pin) {
  uint64_t lo = ioapic_read(IOAPIC_REDTBL(pin));
  uint64_t hi = ioapic_read(IOAPIC_REDTBL(pin) + 1);
  return lo | (hi << 32);
}

void ioapic_write_redir(unsigned pin, uint64_t entry) {
  /* Mask while the halves disagree, then write the low half (with the mask bit) last. */
  ioapic_write(IOAPIC_REDTBL(pin), (uint32_t)IOAPIC_MASKED);
  ioapic_write(IOAPIC_REDTBL(pin) + 1, (uint32_t)(entry >> 32));
  ioapic_write(IOAPIC_REDTBL(pin), (uint32_t)entry);
}

void ioapic_route(unsigned pin, uint8_t vector, uint8_t dest) { ioapic_write_redir(pin, ((uint64_t)dest << 56) | vector); }

void ioapic_mask(unsigned pin) { ioapic_write_redir(pin, ioapic_read_redir(pin) | IOAPIC_MASKED); }
