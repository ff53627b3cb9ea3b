// Interrupts, NMIs and their windows, the monitor trap flag, INIT and SIPI in VMX non-root
// operation (SDM §26.2, §26.5.2, §26.7.5, §26.7.6, §28.2.2).
#include <gtest/gtest.h>

#include "unit/cpu/vmx/event_test_machine.h"

namespace nestvm::test {
namespace {

using arch::EventType;
using arch::ExitReason;
using arch::intr_info::make;
using cpu::RunExit;
namespace rf = arch::rflags;
namespace pin = arch::pin;
namespace proc = arch::proc;
namespace intr = arch::interruptibility;

constexpr uint32_t kNmiInfo = make(2, unsigned(EventType::kNmi), false);

TEST(VmxExternalInterrupts, ExitAndAcknowledgeOnExit) {
  EventMachine m("1: jmp 1b");  // IF = 0: RFLAGS.IF does not block with the control set
  m.pin(pin::kExtIntExiting);
  m.exit_ctl(arch::exit_ctl::kAckIntrOnExit);
  m.io.pending_vector = 0x41;
  m.cpu.set_intr_line(true);
  m.expect_exit(ExitReason::EXTERNAL_INTERRUPT);
  EXPECT_EQ(m.intr_info(), make(0x41, unsigned(EventType::kExternalInterrupt), false));
  EXPECT_EQ(m.rip_offset(), 0u);  // before the first instruction
}

TEST(VmxExternalInterrupts, WithoutAcknowledgeTheInterruptStaysPending) {
  EventMachine m("sti\n 1: jmp 1b");
  m.pin(pin::kExtIntExiting);
  m.handler(0x41, "mov r15, 0x41\n hlt");
  m.io.pending_vector = 0x41;
  m.cpu.set_intr_line(true);
  m.expect_exit(ExitReason::EXTERNAL_INTERRUPT);
  EXPECT_FALSE(m.intr_info() & arch::intr_info::kValid);
  // L0 lets the guest take it: without the control the guest's IDT delivers it.
  m.pin(pin::kExtIntExiting, false);
  EXPECT_EQ(m.go(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kR15), 0x41u);
}

TEST(VmxExternalInterrupts, DeliveredToTheGuestWithoutTheControl) {
  EventMachine m("mov r14, 1\n sti\n mov r14, 2\n 1: jmp 1b");
  m.handler(0x41, "mov r15, r14\n hlt");
  m.io.pending_vector = 0x41;
  m.cpu.set_intr_line(true);
  EXPECT_EQ(m.go(), RunExit::kHalted);
  EXPECT_TRUE(m.cpu.vmx_non_root());
  EXPECT_EQ(m.reg(cpu::kR15), 2u);  // held off by IF = 0, then by the STI shadow
}

TEST(VmxExternalInterrupts, HaltedGuestWakesIntoAnExitThatSavesHlt) {
  EventMachine m("1: jmp 1b");
  m.pin(pin::kExtIntExiting);
  m.vmwrite(arch::VmcsField::GUEST_ACTIVITY_STATE, uint32_t(cpu::Activity::kHlt));
  EXPECT_EQ(m.go(), RunExit::kHalted);
  m.cpu.set_intr_line(true);
  ASSERT_EQ(m.cpu.run(), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), uint32_t(ExitReason::EXTERNAL_INTERRUPT));
  EXPECT_EQ(m.vmread(arch::VmcsField::GUEST_ACTIVITY_STATE), uint32_t(cpu::Activity::kHlt));
}

TEST(VmxExternalInterrupts, KickIsAnExternalInterruptExitWithTheControl) {
  EventMachine m("1: jmp 1b");
  m.pin(pin::kExtIntExiting);
  m.exit_ctl(arch::exit_ctl::kAckIntrOnExit);
  m.cpu.kick();
  m.expect_exit(ExitReason::EXTERNAL_INTERRUPT);
  EXPECT_FALSE(m.intr_info() & arch::intr_info::kValid);  // no vector of the guest's

  EventMachine n("1: jmp 1b");
  n.cpu.kick();
  EXPECT_EQ(n.go(), RunExit::kKicked);
  EXPECT_TRUE(n.cpu.vmx_non_root());
}

TEST(VmxInterruptWindow, ExitsOnlyAfterTheStiShadow) {
  EventMachine m("nop\n sti\n nop\n nop\n hlt");
  m.proc(proc::kIntrWindowExiting);
  m.expect_exit(ExitReason::INTERRUPT_WINDOW);
  EXPECT_EQ(m.rip_offset(), 3u);  // NOP, STI and the NOP in its shadow ran
  EXPECT_EQ(m.interruptibility(), 0u);
  EXPECT_TRUE(m.saved_rflags() & rf::kIF);
}

TEST(VmxInterruptWindow, ExitsAtTheBoundaryPopfOpensItIn) {
  EventMachine m("push 0x202\n popfq\n nop\n nop\n hlt");
  m.proc(proc::kIntrWindowExiting);
  m.expect_exit(ExitReason::INTERRUPT_WINDOW);
  EXPECT_EQ(m.rip_offset(), 6u);  // right after POPF
}

TEST(VmxInterruptWindow, ImmediatelyWhenOpenAndAfterALoadedStiBlocking) {
  EventMachine m("nop\n nop");
  m.proc(proc::kIntrWindowExiting);
  m.guest_rflags(0x202);
  m.expect_exit(ExitReason::INTERRUPT_WINDOW);
  EXPECT_EQ(m.rip_offset(), 0u);

  EventMachine n("nop\n nop");
  n.proc(proc::kIntrWindowExiting);
  n.guest_rflags(0x202);
  n.vmwrite(arch::VmcsField::GUEST_INTERRUPTIBILITY_INFO, intr::kBlockingBySti);
  n.expect_exit(ExitReason::INTERRUPT_WINDOW);
  EXPECT_EQ(n.rip_offset(), 1u);
}

TEST(VmxNmi, NmiExitingExitsWithNmiInformation) {
  EventMachine m("1: jmp 1b");
  m.pin(pin::kNmiExiting);
  m.cpu.raise_nmi();
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(m.intr_info(), kNmiInfo);
  EXPECT_TRUE(m.cpu.state.nmi_blocking);  // an exit caused by an NMI blocks NMIs (SDM §28.5)
}

TEST(VmxNmi, DeliveredThroughTheGuestIdtWithoutNmiExiting) {
  EventMachine m("1: jmp 1b");
  m.handler(2, "mov r15, 2\n hlt");
  m.cpu.raise_nmi();
  EXPECT_EQ(m.go(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kR15), 2u);
  EXPECT_TRUE(m.cpu.state.nmi_blocking);
}

TEST(VmxNmi, VirtualNmiBlockingLastsUntilIret) {
  // An injected NMI blocks virtual NMIs: the NMI window opens only after the handler's IRET.
  EventMachine m("mov r14, 5\n 1: jmp 1b");
  m.pin(pin::kNmiExiting | pin::kVirtualNmis);
  m.proc(proc::kNmiWindowExiting);
  m.handler(2, "mov r15, 1\n iretq");
  m.inject(2, EventType::kNmi);
  m.expect_exit(ExitReason::NMI_WINDOW);
  EXPECT_EQ(m.reg(cpu::kR15), 1u);
  EXPECT_EQ(m.rip_offset(), 0u);  // back where the NMI interrupted the guest
  EXPECT_EQ(m.interruptibility() & intr::kBlockingByNmi, 0u);
  EXPECT_FALSE(m.cpu.state.nmi_blocking);  // real NMIs were never blocked
}

TEST(VmxNmi, VirtualNmiBlockingIsSavedAtExits) {
  EventMachine m("1: jmp 1b");
  m.pin(pin::kNmiExiting | pin::kVirtualNmis);
  m.handler(2, "ud2");
  m.exception_bitmap(1u << 6);
  m.inject(2, EventType::kNmi);
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(m.guest_rip(), EventMachine::handler_address(2));
  EXPECT_EQ(m.interruptibility() & intr::kBlockingByNmi, intr::kBlockingByNmi);
}

TEST(VmxNmi, NmiWindowHeldOffByMovSsAndOpenAtEntry) {
  EventMachine m("mov ax, ss\n mov ss, ax\n nop\n nop");
  m.pin(pin::kNmiExiting | pin::kVirtualNmis);
  m.proc(proc::kNmiWindowExiting);
  m.vmwrite(arch::VmcsField::GUEST_INTERRUPTIBILITY_INFO, intr::kBlockingByMovSs);
  m.expect_exit(ExitReason::NMI_WINDOW);
  EXPECT_EQ(m.rip_offset(), 3u);  // after the first MOV in the loaded shadow

  EventMachine n("nop");
  n.pin(pin::kNmiExiting | pin::kVirtualNmis);
  n.proc(proc::kNmiWindowExiting);
  n.expect_exit(ExitReason::NMI_WINDOW);
  EXPECT_EQ(n.rip_offset(), 0u);
}

TEST(VmxMonitorTrapFlag, ExitsAfterEachInstruction) {
  EventMachine m("mov eax, 1\n mov ebx, 2\n mov ecx, 3\n hlt");
  m.proc(proc::kMonitorTrapFlag);
  m.expect_exit(ExitReason::MONITOR_TRAP_FLAG);
  EXPECT_EQ(m.rip_offset(), 5u);
  EXPECT_EQ(m.reg(cpu::kRax), 1u);
  EXPECT_NE(m.reg(cpu::kRbx), 2u);
  m.expect_exit(ExitReason::MONITOR_TRAP_FLAG);
  EXPECT_EQ(m.rip_offset(), 10u);
  EXPECT_EQ(m.reg(cpu::kRbx), 2u);
  EXPECT_NE(m.reg(cpu::kRcx), 3u);
  m.expect_exit(ExitReason::MONITOR_TRAP_FLAG);
  EXPECT_EQ(m.rip_offset(), 15u);
  // HLT: the MTF exit comes from the HLT state.
  m.expect_exit(ExitReason::MONITOR_TRAP_FLAG);
  EXPECT_EQ(m.rip_offset(), 16u);
  EXPECT_EQ(m.vmread(arch::VmcsField::GUEST_ACTIVITY_STATE), uint32_t(cpu::Activity::kHlt));
}

// An instruction that exits inside a MOV SS or STI shadow leaves that blocking in the saved
// interruptibility state (SDM Vol. 3 §28.3.1.5): L0 reads it to fail VMLAUNCH after MOV SS with
// VMfailValid(26). The same instruction outside a shadow saves none.
TEST(VmxInterruptibility, AnExitInsideTheMovSsShadowSavesTheBlocking) {
  EventMachine m("mov ax, ss\n mov ss, ax\n cpuid\n cpuid");
  m.expect_exit(ExitReason::CPUID);
  EXPECT_EQ(m.rip_offset(), 5u);
  EXPECT_EQ(m.interruptibility(), intr::kBlockingByMovSs);
  m.skip_instruction();
  m.vmwrite(arch::VmcsField::GUEST_INTERRUPTIBILITY_INFO, 0);
  m.expect_exit(ExitReason::CPUID);
  EXPECT_EQ(m.interruptibility(), 0u);
}

TEST(VmxInterruptibility, AnExitInsideTheStiShadowSavesTheBlocking) {
  EventMachine m("sti\n cpuid");
  m.expect_exit(ExitReason::CPUID);
  EXPECT_EQ(m.rip_offset(), 1u);
  EXPECT_EQ(m.interruptibility(), intr::kBlockingBySti);
}

TEST(VmxMonitorTrapFlag, StiBlockingIsSavedAndLoadedAcrossTheExits) {
  EventMachine m("sti\n nop\n nop");
  m.proc(proc::kMonitorTrapFlag);
  m.io.pending_vector = 0x41;
  m.handler(0x41, "mov r15, 0x41\n hlt");
  m.cpu.set_intr_line(true);
  m.expect_exit(ExitReason::MONITOR_TRAP_FLAG);
  EXPECT_EQ(m.rip_offset(), 1u);
  EXPECT_EQ(m.interruptibility(), intr::kBlockingBySti);
  // The blocking comes back with VM entry: the NOP runs before the interrupt is delivered.
  m.expect_exit(ExitReason::MONITOR_TRAP_FLAG);
  EXPECT_EQ(m.rip_offset(), 2u);
  EXPECT_EQ(m.interruptibility(), 0u);
  // Now it is delivered, and MTF stops before the handler's first instruction.
  m.expect_exit(ExitReason::MONITOR_TRAP_FLAG);
  EXPECT_EQ(m.guest_rip(), EventMachine::handler_address(0x41));
}

TEST(VmxMonitorTrapFlag, TakesPriorityOverASingleStepTrapThatStaysPending) {
  EventMachine m("nop\n nop\n hlt");
  m.guest_rflags(0x2 | rf::kTF);
  m.proc(proc::kMonitorTrapFlag);
  m.handler(1, "mov r15, [rsp]\n hlt");
  const uint64_t dr6 = m.cpu.state.dr6;
  m.expect_exit(ExitReason::MONITOR_TRAP_FLAG);
  EXPECT_EQ(m.rip_offset(), 1u);
  EXPECT_EQ(m.vmread(arch::VmcsField::GUEST_PENDING_DBG_EXCEPTIONS), arch::exit_qual::debug::kBS);
  EXPECT_EQ(m.cpu.state.dr6, dr6);
  // VM entry delivers the pending #DB before the next instruction (SDM §27.7.3).
  m.proc(proc::kMonitorTrapFlag, false);
  EXPECT_EQ(m.go(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kR15), vmx_layout::kGuestCode + 1);
  EXPECT_TRUE(m.cpu.state.dr6 & arch::dr6::kBS);
}

TEST(VmxMonitorTrapFlag, ExitsAfterAFaultIsDeliveredBeforeTheHandlerRuns) {
  EventMachine m("ud2");
  m.proc(proc::kMonitorTrapFlag);
  m.handler(6, "mov r15, 1\n hlt");
  m.expect_exit(ExitReason::MONITOR_TRAP_FLAG);
  EXPECT_EQ(m.guest_rip(), EventMachine::handler_address(6));
  EXPECT_NE(m.reg(cpu::kR15), 1u);
}

TEST(VmxMonitorTrapFlag, AnExceptionExitTakesPriority) {
  EventMachine m("ud2");
  m.proc(proc::kMonitorTrapFlag);
  m.exception_bitmap(1u << 6);
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  // No MTF exit is left pending by the exception exit.
  m.exception_bitmap(0);
  m.proc(proc::kMonitorTrapFlag, false);
  m.handler(6, "hlt");
  EXPECT_EQ(m.go(), RunExit::kHalted);
}

TEST(VmxInitSipi, WaitForSipiWakesOnlyForSipiAndInit) {
  EventMachine m("nop");
  m.vmwrite(arch::VmcsField::GUEST_ACTIVITY_STATE, uint32_t(cpu::Activity::kWaitForSipi));
  m.pin(pin::kExtIntExiting);
  EXPECT_EQ(m.go(), RunExit::kHalted);
  m.cpu.set_intr_line(true);  // an interrupt does not wake wait-for-SIPI
  EXPECT_EQ(m.cpu.run(), RunExit::kHalted);
  m.cpu.set_intr_line(false);
  m.cpu.raise_sipi(0x12);
  ASSERT_EQ(m.cpu.run(), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), uint32_t(ExitReason::SIPI));
  EXPECT_EQ(m.exit_qualification(), 0x12u);
  EXPECT_EQ(m.vmread(arch::VmcsField::GUEST_ACTIVITY_STATE), uint32_t(cpu::Activity::kWaitForSipi));

  m.cpu.raise_init();
  m.expect_exit(ExitReason::INIT_SIGNAL);
}

TEST(VmxInitSipi, SipiOutsideWaitForSipiIsDroppedAndInitExits) {
  EventMachine m("mov eax, 1\n 1: jmp 1b");
  m.cpu.raise_sipi(0x12);
  EXPECT_EQ(m.go(1000), RunExit::kBudget);
  EXPECT_EQ(m.reg(cpu::kRax), 1u);
  m.cpu.raise_init();
  ASSERT_EQ(m.cpu.run(), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), uint32_t(ExitReason::INIT_SIGNAL));
}

}  // namespace
}  // namespace nestvm::test
