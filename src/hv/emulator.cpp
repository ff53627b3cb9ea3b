#include "hv/emulator.h"

#include "arch/vmcs.h"
#include "arch/vmx.h"
#include "hv/vcpu.h"
#include "hv/vm.h"

namespace nestvm::hv {

using namespace arch;

Emulator::Emulator(Vcpu& vcpu)
    : vcpu_(vcpu), view_(vcpu.vm().mem(), vcpu.vm().io()), ports_(vcpu.vm().io()), cpu_(view_, vcpu.vm().model(), &ports_) {
  cpu_.apic_id = vcpu.index();
  cpu_.intercept_exceptions = true;
}

Emulator::Result Emulator::emulate_one() {
  cpu::Cpu& core = vcpu_.core();
  cpu::VmcsRegion& v = vcpu_.vmcs();
  // The state L1 sees: registers from the silicon, the rest from vmcs01, with L1's own values
  // of the CR0/CR4 bits L0 owns.
  cpu_.state = core.state;
  cpu_.load_guest_state_from(v);
  cpu_.state.cr0 = vcpu_.guest_cr0();
  cpu_.state.cr4 = vcpu_.guest_cr4();
  cpu_.state.activity = cpu::Activity::kActive;
  cpu_.clear_pending_event();
  cpu_.refresh_mode();
  cpu_.flush_tlb_all();  // L1's page tables may have changed since the last emulation
  ++vcpu_.stats().emulated_instructions;

  const cpu::RunExit e = cpu_.run(1);
  if (cpu_.has_pending_event()) {
    const cpu::Event& ev = cpu_.pending_event();
    if (ev.vector == uint8_t(Vector::kPF)) core.state.cr2 = cpu_.pending_fault_address();
    vcpu_.inject_exception(ev.vector, ev.has_error, ev.error);
    cpu_.clear_pending_event();
    return Result::kFaultInjected;
  }
  // Write back everything an instruction can change: registers, x87/SSE, MSRs, CR2/CR8/XCR0,
  // debug registers, then the guest-state area (RIP, RSP, RFLAGS, CRs, segments, blocking).
  core.state.gpr = cpu_.state.gpr;
  core.state.fpu = cpu_.state.fpu;
  core.state.msr = cpu_.state.msr;
  core.state.cr2 = cpu_.state.cr2;
  core.state.cr8 = cpu_.state.cr8;
  core.state.xcr0 = cpu_.state.xcr0;
  core.state.dr = cpu_.state.dr;
  core.state.dr6 = cpu_.state.dr6;
  const uint64_t cr0 = cpu_.state.cr0, cr4 = cpu_.state.cr4;
  cpu_.save_guest_state_to(v);
  v.write(VmcsField::GUEST_IA32_EFER, cpu_.state.msr.efer);
  v.write(VmcsField::GUEST_IA32_PAT, cpu_.state.msr.pat);
  v.write(VmcsField::GUEST_DR7, cpu_.state.dr7);
  v.write(VmcsField::CR0_READ_SHADOW, cr0);
  v.write(VmcsField::CR4_READ_SHADOW, cr4);
  v.write(VmcsField::GUEST_CR0, cr0 | kL0OwnedCr0);
  v.write(VmcsField::GUEST_CR4, cr4 | kL0OwnedCr4);
  return e == cpu::RunExit::kHalted ? Result::kHalted : Result::kDone;
}

}  // namespace nestvm::hv
