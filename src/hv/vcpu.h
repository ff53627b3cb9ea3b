// A virtual CPU, as KVM's struct kvm_vcpu on VMX: the silicon (cpu::Cpu) running L1 under
// vmcs01, and the loop "inject pending events, enter, handle the exit, repeat" on a host thread
// of its own. Exit handlers (exit_handlers.cpp) form a table indexed by exit reason.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "arch/vmcs.h"
#include "cpu/cpu.h"
#include "hv/stats.h"

namespace nestvm::hv {

class Vm;
class Emulator;

class Vcpu {
 public:
  Vcpu(Vm& vm, unsigned index);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  unsigned index() const { return index_; }
  Vm& vm() { return vm_; }
  cpu::Cpu& core() { return core_; }
  VcpuStats& stats() { return stats_; }
  cpu::VmcsRegion& vmcs() { return core_.current_vmcs(); }
  Emulator& emulator() { return *emulator_; }

  // The state L1 starts in (loaders set the BSP's; SMP bring-up sets an AP's at SIPI).
  void set_initial_state(const cpu::CpuState& s);
  // Application processors wait for INIT-SIPI-SIPI before running (SMP).
  void set_wait_for_sipi(bool wait) { wait_for_sipi_ = wait; }

  // Guest registers while handling an exit: GPRs stay in the silicon, RSP/RIP/RFLAGS/CRs in
  // vmcs01.
  uint64_t reg(cpu::Gpr r);
  void set_reg(cpu::Gpr r, uint64_t v);
  uint64_t vmread(arch::VmcsField f) { return vmcs().read(f); }
  void vmwrite(arch::VmcsField f, uint64_t v) { vmcs().write(f, v); }
  void skip_instruction();
  // Queues an exception for L1 (delivered at the next VM entry).
  void inject_exception(uint8_t vector, bool has_error = false, uint32_t error = 0);
  // Guest-visible CR0 and CR4 (read shadows merged for L0-owned bits).
  uint64_t guest_cr0();
  uint64_t guest_cr4();

  // From any thread: make the vCPU look at its pending events soon (an external-interrupt exit
  // if it is in the guest, a wake-up if it is halted).
  void kick();
  void deliver_init();
  void deliver_sipi(uint8_t vector);

  // HLT: waits until an interrupt L1 can take, an NMI, a timer, or the VM stops.
  void halt();

  // The thread body: runs until the VM stops.
  void run();

 private:
  void setup_vmcs01();
  void inject_pending_event();
  void reinject_idt_vectoring();
  bool wait_sipi();
  void arm_preemption_timer();

  Vm& vm_;
  unsigned index_;
  cpu::Cpu core_;
  VcpuStats stats_;
  std::unique_ptr<Emulator> emulator_;
  uint64_t vmcs_hpa_ = 0;
  uint64_t msr_bitmap_hpa_ = 0;
  bool launched_ = false;
  bool wait_for_sipi_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> kicked_{false};
  std::atomic<int> sipi_vector_{-1};
  std::atomic<bool> init_pending_{false};
};

// CR0/CR4 bits L0 owns in vmcs01 (guest/host masks): VMX operation needs CR0.NE=1 and
// CR4.VMXE=1 whatever L1 wants (IA32_VMX_CR0/CR4_FIXED0); L1 sees its own values in the shadows.
inline constexpr uint64_t kL0OwnedCr0 = 1ull << 5;   // NE
inline constexpr uint64_t kL0OwnedCr4 = 1ull << 13;  // VMXE

}  // namespace nestvm::hv
