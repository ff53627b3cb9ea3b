// "Virtualize APIC accesses" (SDM §30.4): linear accesses to the APIC-access page exit with
// the page offset and the access type (Table 28-6) instead of touching memory.
#include <gtest/gtest.h>

#include "unit/cpu/vmx/event_test_machine.h"

namespace nestvm::test {
namespace {

using arch::ExitReason;
using arch::VmcsField;
namespace aa = arch::exit_qual::apic_access;

constexpr uint64_t kApicPage = 0x300000;

void virtualize(EventMachine& m) {
  m.proc2(arch::proc2::kVirtualizeApicAccesses);
  m.vmwrite(VmcsField::APIC_ACCESS_ADDR, kApicPage);
}

TEST(VmxApicAccess, ReadsWritesAndFetchesExitWithOffsetAndType) {
  {
    EventMachine m("mov eax, [0x300080]");
    virtualize(m);
    m.expect_exit(ExitReason::APIC_ACCESS);
    EXPECT_EQ(m.exit_qualification(), aa::make(0x80, aa::kLinearRead));
    EXPECT_EQ(m.rip_offset(), 0u);
    EXPECT_TRUE(m.saved_rflags() & arch::rflags::kRF);
  }
  {
    EventMachine m("mov eax, 0x55\n mov [0x3000b0], eax");
    virtualize(m);
    m.poke<uint32_t>(kApicPage + 0xb0, 0x1111);
    m.expect_exit(ExitReason::APIC_ACCESS);
    EXPECT_EQ(m.exit_qualification(), aa::make(0xb0, aa::kLinearWrite));
    EXPECT_EQ(m.rip_offset(), 5u);
    EXPECT_EQ(m.peek<uint32_t>(kApicPage + 0xb0), 0x1111u);  // memory untouched
  }
  {
    EventMachine m("mov rax, 0x300010\n jmp rax");
    virtualize(m);
    m.expect_exit(ExitReason::APIC_ACCESS);
    EXPECT_EQ(m.exit_qualification(), aa::make(0x10, aa::kLinearFetch));
    EXPECT_EQ(m.guest_rip(), kApicPage + 0x10);
  }
}

TEST(VmxApicAccess, DuringEventDeliveryWithTheEventVectored) {
  // #UD pushes its frame into the APIC-access page.
  EventMachine m("mov rsp, 0x300100\n ud2");
  virtualize(m);
  m.handler(6, "hlt");
  m.expect_exit(ExitReason::APIC_ACCESS);
  EXPECT_EQ(m.exit_qualification(), aa::make(0xf8, aa::kLinearEventDelivery));
  EXPECT_EQ(m.idt_info(), arch::intr_info::make(6, unsigned(arch::EventType::kHardwareException), false));
  // The guest state is as before delivery; RF is what the #UD would have pushed (1).
  EXPECT_EQ(m.vmread(VmcsField::GUEST_RSP), kApicPage + 0x100);
  EXPECT_EQ(m.vmread(VmcsField::GUEST_CS_SELECTOR), sel::kCode64);
  EXPECT_EQ(m.rip_offset(), 7u);
  EXPECT_TRUE(m.saved_rflags() & arch::rflags::kRF);
}

TEST(VmxApicAccess, OtherPagesAndTheControlOffDoNotExit) {
  EventMachine m("mov eax, [0x300080]\n mov ebx, [0x301000]\n hlt");
  m.vmwrite(VmcsField::APIC_ACCESS_ADDR, kApicPage);  // the address alone does nothing
  m.poke<uint32_t>(kApicPage + 0x80, 0x42);
  EXPECT_EQ(m.go(), cpu::RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x42u);
}

}  // namespace
}  // namespace nestvm::test
