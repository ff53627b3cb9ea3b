// The event side of a VM exit (SDM Vol. 3 Chapter 28), after the guest state is saved: the
// IDT-vectoring information of an exit during event delivery (§28.2.4) with the guest state as
// it was before delivery began (§28.1), RFLAGS.RF (§28.3.3), NMI and virtual-NMI blocking
// (§28.3.4), the VMX-preemption timer value, and the end of non-root event tracking.
#include "arch/vmcs.h"
#include "cpu/cpu.h"

namespace nestvm::cpu {

using namespace arch;

namespace {

bool is_software_event(unsigned type) {
  return type == unsigned(EventType::kSoftwareInterrupt) || type == unsigned(EventType::kSoftwareException) ||
         type == unsigned(EventType::kPrivilegedSoftwareException);
}

// Whether delivering the event of an interruption-information word would push RF = 1.
bool pushes_rf(uint32_t info) {
  return intr_info::type(info) == unsigned(EventType::kHardwareException) && is_fault_class(info & intr_info::kVectorMask);
}

}  // namespace

void Cpu::vmx_exit_events(VmcsRegion& v, const VmExitInfo& e) {
  VmxEvents& ev = vmx_.events;
  const VmxControls& ctl = vmx_.ctl;
  const bool vnmi = ctl.pin & pin::kVirtualNmis;
  uint32_t idt = e.idt_vectoring_info;
  bool vectoring_pushes_rf = pushes_rf(idt);

  if (!(idt & intr_info::kValid) && ev.delivering) {
    // §28.2.4: an exit during delivery (an EPT violation or misconfiguration, an APIC access, a
    // task switch through a task gate). §28.1: CS, SS, RSP and RFLAGS are those from before
    // delivery began; delivery may have changed them before the access that exited.
    const Event& d = *ev.delivering;
    state.seg = ev.pre_delivery_seg;
    state.gpr[kRsp] = ev.pre_delivery_rsp;
    state.rflags = ev.pre_delivery_rflags;
    refresh_mode();
    vmx_save_guest_state(v);
    idt = intr_info::make(d.vector, unsigned(d.type), d.has_error);
    vectoring_pushes_rf = pushes_rf(idt) && !d.injected;
    v.write(VmcsField::IDT_VECTORING_INFO_FIELD, idt);
    v.write(VmcsField::IDT_VECTORING_ERROR_CODE, d.has_error ? d.error : 0);
    if (is_software_event(intr_info::type(idt))) v.write(VmcsField::VM_EXIT_INSTRUCTION_LEN, d.insn_len);
  }

  uint32_t intr = uint32_t(v.read(VmcsField::GUEST_INTERRUPTIBILITY_INFO));
  if (idt & intr_info::kValid) {
    // §28.1: an event that causes an exit indirectly leaves no blocking by STI or MOV SS, and an
    // NMI blocks further NMIs (virtual ones with "virtual NMIs") before the exit.
    intr &= ~(interruptibility::kBlockingBySti | interruptibility::kBlockingByMovSs);
    if (intr_info::type(idt) == unsigned(EventType::kNmi)) {
      if (vnmi) {
        ev.virtual_nmi_blocking = true;
      } else {
        state.nmi_blocking = true;
        intr |= interruptibility::kBlockingByNmi;
      }
    }
  }
  // §28.3.4: with "virtual NMIs" bit 3 saves virtual-NMI blocking.
  if (vnmi) intr = (intr & ~interruptibility::kBlockingByNmi) | (ev.virtual_nmi_blocking ? interruptibility::kBlockingByNmi : 0);
  v.write(VmcsField::GUEST_INTERRUPTIBILITY_INFO, intr);

  // §28.3.3: RF is saved as delivery would have pushed it for an exception that exits; for
  // APIC accesses and EPT exits, 1, or as the interrupted delivery would have pushed it.
  bool rf = false;
  switch (ExitReason(e.reason & 0xffff)) {
    case ExitReason::EXCEPTION_NMI: rf = pushes_rf(e.intr_info); break;
    case ExitReason::EPT_VIOLATION: case ExitReason::EPT_MISCONFIG: case ExitReason::APIC_ACCESS:
    case ExitReason::PML_FULL:
      rf = !(idt & intr_info::kValid) || vectoring_pushes_rf;
      break;
    default: break;
  }
  if (rf) v.write(VmcsField::GUEST_RFLAGS, v.read(VmcsField::GUEST_RFLAGS) | rflags::kRF);

  // §28.3.4: "save VMX-preemption-timer value" stores what is left (0 after a timer exit).
  if ((ctl.exit & exit_ctl::kSavePreemptionTimer) && ev.timer_armed)
    v.write(VmcsField::VMX_PREEMPTION_TIMER_VALUE,
            ExitReason(e.reason & 0xffff) == ExitReason::PREEMPTION_TIMER ? 0 : vmx_timer_value());

  // §28.3.4: debug exceptions still pending (only after an MTF exit that came first).
  v.write(VmcsField::GUEST_PENDING_DBG_EXCEPTIONS, ev.pending_dbg);

  // Leaving non-root operation: nothing of the guest's events stays armed.
  ev.pending_dbg = 0;
  ev.timer_armed = false;
  ev.mtf_pending = false;
  ev.delivering = nullptr;
  ev.iret_unblocked_nmi = false;
  ev.apic_access_page = ~0ull;
  pending_dr6_set_ = pending_dr6_clear_ = 0;
  attention_.fetch_and(~(attention::kVmx | attention::kStep), std::memory_order_acq_rel);
}

}  // namespace nestvm::cpu
