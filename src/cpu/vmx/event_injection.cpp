// The end of VM entry (SDM Vol. 3 §27.6, §27.7): event injection through the guest's IVT or
// IDT, pending MTF VM exits, and the event state non-root operation starts with (NMI and
// virtual-NMI blocking, the VMX-preemption timer, the APIC-access page). Guest state, including
// the interruptibility and activity states, is already loaded (state_transfer.cpp).
#include "arch/vmcs.h"
#include "cpu/cpu.h"

namespace nestvm::cpu {

using namespace arch;

void Cpu::vmx_enter_events(VmcsRegion& v) {
  VmxEvents& ev = vmx_.events;
  const VmxControls& ctl = vmx_.ctl;
  ev = VmxEvents{};
  pending_dr6_set_ = pending_dr6_clear_ = 0;
  ev.mtf_retired_mark = retired_;

  // §27.7.1: with "virtual NMIs", bit 3 of the interruptibility state is virtual-NMI blocking
  // and NMIs are not blocked in non-root operation; otherwise it is blocking by NMI (loaded).
  if (ctl.pin & pin::kVirtualNmis) {
    const uint32_t intr = uint32_t(v.read(VmcsField::GUEST_INTERRUPTIBILITY_INFO));
    ev.virtual_nmi_blocking = intr & interruptibility::kBlockingByNmi;
    state.nmi_blocking = false;
  }
  // §30.4: with "virtualize APIC accesses", accesses to this page exit (translate()).
  if (ctl.has2(proc2::kVirtualizeApicAccesses)) ev.apic_access_page = ctl.apic_access_addr & ~0xfffull;
  // §27.7.4: the timer starts with the value in the VMCS; at 0 it exits before the first
  // instruction (after any injection), which the first boundary check does.
  if (ctl.pin & pin::kPreemptionTimer) vmx_arm_timer(uint32_t(v.read(VmcsField::VMX_PREEMPTION_TIMER_VALUE)));

  const uint32_t inject = uint32_t(v.read(VmcsField::VM_ENTRY_INTR_INFO_FIELD));
  const bool vectoring = (inject & intr_info::kValid) && EventType(intr_info::type(inject)) != EventType::kOther;
  // §27.7.3: a non-vectoring entry delivers the pending debug exceptions (B3-B0, BS) as a #DB
  // trap before the first instruction, in the guest's IDT or through the exception bitmap
  // (nestvm delivers it even under blocking by MOV SS, which would hold it one instruction).
  const uint64_t pending_dbg = v.read(VmcsField::GUEST_PENDING_DBG_EXCEPTIONS) &
                               (exit_qual::debug::kBreakpoints | exit_qual::debug::kBS);
  if (!vectoring && pending_dbg) (void)debug_exception(pending_dbg);
  if (inject & intr_info::kValid) {
    const EventType type = EventType(intr_info::type(inject));
    if (type == EventType::kOther) {
      // §27.6.2: type 7, vector 0 makes an MTF VM exit pending before the first instruction,
      // even when the "monitor trap flag" control is 0 (and in the HLT state).
      if ((inject & intr_info::kVectorMask) == 0) ev.mtf_pending = true;
    } else {
      // §27.6.1: a vectoring entry delivers the event as if it had occurred right after entry,
      // through the guest's IVT/IDT; delivery leaves the active state with no blocking by STI
      // or MOV SS (§27.7.1, §27.7.2), and, with the monitor trap flag, an MTF exit pending.
      Event e;
      e.vector = uint8_t(inject & intr_info::kVectorMask);
      e.type = type;
      e.has_error = inject & intr_info::kDeliverErrorCode;
      e.error = uint32_t(v.read(VmcsField::VM_ENTRY_EXCEPTION_ERROR_CODE));
      e.insn_len = uint8_t(v.read(VmcsField::VM_ENTRY_INSTRUCTION_LEN));
      e.injected = true;
      deliver_event(e);
      if (!vmx_.non_root) return;  // the delivery exited (IDT-vectoring information: this event)
    }
  }
  vmx_update_event_attention();
}

}  // namespace nestvm::cpu
