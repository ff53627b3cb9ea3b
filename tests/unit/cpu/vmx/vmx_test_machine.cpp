#include "unit/cpu/vmx/vmx_test_machine.h"

#include <gtest/gtest.h>

#include "arch/cr.h"

namespace nestvm::test {

using arch::VmcsField;
using namespace arch;

VmxTestMachine::VmxTestMachine(uint64_t ram_bytes, cpu::CpuModel model) : TestMachine(ram_bytes, std::move(model)) {}

void VmxTestMachine::make_current_vmcs(uint64_t hpa) {
  poke<uint32_t>(hpa, kVmcsRevision);
  ASSERT_TRUE(cpu.vmclear(hpa).ok());
  ASSERT_TRUE(cpu.vmptrld(hpa).ok());
}

void VmxTestMachine::vmwrite(VmcsField f, uint64_t v) {
  ASSERT_TRUE(cpu.vmwrite(encoding_of(f), v).ok()) << vmcs_field_info(f).name;
}

uint64_t VmxTestMachine::vmread(VmcsField f) {
  uint64_t v = 0;
  EXPECT_TRUE(cpu.vmread(encoding_of(f), v).ok()) << vmcs_field_info(f).name;
  return v;
}

void VmxTestMachine::set_control(VmcsField f, uint32_t bits, bool on) {
  const uint64_t v = vmread(f);
  vmwrite(f, on ? (v | bits) : (v & ~uint64_t(bits)));
}

void VmxTestMachine::setup_guest64(uint64_t rip) {
  // The guest's world is the bare machine's long-mode setup: build it on the processor, then
  // copy it into the guest-state area.
  enter_long64(rip);
  make_current_vmcs();
  const cpu::CpuState& s = cpu.state;
  const auto& caps = cpu.vmx_caps();
  vmwrite(VmcsField::PIN_BASED_VM_EXEC_CONTROL, caps.pin.allowed0);
  vmwrite(VmcsField::CPU_BASED_VM_EXEC_CONTROL, caps.proc.allowed0);
  vmwrite(VmcsField::SECONDARY_VM_EXEC_CONTROL, 0);
  vmwrite(VmcsField::VM_EXIT_CONTROLS, caps.exit.allowed0 | exit_ctl::kHostAddrSpaceSize);
  vmwrite(VmcsField::VM_ENTRY_CONTROLS, caps.entry.allowed0 | entry_ctl::kIa32eModeGuest);
  vmwrite(VmcsField::VMCS_LINK_POINTER, ~0ull);
  vmwrite(VmcsField::CR3_TARGET_COUNT, 0);
  // Guest state from the processor.
  const uint64_t cr4 = s.cr4 | cr4::kVMXE;
  vmwrite(VmcsField::GUEST_CR0, s.cr0);
  vmwrite(VmcsField::GUEST_CR3, s.cr3);
  vmwrite(VmcsField::GUEST_CR4, cr4);
  vmwrite(VmcsField::GUEST_DR7, 0x400);
  vmwrite(VmcsField::GUEST_RFLAGS, 0x2);
  vmwrite(VmcsField::GUEST_RIP, rip);
  vmwrite(VmcsField::GUEST_RSP, layout::kStackTop);
  for (unsigned i = 0; i < 6; ++i) {
    vmwrite(arch::kGuestSegmentFields[i].selector, s.seg[i].selector);
    vmwrite(arch::kGuestSegmentFields[i].base, s.seg[i].base);
    vmwrite(arch::kGuestSegmentFields[i].limit, s.seg[i].limit);
    vmwrite(arch::kGuestSegmentFields[i].ar, s.seg[i].ar);
  }
  vmwrite(VmcsField::GUEST_LDTR_SELECTOR, 0);
  vmwrite(VmcsField::GUEST_LDTR_AR_BYTES, ar::kUnusable);
  vmwrite(VmcsField::GUEST_TR_SELECTOR, s.tr.selector);
  vmwrite(VmcsField::GUEST_TR_BASE, s.tr.base);
  vmwrite(VmcsField::GUEST_TR_LIMIT, s.tr.limit);
  vmwrite(VmcsField::GUEST_TR_AR_BYTES, s.tr.ar);
  vmwrite(VmcsField::GUEST_GDTR_BASE, s.gdtr.base);
  vmwrite(VmcsField::GUEST_GDTR_LIMIT, s.gdtr.limit);
  vmwrite(VmcsField::GUEST_IDTR_BASE, s.idtr.base);
  vmwrite(VmcsField::GUEST_IDTR_LIMIT, s.idtr.limit);
  vmwrite(VmcsField::GUEST_IA32_EFER, s.msr.efer);
  vmwrite(VmcsField::GUEST_IA32_PAT, s.msr.pat);
  vmwrite(VmcsField::GUEST_ACTIVITY_STATE, 0);
  vmwrite(VmcsField::GUEST_INTERRUPTIBILITY_INFO, 0);
  // Host state: a 64-bit host on the same tables (L0 itself runs in C++, but VM entry checks
  // the host-state area and VM exit loads it).
  vmwrite(VmcsField::HOST_CR0, s.cr0);
  vmwrite(VmcsField::HOST_CR3, s.cr3);
  vmwrite(VmcsField::HOST_CR4, cr4);
  vmwrite(VmcsField::HOST_CS_SELECTOR, sel::kCode64);
  vmwrite(VmcsField::HOST_SS_SELECTOR, sel::kData);
  vmwrite(VmcsField::HOST_DS_SELECTOR, sel::kData);
  vmwrite(VmcsField::HOST_ES_SELECTOR, sel::kData);
  vmwrite(VmcsField::HOST_FS_SELECTOR, 0);
  vmwrite(VmcsField::HOST_GS_SELECTOR, 0);
  vmwrite(VmcsField::HOST_TR_SELECTOR, sel::kTss);
  vmwrite(VmcsField::HOST_TR_BASE, layout::kTss);
  vmwrite(VmcsField::HOST_GDTR_BASE, layout::kGdt);
  vmwrite(VmcsField::HOST_IDTR_BASE, layout::kIdt);
  vmwrite(VmcsField::HOST_RIP, 0xdead0000);
  vmwrite(VmcsField::HOST_RSP, 0x70000);
  vmwrite(VmcsField::HOST_IA32_EFER, s.msr.efer);
  vmwrite(VmcsField::HOST_IA32_PAT, s.msr.pat);
}

cpu::VmxResult VmxTestMachine::enter(bool resume) { return cpu.vm_enter(resume); }

cpu::RunExit VmxTestMachine::launch_and_run(uint64_t budget) {
  const cpu::VmxResult r = enter(false);
  if (r.kind == cpu::VmxResult::Kind::kEntryFailed) return cpu::RunExit::kVmExit;
  EXPECT_TRUE(r.ok()) << "VM entry: " << int(r.kind) << " error " << uint32_t(r.error) << " " << r.rule;
  if (!r.ok()) return cpu::RunExit::kShutdown;
  return cpu.run(budget);
}

cpu::RunExit VmxTestMachine::resume_and_run(uint64_t budget) {
  const cpu::VmxResult r = enter(true);
  if (r.kind == cpu::VmxResult::Kind::kEntryFailed) return cpu::RunExit::kVmExit;
  EXPECT_TRUE(r.ok()) << "VM entry: " << int(r.kind) << " error " << uint32_t(r.error) << " " << r.rule;
  if (!r.ok()) return cpu::RunExit::kShutdown;
  return cpu.run(budget);
}

}  // namespace nestvm::test
