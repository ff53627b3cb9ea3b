#include "hv/emulator.h"

#include "arch/vmcs.h"
#include "arch/vmx.h"
#include "hv/nested/nested_vmx.h"
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
  cpu_.state = core.state;
  cpu_.load_guest_state_from(v);
  nested::NestedVmx& n = vcpu_.nested();
  if (n.guest_mode) {
    // L2's instruction (KVM's nested MMU): vmcs02 holds L2's control registers, EFER and PDPTEs
    // as the silicon uses them (the read shadows are what L2 reads, not what governs its
    // accesses). On EPT12, L2's physical addresses go through it.
    const uint32_t proc12 = uint32_t(n.cached_vmcs12.read(VmcsField::CPU_BASED_VM_EXEC_CONTROL));
    const bool ept12 = (proc12 & proc::kActivateSecondary) &&
                       (n.cached_vmcs12.read(VmcsField::SECONDARY_VM_EXEC_CONTROL) & proc2::kEnableEpt);
    view_.set_ept12(ept12 ? n.ept02.get() : nullptr, n.cached_vmcs12.read(VmcsField::EPT_POINTER));
  } else {
    // The state L1 sees: registers from the silicon, the rest from vmcs01, with L1's own values
    // of the CR0/CR4 bits L0 owns.
    view_.set_ept12(nullptr, 0);
    cpu_.state.cr0 = vcpu_.guest_cr0();
    cpu_.state.cr4 = vcpu_.guest_cr4();
    cpu_.state.cr3 = vcpu_.guest_cr3();  // under shadow paging vmcs01 holds the shadow root
    cpu_.state.msr.efer = vcpu_.guest_efer();
    cpu_.state.pdpte = vcpu_.guest_pdptes();
  }
  cpu_.state.activity = cpu::Activity::kActive;
  cpu_.clear_pending_event();
  cpu_.refresh_mode();
  cpu_.flush_tlb_all();  // the guest's page tables may have changed since the last emulation
}

Emulator::Result Emulator::emulate_one() {
  cpu::Cpu& core = vcpu_.core();
  load_l1_state();
  ++vcpu_.stats().emulated_instructions;

  const cpu::RunExit e = cpu_.run_one();
  if (view_.ept12_fault().valid) {
    // An access of L2's instruction (its page walk included) that EPT12 refuses: hardware would
    // have exited to L1 with an EPT violation or misconfiguration; the instruction did not
    // complete, so none of its register results are kept.
    cpu_.clear_pending_event();
    const GuestPhysView::Ept12Fault f = view_.ept12_fault();
    view_.set_ept12(nullptr, 0);
    return vcpu_.nested().reflect_ept12_fault(f.l2_gpa, f.access) ? Result::kExitToL1 : Result::kShutdown;
  }
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
  if (const nested::NestedVmx& n = vcpu_.nested(); n.guest_mode) {
    // L2's registers are vmcs02's own; L0's bits stay set, and for those L1 does not own, the
    // read shadow is what L2 wrote (bits L1 owns exit to L1 and never get here).
    v.write(VmcsField::GUEST_CR0, cr0 | kL0OwnedCr0);
    v.write(VmcsField::GUEST_CR4, cr4 | kL0OwnedCr4);
    const uint64_t own0 = kL0OwnedCr0 & ~n.cached_vmcs12.read(VmcsField::CR0_GUEST_HOST_MASK);
    const uint64_t own4 = kL0OwnedCr4 & ~n.cached_vmcs12.read(VmcsField::CR4_GUEST_HOST_MASK);
    v.write(VmcsField::CR0_READ_SHADOW, (v.read(VmcsField::CR0_READ_SHADOW) & ~own0) | (cr0 & own0));
    v.write(VmcsField::CR4_READ_SHADOW, (v.read(VmcsField::CR4_READ_SHADOW) & ~own4) | (cr4 & own4));
    v.write(VmcsField::GUEST_IA32_EFER, cpu_.state.msr.efer);
    // "IA-32e mode guest" follows L2's EFER.LMA, as the silicon keeps it at VM exits (SDM §28.3.1).
    const uint64_t entry = v.read(VmcsField::VM_ENTRY_CONTROLS);
    const bool lma = cpu_.state.msr.efer & efer::kLMA;
    v.write(VmcsField::VM_ENTRY_CONTROLS, lma ? (entry | entry_ctl::kIa32eModeGuest) : (entry & ~uint64_t(entry_ctl::kIa32eModeGuest)));
    return;
  }
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
