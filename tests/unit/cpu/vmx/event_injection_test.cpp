// Event injection at VM entry (SDM §27.6, §27.7): every interruption type through the guest's
// IDT in IA-32e and 32-bit protected mode, the frame it builds, the exception bitmap it
// bypasses, HLT it wakes, pending MTF exits, and exits during its delivery.
#include <gtest/gtest.h>

#include "unit/cpu/vmx/event_test_machine.h"
#include "unit/cpu/vmx/nonroot_test_helpers.h"

namespace nestvm::test {
namespace {

using arch::EventType;
using arch::ExitReason;
using arch::intr_info::make;
using cpu::RunExit;
namespace rf = arch::rflags;

// A handler that copies the top four slots of its frame into R8-R11 and halts.
constexpr const char* kFrame64 = "mov r8, [rsp]\n mov r9, [rsp+8]\n mov r10, [rsp+16]\n mov r11, [rsp+24]\n hlt";
constexpr const char* kFrame32 = "mov eax, [esp]\n mov ebx, [esp+4]\n mov ecx, [esp+8]\n mov edx, [esp+12]\n hlt";

struct Injection {
  const char* name;
  uint8_t vector;
  EventType type;
  bool error;
  uint32_t code;
  uint32_t len;
};

const Injection kInjections[] = {
    {"external interrupt", 0x30, EventType::kExternalInterrupt, false, 0, 0},
    {"NMI", 2, EventType::kNmi, false, 0, 0},
    {"#GP with error code", 13, EventType::kHardwareException, true, 0x1234, 0},
    {"#UD", 6, EventType::kHardwareException, false, 0, 0},
    {"INT 0x80", 0x80, EventType::kSoftwareInterrupt, false, 0, 2},
    {"INT1", 1, EventType::kPrivilegedSoftwareException, false, 0, 1},
    {"INT3", 3, EventType::kSoftwareException, false, 0, 1},
};

uint64_t return_rip(const Injection& in) { return vmx_layout::kGuestCode + in.len; }

TEST(VmxEventInjection, EveryTypeThroughTheIa32eIdt) {
  for (const Injection& in : kInjections) {
    SCOPED_TRACE(in.name);
    EventMachine m("mov r12, 1\n hlt");
    m.handler(in.vector, kFrame64);
    m.inject(in.vector, in.type, in.error, in.code, in.len);
    // Injecting an external interrupt needs RFLAGS.IF = 1 (SDM §27.3.1.4).
    const uint64_t flags = in.type == EventType::kExternalInterrupt ? 0x202 : 0x2;
    m.guest_rflags(flags);
    m.reg(cpu::kR8) = m.reg(cpu::kR12) = 0;
    EXPECT_EQ(m.go(), RunExit::kHalted);
    EXPECT_EQ(m.reg(cpu::kR12), 0u);  // the guest's first instruction did not run
    const uint64_t* f = &m.reg(cpu::kR8);
    if (in.error) {
      EXPECT_EQ(f[0], in.code);
      ++f;
    }
    EXPECT_EQ(f[0], return_rip(in));
    EXPECT_EQ(f[1], sel::kCode64);
    // RFLAGS as loaded, RF too, even for a fault (SDM §27.6.1.2).
    EXPECT_EQ(f[2] & (rf::kRF | rf::kIF), flags & rf::kIF);
    if (!in.error) {
      EXPECT_EQ(m.reg(cpu::kR11), layout::kStackTop);  // the old RSP
    }
    // NMIs are blocked after an injected NMI (without "virtual NMIs").
    EXPECT_EQ(m.cpu.state.nmi_blocking, in.type == EventType::kNmi);
  }
}

TEST(VmxEventInjection, EveryTypeThroughA32BitProtectedModeIdt) {
  for (const Injection& in : kInjections) {
    SCOPED_TRACE(in.name);
    EventMachine m("mov esi, 1\n hlt", 32);
    m.reg(cpu::kRsi) = 0;
    m.handler(in.vector, kFrame32);
    m.inject(in.vector, in.type, in.error, in.code, in.len);
    if (in.type == EventType::kExternalInterrupt) m.guest_rflags(0x202);
    EXPECT_EQ(m.go(), RunExit::kHalted);
    EXPECT_EQ(m.reg(cpu::kRsi), 0u);
    const uint64_t* f = &m.reg(cpu::kRax);  // EAX, ECX, EDX, EBX in register order
    const uint64_t slots[4] = {f[0], f[3], f[1], f[2]};
    unsigned k = 0;
    if (in.error) {
      EXPECT_EQ(slots[k++], in.code);
    }
    EXPECT_EQ(slots[k++], return_rip(in));
    EXPECT_EQ(slots[k++], sel::kCode32);
  }
}

TEST(VmxEventInjection, EveryTypeThroughTheRealModeIvt) {
  // An unrestricted real-mode guest at 1000:0000; handlers at 2000:v*16, IVT at 0. Real-mode
  // delivery pushes FLAGS, CS, IP and never an error code (SDM §27.6.1.2, §21.1.4).
  for (const Injection& in : kInjections) {
    if (in.error) continue;  // VM entry refuses error codes for real-mode guests
    SCOPED_TRACE(in.name);
    NonRootMachine m("nop");
    m.cpu.intercept_exceptions = false;
    m.guest_real_mode(0x1000, "mov si, 1\n hlt");
    m.vmwrite(arch::VmcsField::GUEST_IDTR_BASE, 0);
    m.vmwrite(arch::VmcsField::GUEST_IDTR_LIMIT, 0x3ff);
    const uint16_t ip = uint16_t(in.vector) * 16;
    m.poke<uint16_t>(uint64_t(in.vector) * 4, ip);
    m.poke<uint16_t>(uint64_t(in.vector) * 4 + 2, 0x2000);
    m.load_code(0x20000 + ip, "mov bp, sp\n mov ax, [bp]\n mov bx, [bp+2]\n mov cx, [bp+4]\n hlt", 16);
    m.vmwrite(arch::VmcsField::GUEST_RFLAGS, in.type == EventType::kExternalInterrupt ? 0x202 : 0x2);
    m.vmwrite(arch::VmcsField::VM_ENTRY_INTR_INFO_FIELD, make(in.vector, unsigned(in.type), false));
    m.vmwrite(arch::VmcsField::VM_ENTRY_INSTRUCTION_LEN, in.len);
    m.reg(cpu::kRsi) = 0;
    ASSERT_EQ(m.launch_and_run(), RunExit::kHalted);
    EXPECT_EQ(m.reg(cpu::kRsi), 0u);
    EXPECT_EQ(m.reg(cpu::kRax) & 0xffff, in.len);  // IP past the instruction for software events
    EXPECT_EQ(m.reg(cpu::kRbx) & 0xffff, 0x1000u);
    EXPECT_EQ(m.cpu.state.seg[unsigned(arch::SegReg::kCS)].selector, 0x2000u);
  }
}

TEST(VmxEventInjection, BypassesTheExceptionBitmap) {
  EventMachine m("nop");
  m.exception_bitmap(~0u);
  m.handler(6, "mov r15, 6\n hlt");
  m.inject(6, EventType::kHardwareException);
  EXPECT_EQ(m.go(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kR15), 6u);
}

TEST(VmxEventInjection, AFaultDuringInjectionExitsWithTheInjectedEventVectored) {
  EventMachine m("nop");
  m.handler(13, "hlt");
  m.vmwrite(arch::VmcsField::GUEST_RSP, event_layout::kUnmapped + 0x1000);
  m.exception_bitmap(1u << 14);
  m.inject(13, EventType::kHardwareException, true, 0x18);
  ASSERT_EQ(m.enter().kind, cpu::VmxResult::Kind::kSucceed);
  EXPECT_FALSE(m.cpu.vmx_non_root());  // the exit happened during VM entry
  EXPECT_EQ(m.cpu.run(), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), uint32_t(ExitReason::EXCEPTION_NMI));
  EXPECT_EQ(m.intr_info(), make(14, unsigned(EventType::kHardwareException), true));
  EXPECT_EQ(m.idt_info(), make(13, unsigned(EventType::kHardwareException), true));
  EXPECT_EQ(m.idt_error(), 0x18u);
  EXPECT_EQ(m.rip_offset(), 0u);
  // Every VM exit clears the valid bit of the injection field.
  EXPECT_FALSE(m.vmread(arch::VmcsField::VM_ENTRY_INTR_INFO_FIELD) & arch::intr_info::kValid);
}

TEST(VmxEventInjection, InjectedNmiFaultingIntoAnExitLeavesNmisBlocked) {
  EventMachine m("nop");
  m.handler(2, "hlt");
  m.vmwrite(arch::VmcsField::GUEST_RSP, event_layout::kUnmapped + 0x1000);
  m.exception_bitmap(1u << 14);
  m.inject(2, EventType::kNmi);
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(m.idt_info(), make(2, unsigned(EventType::kNmi), false));
  EXPECT_EQ(m.interruptibility() & arch::interruptibility::kBlockingByNmi,
            arch::interruptibility::kBlockingByNmi);
}

TEST(VmxEventInjection, WakesAHaltedGuest) {
  EventMachine m("nop");
  m.vmwrite(arch::VmcsField::GUEST_ACTIVITY_STATE, uint32_t(cpu::Activity::kHlt));
  m.guest_rflags(0x202);
  m.handler(0x30, "mov r15, 0x30\n hlt");
  m.inject(0x30, EventType::kExternalInterrupt);
  EXPECT_EQ(m.go(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kR15), 0x30u);
}

TEST(VmxEventInjection, VectoringEntryClearsLoadedStiBlocking) {
  // A vectoring entry leaves no blocking by STI, whatever the field said (SDM §27.7.1).
  EventMachine m("nop");
  m.guest_rflags(0x202);
  m.vmwrite(arch::VmcsField::GUEST_INTERRUPTIBILITY_INFO, arch::interruptibility::kBlockingBySti);
  m.handler(13, "ud2");
  m.exception_bitmap(1u << 6);
  m.inject(13, EventType::kHardwareException, true, 0);  // STI blocking forbids external interrupts
  m.expect_exit(ExitReason::EXCEPTION_NMI);
  EXPECT_EQ(m.interruptibility(), 0u);
}

TEST(VmxEventInjection, OtherEventMakesAnMtfExitPending) {
  EventMachine m("mov eax, 5\n hlt");
  m.reg(cpu::kRax) = 0;
  m.vmwrite(arch::VmcsField::VM_ENTRY_INTR_INFO_FIELD, make(0, unsigned(EventType::kOther), false));
  m.expect_exit(ExitReason::MONITOR_TRAP_FLAG);
  EXPECT_EQ(m.rip_offset(), 0u);  // before the first instruction
  EXPECT_EQ(m.reg(cpu::kRax), 0u);
}

TEST(VmxEventInjection, MtfExitFollowsTheInjectedEvent) {
  EventMachine m("nop");
  m.proc(arch::proc::kMonitorTrapFlag);
  m.guest_rflags(0x202);
  m.handler(0x30, "mov r15, 1\n hlt");
  m.inject(0x30, EventType::kExternalInterrupt);
  m.expect_exit(ExitReason::MONITOR_TRAP_FLAG);
  EXPECT_EQ(m.guest_rip(), EventMachine::handler_address(0x30));
  EXPECT_NE(m.reg(cpu::kR15), 1u);
}

}  // namespace
}  // namespace nestvm::test
