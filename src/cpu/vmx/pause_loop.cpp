// Time in VMX non-root operation: TSC offsetting of the counter that RDTSC, RDTSCP and RDMSR of
// IA32_TIME_STAMP_COUNTER read, and PAUSE exiting with PAUSE-loop exiting, whose gap and window
// are measured in TSC ticks (SDM Vol. 3 §26.1.3, §26.3, §25.6.5, §25.6.13).
#include <x86intrin.h>

#include "cpu/vmx/nonroot.h"

namespace nestvm::cpu::vmx {

using namespace arch;

uint64_t guest_tsc_offset(const Cpu& c) {
  const VmxControls& ctl = c.vmx_controls();
  return ctl.has(proc::kUseTscOffsetting) ? ctl.tsc_offset : 0;
}

// SDM §26.1.3 PAUSE: "PAUSE exiting" makes every PAUSE exit, at any CPL. Otherwise, at CPL 0 with
// "PAUSE-loop exiting": a PAUSE more than PLE_GAP ticks after the previous one (or the first after
// VM entry) starts a loop, and a PAUSE more than PLE_WINDOW ticks after the start of its loop
// exits. At CPL > 0 PAUSE-loop exiting is ignored.
Status pause(Cpu& c, const Insn& i) {
  const VmxControls& ctl = c.vmx_controls();
  if (ctl.has(proc::kPauseExiting)) return c.vm_exit_for(i, ExitReason::PAUSE_INSTRUCTION);
  if (c.cpl() != 0 || !ctl.has2(proc2::kPauseLoopExiting)) return Status::kNext;
  PauseLoop& pl = c.vmx_pause_loop();
  const uint64_t now = __rdtsc();
  if (!pl.active || now - pl.last > ctl.ple_gap) {
    pl.active = true;
    pl.first = now;
  }
  pl.last = now;
  if (now - pl.first > ctl.ple_window) return c.vm_exit_for(i, ExitReason::PAUSE_INSTRUCTION);
  return Status::kNext;
}

}  // namespace nestvm::cpu::vmx
