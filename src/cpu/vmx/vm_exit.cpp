// VM exit (SDM Vol. 3 Chapter 28): exit information, guest-state saving, the MSR-store list,
// host-state loading and the exit MSR-load list; back to L0 (RunExit::kVmExit).
#include "arch/vmcs.h"
#include "cpu/cpu.h"

namespace nestvm::cpu {

using namespace arch;

Status Cpu::vm_exit(const VmExitInfo& e) {
  VmcsRegion& v = vmx_.current;
  // §28.2: exit information.
  v.write(VmcsField::VM_EXIT_REASON, e.reason);
  v.write(VmcsField::EXIT_QUALIFICATION, e.qualification);
  v.write(VmcsField::GUEST_LINEAR_ADDRESS, e.guest_linear_address);
  v.write(VmcsField::GUEST_PHYSICAL_ADDRESS, e.guest_physical_address);
  v.write(VmcsField::VM_EXIT_INSTRUCTION_LEN, e.instruction_len);
  v.write(VmcsField::VMX_INSTRUCTION_INFO, e.instruction_info);
  v.write(VmcsField::VM_EXIT_INTR_INFO, e.intr_info);
  v.write(VmcsField::VM_EXIT_INTR_ERROR_CODE, e.intr_error_code);
  v.write(VmcsField::IDT_VECTORING_INFO_FIELD, e.idt_vectoring_info);
  v.write(VmcsField::IDT_VECTORING_ERROR_CODE, e.idt_vectoring_error_code);
  v.write(VmcsField::IO_RCX, e.io_rcx);
  v.write(VmcsField::IO_RSI, e.io_rsi);
  v.write(VmcsField::IO_RDI, e.io_rdi);
  v.write(VmcsField::IO_RIP, e.io_rip);
  // §28.2.4 (valid bit of the VM-entry interruption-information field cleared on every exit).
  v.write(VmcsField::VM_ENTRY_INTR_INFO_FIELD,
          v.read(VmcsField::VM_ENTRY_INTR_INFO_FIELD) & ~uint64_t(intr_info::kValid));

  // §28.3: guest state; §28.4: the MSR-store list (guest values).
  vmx_save_guest_state(v);
  // The event side of the exit: IDT-vectoring information, RF, NMI blocking, the preemption
  // timer (SDM §28.2.3, §28.2.4, §28.3.3, §28.3.4; exit_event_info.cpp).
  vmx_exit_events(v, e);
  uint32_t failed = 0;
  // VMX-abort indicators (SDM §28.7): 1 saving guest MSRs failed, 4 loading host MSRs failed.
  uint32_t abort = vmx_process_msr_list(v.read(VmcsField::VM_EXIT_MSR_STORE_ADDR),
                                        uint32_t(v.read(VmcsField::VM_EXIT_MSR_STORE_COUNT)), true, failed) ? 0 : 1;
  // §28.5: host state; §28.6: the exit MSR-load list. The TLB goes back to VPID 0 (§29.4.3.3).
  vmx_tlb_exit(v);
  vmx_load_host_state(v);
  if (!abort && !vmx_process_msr_list(v.read(VmcsField::VM_EXIT_MSR_LOAD_ADDR),
                                      uint32_t(v.read(VmcsField::VM_EXIT_MSR_LOAD_COUNT)), false, failed))
    abort = 4;
  vmx_.non_root = false;
  vmx_.exit_pending = true;
  has_pending_event_ = false;
  if (abort) {
    // §28.7: a VMX abort; the processor records the reason and shuts down.
    v.set_abort_indicator(abort);
    state.activity = Activity::kShutdown;
  }
  stop_block_ = true;
  return Status::kExit;
}

}  // namespace nestvm::cpu
