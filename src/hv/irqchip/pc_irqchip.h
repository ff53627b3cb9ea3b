// The interrupt controllers and timers of a PC, in L0 as KVM has them ("in-kernel irqchip"):
// a local APIC per vCPU, one I/O APIC, the 8259 PIC pair and the 8254 PIT, and the wiring
// between them (KVM's irq_comm.c and QEMU's PC interrupt routing):
// - ISA IRQ n goes to PIC input n and to I/O APIC pin n, except IRQ0 (the PIT), which reaches
//   pin 2 as on PCs with an interrupt-source override (the MADT says so); IRQ2 is the cascade.
//   GSIs 16-23 reach only the I/O APIC.
// - The PIC's INTR output reaches LINT0 of every LAPIC programmed for ExtINT (virtual-wire
//   mode; the BSP's LINT0 is ExtINT at reset, as KVM and QEMU set it for the missing BIOS).
// - The I/O APIC and the ICRs send messages on the APIC bus (deliver()).
// Time: every deadline is in host TSC ticks (hv/clock.h). Each vCPU's loop services its own
// LAPIC timer; vCPU 0's loop also services the PIT (its deadline joins vCPU 0's).
// Locks: the PIC, the I/O APIC and the PIT have one mutex each, never nested; a vCPU is kicked
// (Vcpu::kick takes the vCPU's mutex, a leaf) with them held or not. The vCPU's own paths
// (LAPIC registers, has_interrupt, acknowledge, timers) take none but the PIC's on an ExtINT.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "hv/io_bus.h"
#include "hv/irqchip.h"
#include "hv/irqchip/ioapic.h"
#include "hv/irqchip/lapic.h"
#include "hv/irqchip/pic.h"
#include "hv/irqchip/pit.h"

namespace nestvm::hv {

class Vm;
class Vcpu;

class PcIrqChip : public IrqChip, private LocalMmioDevice {
 public:
  // Registers the PIC (0x20, 0xa0, 0x4d0), the PIT (0x40-0x43, 0x61), the I/O APIC
  // (0xfec00000) and the LAPIC page (per vCPU at its IA32_APIC_BASE) on vm.io().
  explicit PcIrqChip(Vm& vm);
  ~PcIrqChip() override;
  PcIrqChip(const PcIrqChip&) = delete;
  PcIrqChip& operator=(const PcIrqChip&) = delete;

  // ---- hv::IrqChip -----------------------------------------------------------------------
  bool has_interrupt(unsigned vcpu) override;
  int acknowledge_interrupt(unsigned vcpu) override;
  bool has_nmi(unsigned vcpu) override;
  bool take_nmi(unsigned vcpu) override;
  uint64_t next_deadline(unsigned vcpu) override;
  void expire_timers(unsigned vcpu, uint64_t now_tsc) override;
  void set_irq(unsigned gsi, bool level) override;
  bool msr_read(unsigned vcpu, uint32_t index, uint64_t& value) override;
  bool msr_write(unsigned vcpu, uint32_t index, uint64_t value) override;
  void reset_vcpu(unsigned vcpu, bool init) override;

  // ---- the parts -------------------------------------------------------------------------
  Vm& vm() { return vm_; }
  Lapic& lapic(unsigned vcpu) { return *lapics_[vcpu]; }
  Ioapic& ioapic() { return ioapic_; }
  Pic& pic() { return pic_; }
  Pit& pit() { return pit_; }

  // The APIC bus (KVM's kvm_irq_delivery_to_apic): a message from a LAPIC's ICR (`source`) or
  // from the I/O APIC (nullptr) to every enabled LAPIC it names; lowest-priority messages go
  // to one of them, chosen by vector as KVM's vector hashing does.
  unsigned deliver(const Lapic* source, const ApicIrq& irq);  // how many APICs took it
  // The EOI of a level-triggered vector, broadcast to the I/O APIC (KVM's
  // kvm_ioapic_update_eoi).
  void eoi_level(uint8_t vector) { ioapic_.eoi(vector); }
  // The PIC's INTR rose: kick the vCPUs whose LINT0 takes it.
  void pic_intr_raised();
  // NMI on every processor's LINT1 (QEMU's "nmi" monitor command); a processor whose APIC is
  // disabled takes it directly.
  void inject_nmi();
  // Makes the vCPU look at its events, unless it is the calling thread's own (its loop looks
  // anyway, and kicking itself would only cost a VM exit).
  void kick(Vcpu& vcpu);
  // vCPU 0 services the PIT: tell it when the PIT deadline moved earlier.
  void pit_deadline_changed();

  // The clock every timer reads: the host TSC, or a fake one in tests.
  using ClockFn = uint64_t (*)();
  void set_clock(ClockFn fn) { clock_ = fn; }
  uint64_t now() const { return clock_(); }

 private:
  bool local_mmio_read(uint64_t gpa, unsigned size, uint64_t& value) override;
  bool local_mmio_write(uint64_t gpa, unsigned size, uint64_t value) override;
  Lapic* running_lapic();

  Vm& vm_;
  ClockFn clock_;
  std::vector<std::unique_ptr<Lapic>> lapics_;
  Ioapic ioapic_;
  Pic pic_;
  Pit pit_;
};

}  // namespace nestvm::hv
