// Nested VMX (the Turtles design): L1, a hypervisor running under L0, uses VMX as if it owned
// the processor. Every VMX instruction L1 executes exits to L0, which emulates it with the SDM's
// outcome on L1's state: VMXON, VMXOFF, VMCLEAR, VMPTRLD, VMPTRST, VMREAD, VMWRITE, INVEPT,
// INVVPID, VMCALL here (vmx_insn.cpp); VMLAUNCH/VMRESUME (nested_entry.cpp) run L2 on the one
// vmcs02 of the vCPU (vmcs02.cpp); exits from L2 are routed to L0 or reflected to L1
// (nested_exit.cpp). NestedVmx is the per-vCPU state, as KVM's struct nested_vmx.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

#include "arch/vmentry_checks.h"
#include "arch/vmx.h"
#include "hv/mmu/nested_ept.h"
#include "hv/nested/vmcs12.h"

namespace nestvm::hv {
class Vcpu;
}

namespace nestvm::hv::nested {

inline constexpr uint64_t kInvalidGpa = ~0ull;  // KVM's INVALID_GPA: "no VMCS" / "not in VMX operation"

class NestedVmx {
 public:
  explicit NestedVmx(Vcpu& vcpu);
  NestedVmx(const NestedVmx&) = delete;
  NestedVmx& operator=(const NestedVmx&) = delete;

  Vcpu& vcpu() { return vcpu_; }
  // The VMX capabilities offered to L1 (nested_caps.h), fixed from the VM's CPU model.
  const arch::VmxCapabilities& caps() const { return caps_; }
  // Whether the VM's CPU model offers VMX at all (CPUID.1:ECX.VMX).
  bool vmx_offered() const { return vmx_offered_; }

  // The MSRs nested VMX answers for L1: the VMX capability MSRs (read-only) and
  // IA32_FEATURE_CONTROL. false: #GP.
  static bool handles_msr(uint32_t index);
  bool get_msr(uint32_t index, uint64_t& value) const;
  bool set_msr(uint32_t index, uint64_t value);
  uint64_t feature_control() const { return feature_control_; }

  // The outcomes of a VMX instruction (SDM Vol. 3 §31.2) on L1's RFLAGS; VMfailValid also
  // stores the error in vmcs12's VM_INSTRUCTION_ERROR. vmx_fail is VMfail: valid if there is a
  // current VMCS, else invalid. None advances RIP.
  void vmx_succeed();
  void vmx_fail_invalid();
  void vmx_fail_valid(arch::VmxError e);
  void vmx_fail(arch::VmxError e);

  // Writes the cached vmcs12 back to L1 memory and forgets it (KVM's nested_release_vmcs12).
  void release_vmcs12();
  // Makes the vmcs12 at gpa current (its page already checked): false if it is not RAM.
  bool load_vmcs12(uint64_t gpa);
  // Leaves VMX operation (VMXOFF; KVM's free_nested): vmcs12 written back, nothing current.
  void free_nested();

  // Invalidation requests from L1 (INVEPT, INVVPID), after their operand checks. The EPT02 code
  // replaces these; by default L0 drops every translation the silicon cached for this vCPU,
  // which is more than asked and never less.
  std::function<void(arch::InveptType type, uint64_t eptp)> on_invept;
  std::function<void(arch::InvvpidType type, uint16_t vpid, uint64_t la)> on_invvpid;

  // ---- State, as KVM's struct nested_vmx ----
  bool vmxon = false;                  // L1 is in VMX operation
  uint64_t vmxon_ptr = kInvalidGpa;    // the VMXON region L1 gave
  uint64_t current_vmptr = kInvalidGpa;  // the current VMCS (vmcs12) of L1, kInvalidGpa: none
  Vmcs12 cached_vmcs12;                // the current vmcs12, valid while current_vmptr is
  bool guest_mode = false;             // L2 is running (vmcs02 is the silicon's current VMCS)
  uint64_t vmcs02_hpa = 0;             // the vCPU's one vmcs02 (host-physical), 0 until first used

  // ---- Nested entry and exit (vmcs02.cpp, nested_entry.cpp, nested_exit.cpp) ----
  // Owner: the "nested entry/exit" developer. Add members for VMLAUNCH/VMRESUME, vmcs02 and
  // exit reflection between these markers.
  // VMLAUNCH/VMRESUME (nested_entry.cpp).
  bool nested_vmx_run(bool launch);
  // The vCPU loop while guest_mode (nested_exit.cpp): before entering L2, events for L1 that
  // exit L2 (false: stop); after L0 queued its events, L1's windows and preemption timer; an
  // exit from L2, routed to L0 or reflected to L1 (false: stop).
  bool check_nested_events();
  void finish_l2_entry();
  bool handle_l2_exit(uint32_t reason);
  // L2 runs and L1 takes external interrupts as VM exits from it ("external-interrupt exiting").
  bool interrupts_exit_l2() const {
    return guest_mode && (cached_vmcs12.read(arch::VmcsField::PIN_BASED_VM_EXEC_CONTROL) & arch::pin::kExtIntExiting);
  }
  // Routing predicates, for the exit vmcs02 holds (KVM's nested_vmx_l0/l1_wants_exit).
  bool l0_wants_exit(unsigned basic_reason);
  bool l1_wants_exit(unsigned basic_reason);
  // Reflection to L1 (KVM's nested_vmx_vmexit); synthesize_vmexit for an exit L0 makes up (an
  // interrupt for L1). false: the vCPU must stop (VMX abort).
  bool nested_vmx_vmexit(uint32_t reason, uint64_t qualification);
  bool synthesize_vmexit(uint32_t reason, uint32_t intr_info, uint64_t qualification);
  // L0's emulator ran an instruction of L2 and EPT12 refused one of its accesses (at L2-physical
  // l2_gpa; access: exit-qualification bits 2:0): the EPT violation or misconfiguration goes to
  // L1 as hardware would give it. false: the vCPU must stop (VMX abort).
  bool reflect_ept12_fault(uint64_t l2_gpa, uint64_t access);
  // vmcs02.cpp.
  void prepare_vmcs02();
  void sync_vmcs02_to_vmcs12(uint32_t reason, uint64_t qualification);
  void load_vmcs12_host_state();

  uint64_t vmcs02_vmptr = kInvalidGpa;  // the vmcs12 whose guest state vmcs02 holds
  uint64_t msr_bitmap02_hpa = 0;        // L0's and L1's MSR bitmaps merged
  uint16_t vpid02 = 0;                  // L2's VPID on the silicon
  bool nested_run_pending = false;      // entered by VMLAUNCH/VMRESUME, L2 has not run yet
  uint64_t l1_timer_deadline = ~0ull;   // L1's VMX-preemption timer for L2, a host-TSC deadline
  std::unique_ptr<NestedEpt> ept02;     // the EPT02 roots of this vCPU

 private:
  arch::VmEntryEnv vmcs12_entry_env(bool launch);
  void init_nested_entry();
  uint64_t l1_timer_remaining() const;
  bool nested_entry_failure(const arch::VmEntryCheck& c);
  arch::VmEntryCheck process_entry_msr_load(const arch::VmEntryEnv& env);
  bool process_exit_msr_store();
  bool process_exit_msr_load();
  bool vmx_abort(uint32_t indicator);
  void leave_guest_mode();
  void prepare_vmcs02_controls();
  void merge_msr_bitmaps();
  bool l1_wants_io();
  bool l1_wants_msr(bool write);
  bool l1_wants_cr();
  bool handle_ept02(unsigned reason);
  bool l0_exception_to_l1(uint32_t entry_info_before);

 public:

  // ---- End of nested entry and exit ----

 private:
  Vcpu& vcpu_;
  arch::VmxCapabilities caps_;
  bool vmx_offered_ = false;
  uint64_t feature_control_ = 0;  // L0 starts it at 0 (no firmware locks it); L1 writes and locks it
};

// Exit handler for a VMX instruction L1 executed in VMX root operation (or outside VMX
// operation): VMXON, VMXOFF, VMCLEAR, VMPTRLD, VMPTRST, VMREAD, VMWRITE, INVEPT, INVVPID and
// VMCALL (vmx_insn.cpp). Returns false when the vCPU must stop.
bool handle_vmx_instruction(Vcpu& vcpu, arch::ExitReason reason);

// VMLAUNCH (launch) and VMRESUME from L1 (nested_entry.cpp).
bool handle_vmlaunch(Vcpu& vcpu, bool launch);

}  // namespace nestvm::hv::nested
