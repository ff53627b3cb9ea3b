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
  // An NMI is pending for the vCPU (it stays pending), and taking it for injection.
  virtual bool has_nmi(unsigned vcpu) { (void)vcpu; return false; }
  virtual bool take_nmi(unsigned vcpu) = 0;
  // The next timer deadline of the vCPU's timers, in host TSC ticks (~0 = none), and expiry.
  virtual uint64_t next_deadline(unsigned vcpu) = 0;
  virtual void expire_timers(unsigned vcpu, uint64_t now_tsc) = 0;
  // Device interrupt lines: ISA IRQs 0-15 (PIC and IOAPIC) and IOAPIC GSIs above.
  virtual void set_irq(unsigned gsi, bool level) = 0;
  // x2APIC MSR accesses (0x800-0x8ff), IA32_APIC_BASE and IA32_TSC_DEADLINE; false: #GP.
  virtual bool msr_read(unsigned vcpu, uint32_t index, uint64_t& value) = 0;
  virtual bool msr_write(unsigned vcpu, uint32_t index, uint64_t value) = 0;
  // The vCPU took an INIT (init = true; SDM §11.4.7.3) or a power-on reset: its local APIC
  // returns to its reset state (KVM's kvm_lapic_reset). Called on the vCPU's thread.
  virtual void reset_vcpu(unsigned vcpu, bool init) { (void)vcpu; (void)init; }
};

}  // namespace nestvm::hv
