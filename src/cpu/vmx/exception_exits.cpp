// Exceptions in VMX non-root operation (SDM Vol. 3 §26.2): the exception bitmap with the
// page-fault error-code mask and match, the exit information of an exception that causes a VM
// exit (§28.2.1, §28.2.2, §28.2.3), the IDT-vectoring information of one raised while another
// event was being delivered (§28.2.4), and triple faults. Called from Cpu::deliver_event, which
// applies the double-fault rules between the checks.
#include "arch/vmcs.h"
#include "cpu/cpu.h"

namespace nestvm::cpu {

using namespace arch;

namespace {

// Types 4 (INT n) and the rest never consult the exception bitmap; INT3 and INTO (type 6) and
// INT1 (type 5) do, through the bit of their vector.
bool uses_exception_bitmap(EventType t) {
  return t == EventType::kHardwareException || t == EventType::kSoftwareException ||
         t == EventType::kPrivilegedSoftwareException;
}

bool is_software_event(EventType t) {
  return t == EventType::kSoftwareInterrupt || t == EventType::kSoftwareException ||
         t == EventType::kPrivilegedSoftwareException;
}

}  // namespace

bool Cpu::vmx_exception_exit(const Event& e, const Event* vectoring) {
  // §27.6.1.2: an event injected by VM entry is delivered without consulting the bitmap (a
  // fault during its delivery does consult it).
  if (e.injected || !uses_exception_bitmap(e.type) || e.vector >= 32) return false;
  const VmxControls& ctl = vmx_.ctl;
  const bool hardware = e.type == EventType::kHardwareException;
  // §26.5.2: a pending MTF VM exit has priority over a debug trap (single step, data
  // breakpoints): the trap stays pending, in the pending-debug-exceptions field, and DR6 keeps
  // its value. An MTF exit is pending whenever an instruction has just completed.
  const uint64_t trap_bits = pending_dr6_set_ & (exit_qual::debug::kBreakpoints | exit_qual::debug::kBS);
  if (hardware && e.vector == uint8_t(Vector::kDB) && trap_bits && !(pending_dr6_set_ & exit_qual::debug::kBD) &&
      !vectoring && ((ctl.proc & proc::kMonitorTrapFlag) || vmx_.events.mtf_pending)) {
    VmExitInfo x;
    x.reason = uint32_t(ExitReason::MONITOR_TRAP_FLAG);
    vmx_.events.pending_dbg = trap_bits;
    pending_dr6_set_ = pending_dr6_clear_ = 0;
    vm_exit(x);
    return true;
  }
  bool exits = (ctl.exception_bitmap >> e.vector) & 1;
  // A #PF whose error code, masked, differs from the match value exits iff bit 14 is 0.
  if (hardware && e.vector == uint8_t(Vector::kPF) && (e.error & ctl.pfec_mask) != ctl.pfec_match) exits = !exits;
  if (!exits) return false;

  VmExitInfo x;
  x.reason = uint32_t(ExitReason::EXCEPTION_NMI);
  x.intr_info = intr_info::make(e.vector, unsigned(e.type), e.has_error);
  x.intr_error_code = e.has_error ? e.error : 0;
  if (hardware && e.vector == uint8_t(Vector::kPF)) {
    x.qualification = pending_cr2_;  // §28.2.1: the linear address; CR2 is not loaded
  } else if (hardware && e.vector == uint8_t(Vector::kDB)) {
    x.qualification = pending_dr6_set_ & exit_qual::debug::kMask;  // DR6 is not modified
  } else if (!hardware) {
    x.instruction_len = e.insn_len;  // §28.2.5: INT3, INTO, INT1
  }
  if (vectoring) {
    // §28.2.4: the exception was raised while `vectoring` was being delivered; L0 re-injects it.
    x.idt_vectoring_info = intr_info::make(vectoring->vector, unsigned(vectoring->type), vectoring->has_error);
    x.idt_vectoring_error_code = vectoring->has_error ? vectoring->error : 0;
    if (is_software_event(vectoring->type)) x.instruction_len = vectoring->insn_len;
  } else if (e.vector != uint8_t(Vector::kDF) && vmx_.events.iret_unblocked_nmi &&
             (!(ctl.pin & pin::kNmiExiting) || (ctl.pin & pin::kVirtualNmis))) {
    // §28.2.3: a fault of an IRET that had unblocked (virtual) NMIs; blocking stays cleared and
    // the exit tells L0 so (undefined with "NMI exiting" but not "virtual NMIs", left 0).
    x.intr_info |= intr_info::kNmiUnblockingDueToIret;
  }
  pending_dr6_set_ = pending_dr6_clear_ = 0;
  vm_exit(x);
  return true;
}

// §26.2: a triple fault is a VM exit, not a shutdown. It is not "during event delivery"
// (§28.2.4) and saves RF as the shutdown would have left it, i.e. unchanged.
void Cpu::vmx_triple_fault() {
  VmExitInfo x;
  x.reason = uint32_t(ExitReason::TRIPLE_FAULT);
  pending_dr6_set_ = pending_dr6_clear_ = 0;
  vm_exit(x);
}

}  // namespace nestvm::cpu
