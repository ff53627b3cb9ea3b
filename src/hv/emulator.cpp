#include "hv/emulator.h"

#include "arch/vmcs.h"
#include "arch/vmx.h"
#include "hv/vcpu.h"
#include "hv/vm.h"

namespace nestvm::hv {

using namespace arch;

Emulator::Emulator(Vcpu& vcpu)
    : vcpu_(vcpu), view_(vcpu.vm().mem(), vcpu.vm().io()), ports_(vcpu.vm().io(), vcpu), cpu_(view_, vcpu.vm().model(), &ports_) {
  cpu_.apic_id = vcpu.index();
  cpu_.intercept_exceptions = true;
}

int Emulator::PortBus::ack_interrupt() {
  IrqChip* chip = vcpu_.vm().irqchip();
  return chip ? chip->acknowledge_interrupt(vcpu_.index()) : -1;
}

void Emulator::load_l1_state() {
  cpu::Cpu& core = vcpu_.core();
  cpu::VmcsRegion& v = vcpu_.vmcs();
  // The state L1 sees: registers from the silicon, the rest from vmcs01, with L1's own values
  // of the CR0/CR4 bits L0 owns.
  cpu_.state = core.state;
  cpu_.load_guest_state_from(v);
  cpu_.state.cr0 = vcpu_.guest_cr0();
  cpu_.state.cr4 = vcpu_.guest_cr4();
  cpu_.state.cr3 = vcpu_.guest_cr3();  // under shadow paging vmcs01 holds the shadow root
  cpu_.state.msr.efer = vcpu_.guest_efer();
  cpu_.state.pdpte = vcpu_.guest_pdptes();
  cpu_.state.activity = cpu::Activity::kActive;
  cpu_.clear_pending_event();
  cpu_.refresh_mode();
  cpu_.flush_tlb_all();  // L1's page tables may have changed since the last emulation
}

Emulator::Result Emulator::emulate_one() {
  cpu::Cpu& core = vcpu_.core();
  load_l1_state();
  ++vcpu_.stats().emulated_instructions;

  const cpu::RunExit e = cpu_.run_one();
  if (cpu_.has_pending_event()) {
    const cpu::Event& ev = cpu_.pending_event();
    if (ev.vector == uint8_t(Vector::kPF)) core.state.cr2 = cpu_.pending_fault_address();
    vcpu_.inject_exception(ev.vector, ev.has_error, ev.error);
    cpu_.clear_pending_event();
    return Result::kFaultInjected;
  }
  store_l1_state();
  return e == cpu::RunExit::kHalted ? Result::kHalted : Result::kDone;
}

void Emulator::store_l1_state() {
  cpu::Cpu& core = vcpu_.core();
  cpu::VmcsRegion& v = vcpu_.vmcs();
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
  v.write(VmcsField::GUEST_IA32_PAT, cpu_.state.msr.pat);
  v.write(VmcsField::GUEST_DR7, cpu_.state.dr7);
  vcpu_.set_control_regs({cr0, cpu_.state.cr3, cr4, cpu_.state.msr.efer, cpu_.state.pdpte});
}

Emulator::Result Emulator::emulate_block(uint64_t budget) {
  cpu::VmcsRegion& v = vcpu_.vmcs();
  load_l1_state();
  const uint32_t info = uint32_t(v.read(VmcsField::VM_ENTRY_INTR_INFO_FIELD));
  if (info & intr_info::kValid) {
    v.write(VmcsField::VM_ENTRY_INTR_INFO_FIELD, 0);
    const cpu::Event ev{uint8_t(info & 0xff), EventType((info >> 8) & 7), bool(info & intr_info::kDeliverErrorCode),
                        uint32_t(v.read(VmcsField::VM_ENTRY_EXCEPTION_ERROR_CODE)),
                        uint8_t(v.read(VmcsField::VM_ENTRY_INSTRUCTION_LEN))};
    if (!cpu_.deliver_event(ev)) return Result::kShutdown;
  }
  if (IrqChip* chip = vcpu_.vm().irqchip()) {
    cpu_.set_intr_line(chip->has_interrupt(vcpu_.index()));
    if (chip->has_nmi(vcpu_.index()) && chip->take_nmi(vcpu_.index())) cpu_.raise_nmi();
  }
  cpu_.intercept_exceptions = false;
  const uint64_t before = cpu_.instructions_retired();
  const cpu::RunExit e = cpu_.run(budget);
  vcpu_.stats().emulated_instructions += cpu_.instructions_retired() - before;
  cpu_.intercept_exceptions = true;
  cpu_.set_intr_line(false);
  if (e == cpu::RunExit::kShutdown) return Result::kShutdown;
  cpu_.state.activity = cpu::Activity::kActive;  // a HLT waits in Vcpu::halt()
  store_l1_state();
  return e == cpu::RunExit::kHalted ? Result::kHalted : Result::kDone;
}

}  // namespace nestvm::hv
