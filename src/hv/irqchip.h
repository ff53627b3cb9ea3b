// What L0's vCPU loop needs from the interrupt controllers (LAPIC, IOAPIC, PIC, PIT live in
// src/hv/irqchip/), as KVM's kvm_cpu_has_interrupt / kvm_cpu_get_interrupt and friends.
#pragma once
#include <cstdint>

namespace nestvm::hv {

class IrqChip {
 public:
  virtual ~IrqChip() = default;
  // A maskable interrupt is pending for the vCPU (its LAPIC, or the PIC through LINT0 ExtINT).
  virtual bool has_interrupt(unsigned vcpu) = 0;
  // The INTA cycle: the vector to inject (marked in service), or -1 if it vanished.
  virtual int acknowledge_interrupt(unsigned vcpu) = 0;
  // Takes a pending NMI for the vCPU.
  virtual bool take_nmi(unsigned vcpu) = 0;
  // The next timer deadline of the vCPU's timers, in host TSC ticks (~0 = none), and expiry.
  virtual uint64_t next_deadline(unsigned vcpu) = 0;
  virtual void expire_timers(unsigned vcpu, uint64_t now_tsc) = 0;
  // Device interrupt lines: ISA IRQs 0-15 (PIC and IOAPIC) and IOAPIC GSIs above.
  virtual void set_irq(unsigned gsi, bool level) = 0;
  // x2APIC MSR accesses (0x800-0x8ff) and IA32_APIC_BASE writes; false: #GP.
  virtual bool msr_read(unsigned vcpu, uint32_t index, uint64_t& value) = 0;
  virtual bool msr_write(unsigned vcpu, uint32_t index, uint64_t value) = 0;
};

}  // namespace nestvm::hv
