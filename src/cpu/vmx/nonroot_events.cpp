// Events at instruction boundaries in VMX non-root operation (SDM Vol. 3 Chapter 26): INIT and
// SIPI, pending MTF VM exits, the VMX-preemption timer, NMIs (NMI exiting, virtual NMIs),
// NMI-window and interrupt-window exiting, external interrupts (external-interrupt exiting,
// "acknowledge interrupt on exit"), taken in the priority of SDM Table 6-2 as §26.2, §26.5 and
// §26.7 extend it. This replaces Cpu::service_attention while the processor is in non-root
// operation; root operation keeps the core's own loop.
#include "arch/vmcs.h"
#include "cpu/cpu.h"

namespace nestvm::cpu {

using namespace arch;

namespace {

VmExitInfo event_exit(ExitReason reason, uint64_t qualification = 0, uint32_t intr = 0) {
  VmExitInfo x;
  x.reason = uint32_t(reason);
  x.qualification = qualification;
  x.intr_info = intr;
  return x;
}

constexpr uint32_t kNmiInfo = intr_info::make(uint8_t(Vector::kNMI), unsigned(EventType::kNmi), false);

}  // namespace

bool Cpu::vmx_service_events(RunExit& exit) {
  const VmxControls& ctl = vmx_.ctl;
  VmxEvents& ev = vmx_.events;
  // A VM exit for an event at this boundary: run() returns kVmExit right away. An unblocked
  // event that exits directly leaves the activity state as it was (SDM §28.1: the processor
  // becomes active only after the exit), so the exit saves HLT when it woke a halted guest.
  auto take_exit = [&](const VmExitInfo& x) {
    vm_exit(x);
    vmx_.exit_pending = false;
    exit = RunExit::kVmExit;
    return false;
  };
  // A VM exit during the delivery of an event to the guest (deliver_event below).
  auto delivery_exited = [&] {
    if (!vmx_.exit_pending) return false;
    vmx_.exit_pending = false;
    exit = RunExit::kVmExit;
    return true;
  };
  // After one delivery the loop looks again only for exits (MTF after delivery, §26.5.2): the
  // handler's first instruction runs before another event is delivered, as in root operation.
  bool delivered = false;
  for (;;) {
    const uint32_t att = attention_.load(std::memory_order_acquire);
    if (att & attention::kNmi) {
      attention_.fetch_and(~attention::kNmi, std::memory_order_acq_rel);
      nmi_pending_ = true;
    }
    // INIT (priority 3): always a VM exit in non-root operation, whatever the activity state.
    if (att & attention::kInit) {
      attention_.fetch_and(~attention::kInit, std::memory_order_acq_rel);
      return take_exit(event_exit(ExitReason::INIT_SIGNAL));
    }
    // A SIPI exits in the wait-for-SIPI state with its vector as the qualification, and is
    // dropped in any other state.
    if (att & attention::kSipi) {
      attention_.fetch_and(~attention::kSipi, std::memory_order_acq_rel);
      if (state.activity == Activity::kWaitForSipi)
        return take_exit(event_exit(ExitReason::SIPI, sipi_vector_.load(std::memory_order_relaxed)));
    }
    // The host's own interrupt (see Cpu::kick).
    if (att & attention::kKick) {
      attention_.fetch_and(~attention::kKick, std::memory_order_acq_rel);
      if (ctl.pin & pin::kExtIntExiting) return take_exit(event_exit(ExitReason::EXTERNAL_INTERRUPT));
      exit = RunExit::kKicked;
      return false;
    }
    const Activity act = state.activity;
    // Wait-for-SIPI recognizes nothing else; the preemption timer does not exit there (§26.5.1).
    if (act == Activity::kWaitForSipi) {
      exit = RunExit::kHalted;
      return false;
    }
    const bool shutdown = act == Activity::kShutdown;
    // §26.5.2: an MTF VM exit is pending after an instruction completed (its mark moved) or an
    // event was delivered, and when VM entry made one pending; it is blocked in shutdown.
    if (!shutdown && (ev.mtf_pending || ((ctl.proc & proc::kMonitorTrapFlag) && retired_ != ev.mtf_retired_mark)))
      return take_exit(event_exit(ExitReason::MONITOR_TRAP_FLAG));
    // §26.5.1: the VMX-preemption timer counted down to 0 (also in HLT and shutdown).
    if (vmx_timer_due()) return take_exit(event_exit(ExitReason::PREEMPTION_TIMER));
    // nestvm's choice where the SDM leaves it to the implementation (§26.3): STI and MOV SS
    // block NMIs and external interrupts even when they exit.
    const bool shadow = state.sti_blocking || state.movss_blocking;
    // NMIs: with "virtual NMIs" they are never blocked by NMI in non-root operation (entry
    // cleared the real blocking, §27.7.1); with "NMI exiting" alone a blocking loaded by VM
    // entry lasts until the exit.
    if (nmi_pending_ && !state.nmi_blocking && !shadow) {
      if (ctl.pin & pin::kNmiExiting) {
        nmi_pending_ = false;
        take_exit(event_exit(ExitReason::EXCEPTION_NMI, 0, kNmiInfo));
        state.nmi_blocking = true;  // §28.5: an exit caused directly by an NMI blocks NMIs
        return false;
      }
      if (!shutdown && !delivered) {
        nmi_pending_ = false;
        deliver_event({uint8_t(Vector::kNMI), EventType::kNmi, false, 0, 0});
        if (delivery_exited()) return false;
        delivered = true;
        continue;  // the next boundary: the handler's first instruction
      }
    }
    // §26.7.6: NMI-window exiting (only with "virtual NMIs"): no virtual-NMI blocking and no
    // blocking by MOV SS (nor, by nestvm's choice, by STI). It wakes HLT and shutdown.
    if ((ctl.proc & proc::kNmiWindowExiting) && !ev.virtual_nmi_blocking && !shadow)
      return take_exit(event_exit(ExitReason::NMI_WINDOW));
    // §26.7.5: interrupt-window exiting: RFLAGS.IF = 1 and no blocking by STI or MOV SS; it
    // wakes HLT, not shutdown.
    if ((ctl.proc & proc::kIntrWindowExiting) && (state.rflags & rflags::kIF) && !shadow && !shutdown)
      return take_exit(event_exit(ExitReason::INTERRUPT_WINDOW));
    // External interrupts (§26.2): with "external-interrupt exiting" RFLAGS.IF does not block
    // them. The exit acknowledges the interrupt controller only with "acknowledge interrupt on
    // exit" (§28.2.2); otherwise the interrupt stays pending.
    if (!shadow && !shutdown && intr_line_.load(std::memory_order_acquire)) {
      if (ctl.pin & pin::kExtIntExiting) {
        if (!(ctl.exit & exit_ctl::kAckIntrOnExit)) return take_exit(event_exit(ExitReason::EXTERNAL_INTERRUPT));
        const int vector = io_ ? io_->ack_interrupt() : -1;
        if (vector >= 0)
          return take_exit(event_exit(ExitReason::EXTERNAL_INTERRUPT, 0,
                                      intr_info::make(uint8_t(vector), unsigned(EventType::kExternalInterrupt), false)));
      } else if ((state.rflags & rflags::kIF) && !delivered) {
        const int vector = io_ ? io_->ack_interrupt() : -1;
        if (vector >= 0) {
          deliver_event({uint8_t(vector), EventType::kExternalInterrupt, false, 0, 0});
          if (delivery_exited()) return false;
          delivered = true;
          continue;
        }
      }
    }
    if (!intr_line_.load(std::memory_order_acquire)) attention_.fetch_and(~attention::kIntr, std::memory_order_acq_rel);
    // A held NMI keeps an attention bit so that the boundary where its blocking ends looks again.
    if (nmi_pending_) attention_.fetch_or(attention::kNmi, std::memory_order_relaxed);
    if (act != Activity::kActive) {
      // HLT with the preemption timer: the processor waits here, as the timer counts in HLT.
      if (act == Activity::kHlt && ev.timer_armed) {
        vmx_wait_halted();
        continue;
      }
      exit = shutdown ? RunExit::kShutdown : RunExit::kHalted;
      return false;
    }
    return true;
  }
}

void Cpu::vmx_begin_delivery(const Event& e) {
  VmxEvents& ev = vmx_.events;
  ev.delivering = &e;
  ev.pre_delivery_seg = state.seg;
  ev.pre_delivery_rsp = state.gpr[kRsp];
  ev.pre_delivery_rflags = state.rflags;
}

void Cpu::vmx_event_delivered(const Event& e) {
  VmxEvents& ev = vmx_.events;
  ev.iret_unblocked_nmi = false;
  // With "virtual NMIs" only VM entry can deliver an NMI (real NMIs exit): the delivery sets
  // virtual-NMI blocking and leaves NMIs unblocked (SDM §27.6.1.2, §27.7.1).
  if (e.type == EventType::kNmi && (vmx_.ctl.pin & pin::kVirtualNmis)) {
    ev.virtual_nmi_blocking = true;
    state.nmi_blocking = false;
  }
  // §26.5.2: with the monitor trap flag, an MTF VM exit is pending after the delivery of an
  // event (an injected one, a fault, INT n/INT3/INTO/INT1, an interrupt), before the handler.
  if (vmx_.ctl.proc & proc::kMonitorTrapFlag) ev.mtf_pending = true;
}

// SDM §26.3 (IRET): with "NMI exiting" = 0 IRET unblocks NMIs; with "NMI exiting" = 1 it does
// not affect NMI blocking, and with "virtual NMIs" it removes virtual-NMI blocking instead. What
// it removed is "NMI unblocking due to IRET" if IRET then faults or exits (SDM §28.2.3).
void Cpu::vmx_iret_unblock_nmis() {
  VmxEvents& ev = vmx_.events;
  const uint32_t pin = vmx_.ctl.pin;
  if (!(pin & pin::kNmiExiting)) {
    ev.iret_unblocked_nmi = state.nmi_blocking;
    state.nmi_blocking = false;
    if (nmi_pending_) attention_.fetch_or(attention::kNmi, std::memory_order_relaxed);
  } else if (pin & pin::kVirtualNmis) {
    ev.iret_unblocked_nmi = ev.virtual_nmi_blocking;
    ev.virtual_nmi_blocking = false;
  } else {
    ev.iret_unblocked_nmi = false;
  }
}

// The controls that need a look at every boundary keep an attention bit set for the whole of
// non-root operation: the run loop then stops after each block (NMI-window exits follow IRET,
// which ends its block) or after each instruction (MTF; interrupt-window exiting, since POPF
// may set IF in the middle of a block).
void Cpu::vmx_update_event_attention() {
  const uint32_t proc = vmx_.ctl.proc;
  uint32_t bits = 0;
  if ((proc & (proc::kMonitorTrapFlag | proc::kNmiWindowExiting | proc::kIntrWindowExiting)) || vmx_.events.mtf_pending)
    bits |= attention::kVmx;
  if (proc & (proc::kMonitorTrapFlag | proc::kIntrWindowExiting)) bits |= attention::kStep;
  if (bits) attention_.fetch_or(bits, std::memory_order_release);
}

}  // namespace nestvm::cpu
