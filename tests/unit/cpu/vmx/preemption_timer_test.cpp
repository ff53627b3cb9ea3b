// The VMX-preemption timer (SDM §26.5.1, §27.7.4): exits at 0, also before the first
// instruction, also from HLT, and the value saved with "save VMX-preemption timer value".
#include <gtest/gtest.h>

#include "unit/cpu/vmx/event_test_machine.h"

namespace nestvm::test {
namespace {

using arch::ExitReason;
using arch::VmcsField;
using cpu::RunExit;

void arm(EventMachine& m, uint32_t value, bool save = true) {
  m.pin(arch::pin::kPreemptionTimer);
  if (save) m.exit_ctl(arch::exit_ctl::kSavePreemptionTimer);
  m.vmwrite(VmcsField::VMX_PREEMPTION_TIMER_VALUE, value);
}

TEST(VmxPreemptionTimer, ZeroExitsBeforeTheFirstInstruction) {
  EventMachine m("mov eax, 7\n 1: jmp 1b");
  m.reg(cpu::kRax) = 0;
  arm(m, 0);
  m.expect_exit(ExitReason::PREEMPTION_TIMER);
  EXPECT_EQ(m.rip_offset(), 0u);
  EXPECT_EQ(m.reg(cpu::kRax), 0u);
  EXPECT_EQ(m.vmread(VmcsField::VMX_PREEMPTION_TIMER_VALUE), 0u);
}

TEST(VmxPreemptionTimer, CountsDownWhileTheGuestLoops) {
  EventMachine m("1: inc rax\n jmp 1b");
  arm(m, 20'000);  // 20000 << 5 TSC ticks
  m.expect_exit(ExitReason::PREEMPTION_TIMER, ~0ull);
  EXPECT_GT(m.reg(cpu::kRax), 0u);
  EXPECT_EQ(m.vmread(VmcsField::VMX_PREEMPTION_TIMER_VALUE), 0u);
}

TEST(VmxPreemptionTimer, ExitsFromHlt) {
  EventMachine m("hlt");
  arm(m, 5'000);
  m.expect_exit(ExitReason::PREEMPTION_TIMER);
  EXPECT_EQ(m.vmread(VmcsField::GUEST_ACTIVITY_STATE), uint32_t(cpu::Activity::kHlt));
}

TEST(VmxPreemptionTimer, OtherExitsSaveWhatIsLeft) {
  EventMachine m("ud2");
  m.exception_bitmap(1u << 6);
  arm(m, 0xffffffffu);
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  const uint64_t left = m.vmread(VmcsField::VMX_PREEMPTION_TIMER_VALUE);
  EXPECT_LT(left, 0xffffffffu);
  EXPECT_GT(left, 0xffffffffu - (1u << 24));  // much less than 2^29 TSC ticks went by

  // Without the save control the field keeps the value L0 wrote.
  EventMachine n("ud2");
  n.exception_bitmap(1u << 6);
  arm(n, 0xffffffffu, false);
  n.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(n.vmread(VmcsField::VMX_PREEMPTION_TIMER_VALUE), 0xffffffffu);
}

TEST(VmxPreemptionTimer, OffWithoutTheControl) {
  EventMachine m("1: jmp 1b");
  m.vmwrite(VmcsField::VMX_PREEMPTION_TIMER_VALUE, 0);
  EXPECT_EQ(m.go(10'000), RunExit::kBudget);
  EXPECT_TRUE(m.cpu.vmx_non_root());
}

}  // namespace
}  // namespace nestvm::test
