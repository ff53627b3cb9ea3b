// Exceptions in VMX non-root operation: the exception bitmap with the #PF error-code mask and
// match, the exit information of exception exits, IDT-vectoring information for exits during
// delivery, double and triple faults, "NMI unblocking due to IRET" (SDM §26.2, §28.2).
#include <gtest/gtest.h>

#include "unit/cpu/vmx/event_test_machine.h"

namespace nestvm::test {
namespace {

using arch::EventType;
using arch::ExitReason;
using arch::intr_info::make;
using cpu::RunExit;
namespace rf = arch::rflags;

constexpr unsigned kHw = unsigned(EventType::kHardwareException);

TEST(VmxExceptionBitmap, ExitsExactlyForVectorsWithTheirBitSet) {
  struct Case {
    const char* code;
    uint8_t vector;
    bool error;
  };
  const Case cases[] = {
      {"ud2", 6, false},
      {"xor ecx, ecx\n div ecx", 0, false},
      {"mov rax, 0x8000000000000000\n mov [rax], rax", 13, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.code);
    {
      EventMachine m(c.code);
      m.exception_bitmap(1u << c.vector);
      m.expect_exit(ExitReason::EXCEPTION_NMI);
      EXPECT_EQ(m.intr_info(), make(c.vector, kHw, c.error));
      if (c.error) {
        EXPECT_EQ(m.intr_error(), 0u);
      }
      EXPECT_FALSE(m.idt_info() & arch::intr_info::kValid);
      // The faulting instruction did not complete; a fault saves RF = 1 (SDM §28.3.3).
      const uint64_t len = c.vector == 6 ? 0 : (c.vector == 0 ? 2 : 10);
      EXPECT_EQ(m.rip_offset(), len);
      EXPECT_TRUE(m.saved_rflags() & rf::kRF);
    }
    {
      // Every other bit set: delivered through the guest's IDT.
      EventMachine m(c.code);
      m.exception_bitmap(~(1u << c.vector));
      m.handler(c.vector, "mov r15, 0x77\n hlt");
      EXPECT_EQ(m.go(), RunExit::kHalted);
      EXPECT_TRUE(m.cpu.vmx_non_root());
      EXPECT_EQ(m.reg(cpu::kR15), 0x77u);
    }
  }
}

TEST(VmxExceptionBitmap, PageFaultsFollowTheErrorCodeMaskAndMatch) {
  // A supervisor write to a not-present page: PFEC = W (2).
  const char* code = "mov rax, 0x100000000\n mov byte ptr [rax], 1";
  struct Case {
    bool bit14;
    uint32_t mask, match;
    bool exits;
  };
  const Case cases[] = {
      {true, 0, 0, true},    // PFEC & 0 == 0: exits iff bit 14 = 1
      {true, 2, 2, true},    // W matches
      {true, 2, 0, false},   // W does not match: exits iff bit 14 = 0
      {false, 2, 0, true},
      {false, 0, 0, false},
      {false, 4, 4, true},  // U/S = 1 wanted, PFEC has U/S = 0: mismatch, exits as bit 14 = 0
      {true, 4, 4, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << c.bit14 << " mask " << c.mask << " match " << c.match);
    EventMachine m(code);
    m.exception_bitmap(c.bit14 ? 1u << 14 : 0);
    m.vmwrite(arch::VmcsField::PAGE_FAULT_ERROR_CODE_MASK, c.mask);
    m.vmwrite(arch::VmcsField::PAGE_FAULT_ERROR_CODE_MATCH, c.match);
    m.handler(14, "mov r15, [rsp]\n hlt");
    m.cpu.state.cr2 = 0x1234;
    if (c.exits) {
      m.expect_exit(ExitReason::EXCEPTION_NMI);
      EXPECT_EQ(m.intr_info(), make(14, kHw, true));
      EXPECT_EQ(m.intr_error(), arch::pfec::kWrite);
      // The qualification is the linear address; CR2 is not loaded (SDM §28.2.1).
      EXPECT_EQ(m.exit_qualification(), event_layout::kUnmapped);
      EXPECT_EQ(m.cpu.state.cr2, 0x1234u);
      EXPECT_EQ(m.rip_offset(), 10u);
    } else {
      EXPECT_EQ(m.go(), RunExit::kHalted);
      EXPECT_EQ(m.reg(cpu::kR15), arch::pfec::kWrite);
      EXPECT_EQ(m.cpu.state.cr2, event_layout::kUnmapped);
    }
  }
}

TEST(VmxExceptionBitmap, SoftwareExceptionsReportTheirTypeAndLength) {
  {
    EventMachine m("nop\n int3");
    m.exception_bitmap(1u << 3);
    m.expect_exit(ExitReason::EXCEPTION_NMI);
    EXPECT_EQ(m.intr_info(), make(3, unsigned(EventType::kSoftwareException), false));
    EXPECT_EQ(m.insn_len(), 1u);
    EXPECT_EQ(m.rip_offset(), 1u);              // RIP at INT3: L0 re-injects with the length
    EXPECT_FALSE(m.saved_rflags() & rf::kRF);  // a trap
  }
  {
    EventMachine m(".byte 0xf1");  // INT1 (ICEBP): privileged software exception
    m.exception_bitmap(1u << 1);
    m.expect_exit(ExitReason::EXCEPTION_NMI);
    EXPECT_EQ(m.intr_info(), make(1, unsigned(EventType::kPrivilegedSoftwareException), false));
    EXPECT_EQ(m.insn_len(), 1u);
    EXPECT_EQ(m.exit_qualification(), 0u);
  }
  {
    // INT n never consults the bitmap, even INT 3 in its two-byte form.
    EventMachine m(".byte 0xcd, 0x03");  // INT 3 (as would assemble it as INT3)
    m.exception_bitmap(~0u);
    m.handler(3, "mov r15, [rsp]\n hlt");
    EXPECT_EQ(m.go(), RunExit::kHalted);
    EXPECT_EQ(m.reg(cpu::kR15), vmx_layout::kGuestCode + 2);
  }
}

TEST(VmxExceptionBitmap, DebugExceptionsReportDr6BitsWithoutChangingDr6) {
  EventMachine m("nop\n nop");
  m.guest_rflags(0x2 | rf::kTF);
  m.exception_bitmap(1u << 1);
  const uint64_t dr6 = m.cpu.state.dr6;
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(m.intr_info(), make(1, kHw, false));
  EXPECT_EQ(m.exit_qualification(), arch::exit_qual::debug::kBS);  // single step
  EXPECT_EQ(m.rip_offset(), 1u);                                    // a trap after the NOP
  EXPECT_EQ(m.cpu.state.dr6, dr6);
  EXPECT_FALSE(m.saved_rflags() & rf::kRF);

  // Delivered instead, the #DB sets DR6.BS.
  EventMachine d("nop\n nop");
  d.guest_rflags(0x2 | rf::kTF);
  d.handler(1, "hlt");
  EXPECT_EQ(d.go(), RunExit::kHalted);
  EXPECT_TRUE(d.cpu.state.dr6 & arch::dr6::kBS);
}

TEST(VmxIdtVectoring, RecordsTheEventWhoseDeliveryFaulted) {
  // #UD delivery pushes onto an unmapped stack: the #PF exits, the #UD is the vectored event.
  EventMachine m("mov rsp, 0x100001000\n ud2");
  m.handler(6, "hlt");
  m.exception_bitmap(1u << 14);
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(m.intr_info(), make(14, kHw, true));
  EXPECT_EQ(m.intr_error(), arch::pfec::kWrite);
  EXPECT_EQ(m.exit_qualification(), event_layout::kUnmapped + 0xff8);
  EXPECT_EQ(m.idt_info(), make(6, kHw, false));
  // The guest state is as before delivery: RIP at UD2, the old RSP.
  EXPECT_EQ(m.rip_offset(), 10u);
  EXPECT_EQ(m.vmread(arch::VmcsField::GUEST_RSP), event_layout::kUnmapped + 0x1000);
}

TEST(VmxIdtVectoring, SoftwareInterruptsCarryTheirInstructionLength) {
  EventMachine m("mov rsp, 0x100001000\n int 0x80");
  m.handler(0x80, "hlt");
  m.exception_bitmap(1u << 14);
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(m.idt_info(), make(0x80, unsigned(EventType::kSoftwareInterrupt), false));
  EXPECT_EQ(m.insn_len(), 2u);
  EXPECT_EQ(m.rip_offset(), 10u);
}

TEST(VmxIdtVectoring, ErrorCodeOfTheVectoredEvent) {
  // #GP(0) from a non-canonical store, delivered onto an unmapped stack.
  EventMachine m("mov rsp, 0x100001000\n mov rax, 0x8000000000000000\n mov [rax], rax");
  m.handler(13, "hlt");
  m.exception_bitmap(1u << 14);
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(m.idt_info(), make(13, kHw, true));
  EXPECT_EQ(m.idt_error(), 0u);
}

TEST(VmxDoubleFault, IsCheckedAgainstTheBitmapAsDoubleFault) {
  // A #PF whose delivery faults with #PF: #DF. Only bit 8 is set.
  EventMachine m("mov rsp, 0x100001000\n mov rax, 0x100000000\n mov [rax], rax");
  m.handler(14, "hlt");
  m.handler(8, "hlt");
  m.exception_bitmap(1u << 8);
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(m.intr_info(), make(8, kHw, true));
  EXPECT_EQ(m.intr_error(), 0u);
  // A #DF that exits directly is not "during delivery" (SDM §28.2.4).
  EXPECT_FALSE(m.idt_info() & arch::intr_info::kValid);
}

TEST(VmxDoubleFault, TripleFaultExitsInsteadOfShuttingDown) {
  EventMachine m("mov rsp, 0x100001000\n mov rax, 0x100000000\n mov [rax], rax");
  m.handler(14, "hlt");
  m.handler(8, "hlt");
  m.expect_exit(ExitReason::TRIPLE_FAULT);
  EXPECT_FALSE(m.idt_info() & arch::intr_info::kValid);
  EXPECT_FALSE(m.cpu.vmx_non_root());
  EXPECT_EQ(m.cpu.state.activity, cpu::Activity::kActive);
  EXPECT_EQ(m.rip_offset(), 20u);
}

// IRET with a null CS selector: #GP(0) after IRET unblocked NMIs.
constexpr const char* kFaultingIret = "push 0x10\n push 0x80000\n push 2\n push 0\n push 0x100000\n iretq";

TEST(VmxIretNmiUnblocking, ReportedWhenAFaultingIretUnblockedNmis) {
  EventMachine m(kFaultingIret);
  m.vmwrite(arch::VmcsField::GUEST_INTERRUPTIBILITY_INFO, arch::interruptibility::kBlockingByNmi);
  m.exception_bitmap(1u << 13);
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(m.intr_info(), make(13, kHw, true) | arch::intr_info::kNmiUnblockingDueToIret);
  EXPECT_EQ(m.interruptibility() & arch::interruptibility::kBlockingByNmi, 0u);  // cleared before the exit

  EventMachine n(kFaultingIret);  // no blocking to remove: bit 12 clear
  n.exception_bitmap(1u << 13);
  n.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(n.intr_info(), make(13, kHw, true));
}

TEST(VmxIretNmiUnblocking, VirtualNmiBlockingWithVirtualNmis) {
  EventMachine m(kFaultingIret);
  m.pin(arch::pin::kNmiExiting | arch::pin::kVirtualNmis);
  m.vmwrite(arch::VmcsField::GUEST_INTERRUPTIBILITY_INFO, arch::interruptibility::kBlockingByNmi);
  m.exception_bitmap(1u << 13);
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(m.intr_info(), make(13, kHw, true) | arch::intr_info::kNmiUnblockingDueToIret);
  EXPECT_EQ(m.interruptibility() & arch::interruptibility::kBlockingByNmi, 0u);

  // With "NMI exiting" alone IRET leaves NMI blocking alone.
  EventMachine n(kFaultingIret);
  n.pin(arch::pin::kNmiExiting);
  n.vmwrite(arch::VmcsField::GUEST_INTERRUPTIBILITY_INFO, arch::interruptibility::kBlockingByNmi);
  n.exception_bitmap(1u << 13);
  n.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(n.interruptibility() & arch::interruptibility::kBlockingByNmi, arch::interruptibility::kBlockingByNmi);
}

}  // namespace
}  // namespace nestvm::test
