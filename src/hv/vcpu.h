// A virtual CPU, as KVM's struct kvm_vcpu on VMX: the silicon (cpu::Cpu) running L1 under
// vmcs01, and the loop "inject pending events, enter, handle the exit, repeat" on a host thread
// of its own. Exit handlers (exit_handlers.cpp) form a table indexed by exit reason.
#pragma once
#include <array>
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
struct GuestPagingState;
namespace nested {
class NestedVmx;
}

// Requests between vCPUs (KVM's KVM_REQ_*): bits in the target's mask that it services in its
// loop before it next enters the guest.
namespace req {
inline constexpr uint32_t kTlbFlush = 1u << 0;   // KVM_REQ_TLB_FLUSH: drop the silicon's cached translations
inline constexpr uint32_t kMmuReload = 1u << 1;  // KVM_REQ_MMU_RELOAD: a shadow root was zapped
}  // namespace req

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
  // Nested VMX: L1's VMX operation, its vmcs12 and L2 (hv/nested/nested_vmx.h).
  nested::NestedVmx& nested() { return *nested_; }
  // vmcs01 and its MSR bitmap (host-physical), for nested VMX's vmcs02 (L0's half of it).
  uint64_t vmcs01_hpa() const { return vmcs_hpa_; }
  uint64_t msr_bitmap01_hpa() const { return msr_bitmap_hpa_; }

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
  // L1's CR3, EFER and PDPTE registers. Under shadow paging vmcs01 holds L0's values (the
  // shadow root, EFER.NXE forced on), and L1's are kept here.
  uint64_t guest_cr3();
  uint64_t guest_efer();
  std::array<uint64_t, 4> guest_pdptes();
  // L1's paging as its control registers define it, for walks of L1's linear addresses.
  GuestPagingState guest_paging_state();
  struct ControlRegs {
    uint64_t cr0 = 0, cr3 = 0, cr4 = 0, efer = 0;
    std::array<uint64_t, 4> pdptes{};
  };
  // Installs L1's control registers, checked already (by the emulator's processor), after an
  // emulated instruction or at start-up (KVM's kvm_set_cr0/cr3/cr4 and set_efer, their
  // post-effects): vmcs01's values and read shadows, "IA-32e mode guest", and under shadow
  // paging the MMU's view of L1's paging with the TLB flushes the change implies.
  void set_control_regs(const ControlRegs& c);
  bool shadow_paging() const { return shadow_paging_; }
  // While L1 is in VMX operation L0 also owns the CR0/CR4 bits VMX fixes, so that L1's writes
  // to them exit and their restrictions hold (exit_handlers.cpp, handle_cr_access). Called when
  // L1 enters or leaves VMX operation, with vmcs01 current.
  void update_vmx_root_cr_intercepts();
  // #PF for L1 with CR2 = la, combined with an event whose delivery it interrupted (SDM §6.15).
  void inject_page_fault(uint64_t la, uint32_t error);
  // Drops this vCPU's cached translations of L1's linear addresses: all (KVM's
  // kvm_vcpu_flush_tlb_current), or those of one page.
  void flush_tlb_current();
  void flush_tlb_address(uint64_t la);
  // A #PF the shadow already allowed: true if the same fault came just before (the cached
  // translation was flushed and it still faults: L1's own fault, as the silicon judged it).
  bool repeated_spurious_fault(uint64_t la, uint32_t error);

  // Sets request bits (req::) and kicks the vCPU if it is in the guest; returns the guest-mode
  // word it saw, for wait_for_exit (KVM's kvm_make_request + kvm_vcpu_kick).
  uint64_t make_request(uint32_t request);
  // Waits until the vCPU has left the guest entry `seen` (nothing to wait for if it was out).
  void wait_for_exit(uint64_t seen);

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
  void wait_l2_halted();
  void reinject_idt_vectoring();
  bool wait_sipi();
  void arm_preemption_timer();
  void service_requests();
  bool prepare_shadow_entry();
  bool guest_state_valid();
  bool emulate_invalid_guest_state();

  Vm& vm_;
  unsigned index_;
  cpu::Cpu core_;
  VcpuStats stats_;
  std::unique_ptr<Emulator> emulator_;
  std::unique_ptr<nested::NestedVmx> nested_;
  uint64_t vmcs_hpa_ = 0;
  uint64_t msr_bitmap_hpa_ = 0;
  bool launched_ = false;
  bool wait_for_sipi_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> kicked_{false};
  std::atomic<int> sipi_vector_{-1};
  std::atomic<bool> init_pending_{false};
  bool waiting_sipi_ = false;  // in wait_sipi (guarded by mu_)
  std::atomic<bool> l2_waits_sipi_{false};  // L2 is in the wait-for-SIPI activity state (nested VMX)
  std::atomic<uint32_t> requests_{0};
  std::atomic<uint64_t> guest_mode_{0};  // (entries << 1) | 1 while in the guest (KVM's vcpu->mode)
  uint64_t entries_ = 0;
  bool shadow_paging_ = false;
  ControlRegs l1_{};                 // shadow paging: L1's view of its control registers
  bool emulation_required_ = false;  // L1's state is one VM entry refuses (KVM's emulation_required)
  bool state_dirty_ = true;          // control registers changed: check the guest state again
  uint64_t root_hpa_ = 0;            // shadow paging: vmcs01's CR3 while the roots stay loaded
  uint64_t spurious_la_ = ~0ull;
  uint32_t spurious_error_ = 0;
};

// The vCPU whose thread this is (KVM's kvm_get_running_vcpu()), nullptr on other threads:
// per-vCPU devices, as the local APIC's page, dispatch on it. Vcpu::run sets it; tests that act
// as a vCPU's thread set it themselves.
Vcpu* running_vcpu();
void set_running_vcpu(Vcpu* vcpu);

// CR0/CR4 bits L0 owns in vmcs01 (guest/host masks): VMX operation needs CR0.NE=1 and
// CR4.VMXE=1 whatever L1 wants (IA32_VMX_CR0/CR4_FIXED0); L1 sees its own values in the shadows.
inline constexpr uint64_t kL0OwnedCr0 = 1ull << 5;   // NE
inline constexpr uint64_t kL0OwnedCr4 = 1ull << 13;  // VMXE
// Under shadow paging L0 owns every CR0 bit but TS (KVM's choice: PE, PG and WP decide how L0
// maps L1's memory), and the CR4 bits that change paging.
inline constexpr uint64_t kShadowL0OwnedCr0 = ~(1ull << 3);
inline constexpr uint64_t kShadowL0OwnedCr4 = (1ull << 4) | (1ull << 5) | (1ull << 7) | (1ull << 12) | (1ull << 13) |
                                              (1ull << 17) | (1ull << 20) | (1ull << 21) | (1ull << 22);  // PSE PAE PGE LA57 VMXE PCIDE SMEP SMAP PKE

}  // namespace nestvm::hv
