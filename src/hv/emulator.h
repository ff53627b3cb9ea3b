// L0's instruction emulator (KVM's x86 emulator, in nestvm's way): the guest instruction at
// RIP is executed once, outside VMX, by a processor of L0's own attached to the guest's
// physical address space (RAM through the memslots, MMIO and ports to the VM's devices), with
// the state L1 sees. Used for MMIO, string I/O, control-register writes L0 owns bits of, CPUID
// (answered from the VM's CPU model) and the other exits L0 handles by emulation.
#pragma once
#include <cstdint>

#include "cpu/cpu.h"
#include "hv/guest_phys_view.h"

namespace nestvm::hv {

class Vcpu;

class Emulator {
 public:
  explicit Emulator(Vcpu& vcpu);
  enum class Result : uint8_t {
    kDone,           // executed; vmcs01 and the registers hold the result
    kFaultInjected,  // the instruction faulted; the exception is queued for L1
    kHalted,         // it was a HLT (the caller halts the vCPU)
    kShutdown,       // emulate_block: a triple fault; emulate_one: a VMX abort reflecting to L1
    kExitToL1,       // L2's instruction met an EPT12 violation/misconfiguration: L1 has the exit
  };
  // Runs the instruction at RIP of the level the vCPU runs: L1, or L2 while in guest mode (with
  // L2's state from vmcs02 and its physical addresses through EPT12, GuestPhysView).
  Result emulate_one();
  // Runs L1 on this processor for about `budget` instructions, delivering exceptions and
  // interrupts itself: for guest state VM entry refuses, such as real mode under shadow paging
  // (KVM's emulate_invalid_guest_state). An event queued for VM entry is delivered first.
  Result emulate_block(uint64_t budget);

 private:
  class PortBus : public cpu::IoBus {
   public:
    PortBus(const IoBuses& io, Vcpu& vcpu) : io_(io), vcpu_(vcpu) {}
    uint32_t in(uint16_t port, unsigned size) override { return io_.pio_read(port, size); }
    void out(uint16_t port, unsigned size, uint32_t v) override { io_.pio_write(port, size, v); }
    int ack_interrupt() override;  // emulate_block's interrupts come from the VM's irqchip

   private:
    const IoBuses& io_;
    Vcpu& vcpu_;
  };
  void load_l1_state();
  void store_l1_state();
  Vcpu& vcpu_;
  GuestPhysView view_;
  PortBus ports_;
  cpu::Cpu cpu_;
};

}  // namespace nestvm::hv
