// Event delivery through the IDT (cpu/events_protected.cpp with the common loop of
// cpu/events.cpp): frames, privilege changes, IST, gate checks, error codes with EXT, the
// double-fault rules and shutdown.
#include <gtest/gtest.h>

#include "protected_mode_helpers.h"

namespace nestvm::test {
namespace {

using arch::SegReg;
using cpu::RunExit;
using namespace pm;

constexpr uint64_t kHandler = layout::kCode + 0x1000;
constexpr uint64_t kHandler2 = layout::kCode + 0x2000;

// 32-bit protected mode, CPL 0, exceptions delivered (not intercepted).
void protected32(TestMachine& m) {
  m.enter_protected32(layout::kCode);
  m.cpu.intercept_exceptions = false;
}
void long64(TestMachine& m) {
  m.enter_long64(layout::kCode);
  m.cpu.intercept_exceptions = false;
}
uint32_t peek32(const TestMachine& m, uint64_t a) { return m.peek<uint32_t>(a); }
uint64_t peek64(const TestMachine& m, uint64_t a) { return m.peek<uint64_t>(a); }

TEST(Events, FaultAtCpl0PushesErrorCodeEipCsEflagsWithRf) {
  TestMachine m;
  protected32(m);
  m.set_idt_gate32(13, kHandler);
  m.load_code(layout::kCode, "mov ax, 0x7f8\n mov ds, ax\n hlt", 32);  // beyond the GDT limit
  m.load_code(kHandler, "pop eax\n pop ebx\n pop ecx\n pop edx\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x7f8u);                 // #GP(selector)
  EXPECT_EQ(m.reg(cpu::kRbx), layout::kCode + 4);      // the faulting MOV
  EXPECT_EQ(m.reg(cpu::kRcx), sel::kCode32);
  EXPECT_TRUE(m.reg(cpu::kRdx) & arch::rflags::kRF);   // fault-class: RF = 1 in the image
  EXPECT_EQ(m.reg(cpu::kRsp), layout::kStackTop);
}

// CPL 3 -> INT 0x80 through a DPL-3 gate -> CPL 0 handler on the TSS stack.
void user_int80(TestMachine& m, bool trap_gate) {
  protected32(m);
  use_tss32(m, 0x70000);
  m.set_idt_gate32(0x80, kHandler, sel::kCode32, 3, trap_gate);
  m.load_code(layout::kCode, "mov eax, 5\n int 0x80\n jmp .", 32);
  m.load_code(kHandler, "mov esi, esp\n hlt", 32);
  enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  m.cpu.set_rflags(m.cpu.rflags() | arch::rflags::kIF);
}

TEST(Events, PrivilegeChangeSwitchesToTheTssStack) {
  TestMachine m;
  user_int80(m, false);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const uint64_t f = 0x70000 - 20;
  EXPECT_EQ(m.reg(cpu::kRsi), f);
  EXPECT_EQ(peek32(m, f + 0), layout::kCode + 7);  // past INT 0x80
  EXPECT_EQ(peek32(m, f + 4), sel::kUserCode32);
  EXPECT_TRUE(peek32(m, f + 8) & arch::rflags::kIF);
  EXPECT_FALSE(peek32(m, f + 8) & arch::rflags::kRF);
  EXPECT_EQ(peek32(m, f + 12), 0x60000u);
  EXPECT_EQ(peek32(m, f + 16), sel::kUserData);
  EXPECT_EQ(m.cpu.cpl(), 0u);
  EXPECT_EQ(m.cpu.state.seg[unsigned(SegReg::kSS)].selector, sel::kData);
  EXPECT_EQ(m.cpu.state.seg[unsigned(SegReg::kCS)].selector, sel::kCode32);
  EXPECT_FALSE(m.cpu.rflags() & arch::rflags::kIF);  // interrupt gate
}

TEST(Events, TrapGateKeepsIf) {
  TestMachine m;
  user_int80(m, true);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_TRUE(m.cpu.rflags() & arch::rflags::kIF);
}

TEST(Events, IntNThroughAGateWithDplBelowCplIsGp) {
  TestMachine m;
  protected32(m);
  use_tss32(m, 0x70000);
  m.set_idt_gate32(0x81, kHandler2, sel::kCode32, 0);  // DPL 0
  m.set_idt_gate32(13, kHandler);
  m.load_code(layout::kCode, "int 0x81\n jmp .", 32);
  m.load_code(kHandler, "pop eax\n pop ebx\n hlt", 32);
  m.load_code(kHandler2, "mov eax, 0xbad\n hlt", 32);
  enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x81u * 8 + 2);      // IDT bit, no EXT (INT n)
  EXPECT_EQ(m.reg(cpu::kRbx), layout::kCode);      // a fault: at the INT instruction
}

TEST(Events, HardwareExceptionsAndInt1IgnoreGateDpl) {
  TestMachine m;
  protected32(m);
  use_tss32(m, 0x70000);
  m.set_idt_gate32(6, kHandler, sel::kCode32, 0);   // #UD, DPL 0
  m.set_idt_gate32(1, kHandler2, sel::kCode32, 0);  // #DB, DPL 0
  m.load_code(layout::kCode, ".byte 0xf1\n ud2\n jmp .", 32);  // INT1 (ICEBP), then UD2
  m.load_code(kHandler2, "mov ebx, [esp]\n iretd", 32);
  m.load_code(kHandler, "mov ecx, [esp]\n hlt", 32);
  enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), layout::kCode + 1);  // INT1 returns past itself
  EXPECT_EQ(m.reg(cpu::kRcx), layout::kCode + 1);  // #UD at the UD2
}

TEST(Events, NotPresentGateIsNpWithIdtAndExtBits) {
  TestMachine m;
  protected32(m);
  set_idt32(m, 6, gate_desc(sel::kCode32, uint32_t(kHandler2), 0xe, 0, 0, false));
  m.set_idt_gate32(11, kHandler);
  m.load_code(layout::kCode, "ud2", 32);
  m.load_code(kHandler, "pop eax\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 6u * 8 + 2 + 1);
}

TEST(Events, SoftwareInterruptErrorCodesHaveNoExt) {
  TestMachine m;
  protected32(m);
  set_idt32(m, 0x40, gate_desc(sel::kCode32, uint32_t(kHandler2), 0xe, 0, 0, false));
  m.set_idt_gate32(11, kHandler);
  m.load_code(layout::kCode, "int 0x40", 32);
  m.load_code(kHandler, "pop eax\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x40u * 8 + 2);
}

TEST(Events, VectorBeyondIdtLimitIsGp) {
  TestMachine m;
  protected32(m);
  m.cpu.state.idtr.limit = 0x20 * 8 - 1;  // gates 0-0x1f only
  m.set_idt_gate32(13, kHandler);
  m.load_code(layout::kCode, "int 0x20", 32);
  m.load_code(kHandler, "pop eax\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x20u * 8 + 2);
}

TEST(Events, GateOfAWrongTypeIsGp) {
  TestMachine m;
  protected32(m);
  set_idt32(m, 0x41, gate_desc(sel::kCode32, uint32_t(kHandler2), 0xc, 0));  // a call gate
  m.set_idt_gate32(13, kHandler);
  m.load_code(layout::kCode, "int 0x41", 32);
  m.load_code(kHandler, "pop eax\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x41u * 8 + 2);
}

TEST(Events, TargetCodeSegmentChecksUseItsSelectorWithExt) {
  TestMachine m;
  protected32(m);
  set_idt32(m, 6, gate_desc(sel::kData, uint32_t(kHandler2), 0xe, 0));  // a data segment
  m.set_idt_gate32(13, kHandler);
  set_gdt(m, 0x50, seg_desc(0, 0xfffff, kCode, 0, true, true, false, /*present=*/false));
  set_idt32(m, 7, gate_desc(0x50, uint32_t(kHandler2), 0xe, 0));
  m.set_idt_gate32(11, kHandler + 0x100);
  m.load_code(layout::kCode, "ud2", 32);
  m.load_code(kHandler, "pop eax\n hlt", 32);
  m.load_code(kHandler + 0x100, "pop edx\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), sel::kData + 1u);
  // A hardware-generated #NM through a gate to a not-present segment: #NP(selector + EXT).
  m.cpu.state.activity = cpu::Activity::kActive;
  m.cpu.state.rip = layout::kCode;
  m.cpu.raise({7, arch::EventType::kHardwareException, false, 0, 0});
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRdx), 0x50u + 1);
}

TEST(Events, ContributoryFaultDuringDeliveryBecomesDoubleFault) {
  TestMachine m;
  protected32(m);
  set_idt32(m, 13, gate_desc(sel::kCode32, uint32_t(kHandler2), 0xe, 0, 0, false));  // #GP not present
  m.set_idt_gate32(8, kHandler);
  m.load_code(layout::kCode, "mov ax, 0x7f8\n mov ds, ax\n hlt", 32);
  m.load_code(kHandler, "pop eax\n pop ebx\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0u);                 // #DF pushes 0
  EXPECT_EQ(m.reg(cpu::kRbx), layout::kCode + 4);  // the state before the first delivery
}

TEST(Events, FaultDeliveringDoubleFaultShutsDown) {
  TestMachine m;
  protected32(m);  // an IDT of zeros: every gate has an invalid type
  m.load_code(layout::kCode, "ud2", 32);
  EXPECT_EQ(m.run(), RunExit::kShutdown);
  EXPECT_EQ(m.cpu.state.activity, cpu::Activity::kShutdown);
  EXPECT_EQ(m.run(), RunExit::kShutdown);  // stays down
}

// Faults in the new-stack checks of a privilege change. The fault handler is in a conforming
// segment, so it runs at CPL 3 on the user stack and needs no TSS stack itself.
void stack_fault_setup(TestMachine& m, uint16_t ss0, uint32_t esp0, uint8_t fault_vector) {
  protected32(m);
  use_tss32(m, esp0, ss0);
  set_gdt(m, 0x50, seg_desc(0, 0xfffff, kCodeConf, 0, true, true));
  set_idt32(m, fault_vector, gate_desc(0x50, uint32_t(kHandler), 0xe, 0));
  m.set_idt_gate32(6, kHandler2);  // #UD to CPL 0: needs the TSS stack
  m.load_code(layout::kCode, "ud2", 32);
  m.load_code(kHandler, "pop eax\n pop ebx\n pop ecx\n jmp .", 32);
  m.load_code(kHandler2, "mov eax, 0xbad\n jmp .", 32);
  enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
}

TEST(Events, BadTssStackSegmentIsTsWithExt) {
  TestMachine m;
  stack_fault_setup(m, sel::kUserData & ~3, 0x70000, 10);  // DPL-3 data for a CPL-0 stack
  EXPECT_EQ(m.run(1000), RunExit::kBudget);
  EXPECT_EQ(m.reg(cpu::kRax), (sel::kUserData & ~3u) | 1u);
  EXPECT_EQ(m.reg(cpu::kRbx), layout::kCode);  // delivered from the user state, unchanged
  EXPECT_EQ(m.reg(cpu::kRcx), sel::kUserCode32);
  EXPECT_EQ(m.cpu.cpl(), 3u);
}

TEST(Events, NullTssStackSegmentIsTsExt) {
  TestMachine m;
  stack_fault_setup(m, 0, 0x70000, 10);
  EXPECT_EQ(m.run(1000), RunExit::kBudget);
  EXPECT_EQ(m.reg(cpu::kRax), 1u);
}

TEST(Events, NotPresentTssStackIsSsWithSelector) {
  TestMachine m;
  stack_fault_setup(m, 0x58, 0x70000, 12);
  set_gdt(m, 0x58, seg_desc(0, 0xfffff, kData, 0, true, true, false, /*present=*/false));
  EXPECT_EQ(m.run(1000), RunExit::kBudget);
  EXPECT_EQ(m.reg(cpu::kRax), 0x59u);
}

TEST(Events, NewStackWithoutRoomIsSsWithSelector) {
  TestMachine m;
  stack_fault_setup(m, 0x58, 0x10, 12);  // 16 bytes below ESP0; the frame needs 20
  set_gdt(m, 0x58, seg_desc(0, 0xfff, kData, 0, true, false));
  EXPECT_EQ(m.run(1000), RunExit::kBudget);
  EXPECT_EQ(m.reg(cpu::kRax), 0x59u);
}

TEST(Events, TssTooShortForTheStackIsTsWithTrSelector) {
  TestMachine m;
  stack_fault_setup(m, sel::kData, 0x70000, 10);
  m.cpu.state.tr.limit = 8;  // ESP0/SS0 need bytes 4-11
  EXPECT_EQ(m.run(1000), RunExit::kBudget);
  EXPECT_EQ(m.reg(cpu::kRax), sel::kTss + 1u);
}

TEST(Events, ExpandDownStackSegmentRoomIsAboveTheLimit) {
  TestMachine m;
  stack_fault_setup(m, 0x58, 0x1010, 12);  // offsets 0x1000-0xffffffff: 16 bytes of room
  set_gdt(m, 0x58, seg_desc(0, 0xfff, kDataDown, 0, true, false));
  EXPECT_EQ(m.run(1000), RunExit::kBudget);
  EXPECT_EQ(m.reg(cpu::kRax), 0x59u);

  TestMachine k;
  stack_fault_setup(k, 0x58, 0x2000, 12);
  set_gdt(k, 0x58, seg_desc(0, 0xfff, kDataDown, 0, true, false));
  EXPECT_EQ(k.run(1000), RunExit::kBudget);
  EXPECT_EQ(k.reg(cpu::kRax), 0xbadu);  // the #UD handler ran at CPL 0
  EXPECT_EQ(k.reg(cpu::kRsp), 0x2000u - 20);
}

TEST(Events, SixteenBitTssSuppliesTheRing0Stack) {
  TestMachine m;
  protected32(m);
  m.poke<uint16_t>(layout::kTss + 2, 0x7000);   // SP0
  m.poke<uint16_t>(layout::kTss + 4, sel::kData);  // SS0
  m.cpu.state.tr = {sel::kTss, layout::kTss, 0x2b, arch::ar::kP | arch::sys_type::kTss16Busy};
  m.set_idt_gate32(0x80, kHandler, sel::kCode32, 3);
  m.load_code(layout::kCode, "int 0x80", 32);
  m.load_code(kHandler, "mov esi, esp\n hlt", 32);
  enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRsi), 0x7000u - 20);
  EXPECT_EQ(peek32(m, 0x7000 - 8), 0x60000u);
}

TEST(Events, SixteenBitGatePushesSixteenBitFrame) {
  TestMachine m;
  protected32(m);
  set_gdt(m, 0x50, seg_desc(0, 0xffff, kCode, 0, false));  // 16-bit code
  set_idt32(m, 0x42, gate_desc(0x50, 0x9000, 0x6, 0));     // 16-bit interrupt gate
  m.load_code(layout::kCode, "int 0x42", 32);
  m.load_code(0x9000, "mov si, sp\n hlt", 16);
  m.reg(cpu::kRsp) = 0x8000;
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRsi) & 0xffff, 0x8000u - 6);
  EXPECT_EQ(m.peek<uint16_t>(0x8000 - 6), uint16_t(layout::kCode + 2));
  EXPECT_EQ(m.peek<uint16_t>(0x8000 - 4), sel::kCode32);
  EXPECT_EQ(m.cpu.code_size(), 2u);
}

TEST(Events, IntoTrapsOnlyWithOverflow) {
  TestMachine m;
  protected32(m);
  m.set_idt_gate32(4, kHandler);
  m.load_code(layout::kCode, R"(
    xor ebx, ebx
    into
    mov ebx, 1
    mov al, 0x7f
    add al, 1
    into
    mov ebx, 2
    hlt
  )", 32);
  m.load_code(kHandler, "mov ecx, [esp]\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 1u);
  EXPECT_EQ(m.reg(cpu::kRcx), layout::kCode + 2 + 1 + 5 + 2 + 2 + 1);  // past the second INTO
}

// ---- IA-32e mode ------------------------------------------------------------------------------

TEST(Events, Long64PrivilegeChangeFrameAndAlignment) {
  TestMachine m;
  long64(m);
  set_rsp0(m, 0x70008);  // not 16-byte aligned: delivery aligns it down
  m.set_idt_gate64(0x80, kHandler, sel::kCode64, 3);
  m.load_code(layout::kCode, "int 0x80\n jmp .", 64);
  m.load_code(kHandler, "mov rsi, rsp\n hlt", 64);
  enter_user(m, sel::kUserCode64, layout::kCode, 0x60000);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const uint64_t f = 0x70000 - 40;
  EXPECT_EQ(m.reg(cpu::kRsi), f);
  EXPECT_EQ(peek64(m, f + 0), layout::kCode + 2);
  EXPECT_EQ(peek64(m, f + 8), sel::kUserCode64);
  EXPECT_EQ(peek64(m, f + 24), 0x60000u);
  EXPECT_EQ(peek64(m, f + 32), sel::kUserData);
  EXPECT_EQ(m.cpu.cpl(), 0u);
  // SDM Vol. 3 §6.14.4: SS becomes a null selector with RPL = new CPL.
  EXPECT_EQ(m.cpu.state.seg[unsigned(SegReg::kSS)].selector, 0u);
  EXPECT_TRUE(m.cpu.state.seg[unsigned(SegReg::kSS)].ar & arch::ar::kUnusable);
}

TEST(Events, Long64IstSwitchesStacksEvenWithoutPrivilegeChange) {
  TestMachine m;
  long64(m);
  set_ist(m, 2, 0x50008);
  m.set_idt_gate64(3, kHandler, sel::kCode64, 0, 2);
  m.load_code(layout::kCode, "int3\n hlt", 64);
  m.load_code(kHandler, "mov rsi, rsp\n hlt", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRsi), 0x50000u - 40);
  EXPECT_EQ(peek64(m, 0x50000 - 40), layout::kCode + 1);     // INT3 returns past itself
  EXPECT_EQ(peek64(m, 0x50000 - 16), layout::kStackTop);     // old RSP
  EXPECT_EQ(peek64(m, 0x50000 - 8), sel::kData);             // old SS, always pushed
}

TEST(Events, Long64ErrorCodeIsPushedAsEightBytes) {
  TestMachine m;
  long64(m);
  m.set_idt_gate64(13, kHandler);
  m.load_code(layout::kCode, "mov rax, 0x0000800000000000\n mov rbx, [rax]", 64);
  m.load_code(kHandler, "pop rax\n pop rbx\n hlt", 64);
  m.reg(cpu::kRsp) = 0x70008;
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0u);
  EXPECT_EQ(m.reg(cpu::kRbx), layout::kCode + 10);
  EXPECT_EQ(m.reg(cpu::kRsp), 0x70000u - 48 + 16);  // aligned, six slots, two popped
}

TEST(Events, Long64SixteenByteGateChecks) {
  TestMachine m;
  long64(m);
  // A 32-bit code segment as the target: not 64-bit code, #GP(selector + EXT).
  m.set_idt_gate64(6, kHandler2, sel::kCode32);
  m.set_idt_gate64(13, kHandler);
  m.load_code(layout::kCode, "ud2", 64);
  m.load_code(kHandler, "pop rax\n hlt", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), sel::kCode32 + 1u);
}

TEST(Events, Long64ExternalInterruptThroughMissingGateIsNpWithExt) {
  TestMachine m;
  long64(m);
  m.set_idt_gate64(0x30, kHandler2);
  m.poke<uint8_t>(layout::kIdt + 0x30 * 16 + 5, 0x0e);  // interrupt gate, P = 0
  m.set_idt_gate64(11, kHandler);
  m.load_code(layout::kCode, "sti\n nop\n nop\n jmp .", 64);
  m.load_code(kHandler, "pop rax\n hlt", 64);
  m.io.pending_vector = 0x30;
  m.cpu.set_intr_line(true);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x30u * 8 + 2 + 1);
}

// A #PF while pushing a frame: the state is as before delivery, and a second #PF delivering the
// first one is a double fault (SDM Vol. 3 Table 6-5), here on an IST stack.
TEST(Events, Long64PageFaultWhilePushingRestoresStateThenDoubleFaults) {
  TestMachine m;
  long64(m);
  m.poke<uint64_t>(layout::kPml4 + 0x2000 + 511 * 8, 0);  // 0x3fe00000-0x3fffffff not present
  set_rsp0(m, 0x3fe01000);
  set_ist(m, 1, 0x50000);
  m.set_idt_gate64(0x80, kHandler2, sel::kCode64, 3);
  m.set_idt_gate64(14, kHandler2 + 0x100);
  m.set_idt_gate64(8, kHandler, sel::kCode64, 0, 1);
  m.load_code(layout::kCode, "int 0x80\n jmp .", 64);
  m.load_code(kHandler, "mov rsi, rsp\n hlt", 64);
  m.load_code(kHandler2, "mov eax, 0xbad\n hlt", 64);
  m.load_code(kHandler2 + 0x100, "mov eax, 0xbad2\n hlt", 64);
  enter_user(m, sel::kUserCode64, layout::kCode, 0x60000);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_NE(m.reg(cpu::kRax), 0xbadu);
  EXPECT_NE(m.reg(cpu::kRax), 0xbad2u);
  const uint64_t f = 0x50000 - 48;
  EXPECT_EQ(m.reg(cpu::kRsi), f);
  EXPECT_EQ(peek64(m, f + 0), 0u);                    // #DF error code
  EXPECT_EQ(peek64(m, f + 8), layout::kCode);         // the INT 0x80, not yet executed
  EXPECT_EQ(peek64(m, f + 16), sel::kUserCode64);
  EXPECT_EQ(peek64(m, f + 32), 0x60000u);
  EXPECT_EQ(peek64(m, f + 40), sel::kUserData);
  EXPECT_EQ(m.cpu.state.cr2, 0x3fe00ff8u);
}

// From compatibility mode the IDT, GDT and TSS are still at 64-bit linear addresses.
TEST(Events, CompatibilityModeReadsSystemTablesAtFullAddresses) {
  TestMachine m;
  long64(m);
  set_rsp0(m, 0x70000);
  constexpr uint64_t kHigh = 1ull << 32;  // mapped to physical 0x400000 below
  m.poke<uint64_t>(layout::kPml4 + 0x1000 + 4 * 8, 0x30000 | 7);
  m.poke<uint64_t>(0x30000, 0x400000 | 0x87);
  m.set_idt_gate64(0x80, kHandler, sel::kCode64, 3);
  enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  // Move the IDT and GDT up; what stays at their old low addresses would be wrong.
  for (uint64_t off = 0; off < 0x1000; off += 8) {
    m.poke<uint64_t>(0x400000 + 0x1000 + off, m.peek<uint64_t>(layout::kGdt + off));
    m.poke<uint64_t>(0x400000 + 0x2000 + off, m.peek<uint64_t>(layout::kIdt + off));
    m.poke<uint64_t>(layout::kGdt + off, 0);
    m.poke<uint64_t>(layout::kIdt + off, 0);
  }
  m.cpu.state.gdtr.base = kHigh + 0x1000;
  m.cpu.state.idtr.base = kHigh + 0x2000;
  m.load_code(layout::kCode, "mov eax, 7\n int 0x80", 32);
  m.load_code(kHandler, "mov rsi, rsp\n hlt", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRsi), 0x70000u - 40);
  EXPECT_EQ(peek64(m, 0x70000 - 40), layout::kCode + 7);
  EXPECT_EQ(m.cpu.state.seg[unsigned(SegReg::kCS)].selector, sel::kCode64);
}

TEST(Events, Long64NmiDeliveryBlocksNmisUntilIret) {
  TestMachine m;
  long64(m);
  m.set_idt_gate64(2, kHandler);
  m.load_code(layout::kCode, "nop\n nop\n hlt", 64);
  m.load_code(kHandler, "inc ebx\n iretq", 64);
  m.cpu.raise_nmi();
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 1u);
  EXPECT_FALSE(m.cpu.state.nmi_blocking);  // IRETQ unblocked NMIs
}

}  // namespace
}  // namespace nestvm::test
