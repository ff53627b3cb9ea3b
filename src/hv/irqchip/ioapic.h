// The I/O APIC, as KVM's struct kvm_ioapic (arch/x86/kvm/ioapic.c): 24 interrupt pins, each
// with a redirection entry (vector, delivery mode, destination, edge/level, mask), reached
// through the IOREGSEL/IOWIN window at 0xfec00000 (82093AA datasheet §3.1), sending messages to
// the local APICs. Version 0x11 (no EOI register; EOIs come as the LAPICs' broadcasts).
// Pins take the logical level of their line: asserted or not, whatever the polarity bit says,
// as KVM and QEMU model the lines.
#pragma once
#include <array>
#include <cstdint>
#include <mutex>

#include "arch/apic.h"
#include "hv/io_bus.h"

namespace nestvm::hv {

class PcIrqChip;

class Ioapic : public MmioDevice {
 public:
  static constexpr uint32_t kVersion = 0x11;

  explicit Ioapic(PcIrqChip& chip);
  void reset();

  // A device's line into pin `pin` (0-23): edge-triggered pins send on the rising edge,
  // level-triggered ones while asserted and not waiting for an EOI (remote IRR).
  void set_irq(unsigned pin, bool level);
  // A LAPIC's EOI of a level-triggered vector: clears remote IRR of the pins using it and
  // sends again for those whose line is still asserted.
  void eoi(uint8_t vector);

  uint64_t mmio_read(uint64_t gpa, unsigned size) override;
  void mmio_write(uint64_t gpa, unsigned size, uint64_t value) override;

  // The redirection entry of a pin as the guest reads it (for tests and state dumps).
  uint64_t redirection(unsigned pin);

 private:
  uint32_t read_register(unsigned index) const;
  void write_register(unsigned index, uint32_t value);
  // Sends the pin's interrupt if its entry lets it (KVM's ioapic_service). Called locked.
  void service(unsigned pin);

  PcIrqChip& chip_;
  std::mutex mu_;
  uint32_t ioregsel_ = 0;
  uint32_t id_ = 0;
  uint32_t lines_ = 0;  // the asserted input lines, one bit per pin
  std::array<uint64_t, arch::ioapic::kNumPins> redir_{};
};

}  // namespace nestvm::hv
