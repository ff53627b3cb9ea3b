// Far control transfers (cpu/insn/far.cpp, cpu/task_switch.cpp): far JMP/CALL/RET in every mode,
// call gates, IRET across privilege levels and modes, the EFLAGS rules of IRET, task switches.
#include <gtest/gtest.h>

#include <string>

#include "protected_mode_helpers.h"

namespace nestvm::test {
namespace {

using arch::SegReg;
using arch::Vector;
using cpu::RunExit;
using namespace pm;

constexpr uint64_t kUser = layout::kCode + 0x100;
constexpr uint64_t kHandler = layout::kCode + 0x1000;

const arch::Segment& seg(const TestMachine& m, SegReg s) { return m.cpu.state.seg[unsigned(s)]; }
uint32_t peek32(const TestMachine& m, uint64_t a) { return m.peek<uint32_t>(a); }
uint64_t peek64(const TestMachine& m, uint64_t a) { return m.peek<uint64_t>(a); }

void expect_fault(TestMachine& m, Vector v, uint32_t error) {
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(v));
  EXPECT_EQ(m.cpu.pending_event().error, error);
}

// ---- same privilege ---------------------------------------------------------------------------

TEST(FarTransfer, JmpFrom32BitCodeTo16BitCodeAndBack) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, "jmp 0x38:0x9000", 32);
  // In 16-bit code "mov ax, imm16" is 3 bytes; decoded as 32-bit code it would eat the jump.
  m.load_code(0x9000, "mov ax, 0x1234\n .byte 0x66, 0xea\n .long 0x100010\n .word 0x18", 16);
  m.load_code(layout::kCode + 0x10, "mov ebx, 0x5678\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax) & 0xffff, 0x1234u);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x5678u);
  EXPECT_EQ(m.cpu.code_size(), 4u);
  EXPECT_EQ(seg(m, SegReg::kCS).selector, sel::kCode32);
}

TEST(FarTransfer, CallFarAndRetfReleasingParameters) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, "push 0x11\n push 0x22\n call 0x18:0x100100\n mov edi, esp\n hlt", 32);
  m.load_code(kUser, "mov eax, [esp]\n mov ebx, [esp+4]\n mov ecx, [esp+8]\n retf 8", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), layout::kCode + 11);
  EXPECT_EQ(m.reg(cpu::kRbx), sel::kCode32);
  EXPECT_EQ(m.reg(cpu::kRcx), 0x22u);
  EXPECT_EQ(m.reg(cpu::kRdi), layout::kStackTop);
}

TEST(FarTransfer, CallsBetween64BitAndCompatibilityMode) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.poke<uint32_t>(0x9000, uint32_t(kUser));  // m16:32 -> compatibility-mode code
  m.poke<uint16_t>(0x9004, sel::kCode32);
  m.poke<uint64_t>(0x9010, kUser + 0x100);    // m16:64 -> 64-bit code
  m.poke<uint16_t>(0x9018, sel::kCode64);
  m.load_code(layout::kCode, R"(
    call fword ptr [0x9000]
    mov r8, 0x123456789
    .byte 0x48, 0xff, 0x1c, 0x25, 0x10, 0x90, 0x00, 0x00
    hlt
  )", 64);
  m.load_code(kUser, "mov ecx, [esp]\n mov edx, [esp+4]\n retf", 32);
  m.load_code(kUser + 0x100, "mov rsi, [rsp]\n mov rdi, [rsp+8]\n .byte 0x48, 0xcb", 64);  // RETFQ
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRcx), layout::kCode + 7);
  EXPECT_EQ(m.reg(cpu::kRdx), sel::kCode64);
  EXPECT_EQ(m.reg(cpu::kR8), 0x123456789u);       // 64-bit code again after RETF
  EXPECT_EQ(m.reg(cpu::kRsi), layout::kCode + 25);
  EXPECT_EQ(m.reg(cpu::kRdi), sel::kCode64);
  EXPECT_EQ(m.reg(cpu::kRsp), layout::kStackTop);
}

TEST(FarTransfer, RealModeFarCallRetAndSoftwareInterrupt) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.cpu.intercept_exceptions = false;
  m.poke<uint16_t>(0x21 * 4, 0x0000);
  m.poke<uint16_t>(0x21 * 4 + 2, 0x3000);
  m.load_code(0x10000, "call 0x2000:0x10\n mov bx, 0x1111\n stc\n int 0x21\n hlt", 16);
  m.load_code(0x20010, "mov ax, 0x42\n retf", 16);
  m.load_code(0x30000, "mov cx, 0x99\n clc\n iret", 16);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax) & 0xffff, 0x42u);
  EXPECT_EQ(m.reg(cpu::kRbx) & 0xffff, 0x1111u);
  EXPECT_EQ(m.reg(cpu::kRcx) & 0xffff, 0x99u);
  EXPECT_TRUE(m.cpu.rflags() & arch::rflags::kCF);  // IRET restored the caller's CF
  EXPECT_EQ(seg(m, SegReg::kCS).selector, 0x1000u);
  EXPECT_EQ(m.reg(cpu::kRsp), 0x7000u);
}

struct JumpCase {
  const char* name;
  uint64_t desc;  // at GDT 0x50 (0: none)
  const char* code;
  Vector vector;
  uint32_t error;
};
class FarJumpFault : public ::testing::TestWithParam<JumpCase> {};

TEST_P(FarJumpFault, Faults) {
  const JumpCase& k = GetParam();
  TestMachine m;
  m.enter_protected32(layout::kCode);
  if (k.desc) set_gdt(m, 0x50, k.desc);
  m.load_code(layout::kCode, k.code, 32);
  expect_fault(m, k.vector, k.error);
  EXPECT_EQ(m.cpu.state.rip, layout::kCode);
  EXPECT_EQ(m.reg(cpu::kRsp), layout::kStackTop);
  EXPECT_EQ(seg(m, SegReg::kCS).selector, sel::kCode32);
}

INSTANTIATE_TEST_SUITE_P(
    FarTransfer, FarJumpFault,
    ::testing::Values(
        JumpCase{"Null", 0, "jmp 0:0", Vector::kGP, 0},
        JumpCase{"DataSegment", 0, "jmp 0x10:0", Vector::kGP, 0x10},
        JumpCase{"OtherDpl", 0, "jmp 0x20:0", Vector::kGP, 0x20},
        JumpCase{"RplAboveCpl", 0, "call 0x1b:0", Vector::kGP, 0x18},
        JumpCase{"NotPresent", seg_desc(0, 0xfffff, kCode, 0, true, true, false, false), "jmp 0x50:0", Vector::kNP,
                 0x50},
        JumpCase{"BeyondLimit", seg_desc(0, 0xfff, kCode, 0), "call 0x50:0x2000", Vector::kGP, 0},
        JumpCase{"Ldt", sys_desc(0x5000, 0xfff, 2), "jmp 0x50:0", Vector::kGP, 0x50},
        JumpCase{"ConformingAboveCpl", seg_desc(0, 0xfffff, kCodeConf, 3, true, true), "jmp 0x50:0", Vector::kGP,
                 0x50}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(FarTransfer, JumpToConformingCodeKeepsCpl) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  set_gdt(m, 0x50, seg_desc(0, 0xfffff, kCodeConf, 0, true, true));
  m.load_code(layout::kCode, "jmp 0x50:0x100100", 32);
  m.load_code(kUser, "mov eax, cs\n jmp .", 32);
  enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  EXPECT_EQ(m.run(100), RunExit::kBudget);
  EXPECT_EQ(m.reg(cpu::kRax), 0x53u);  // RPL = CPL = 3
  EXPECT_EQ(m.cpu.cpl(), 3u);
}

// ---- IRET and RET far across privilege levels ------------------------------------------------

TEST(FarTransfer, IretdToCpl3ThenInt80BackToTheTssStack) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.cpu.intercept_exceptions = false;
  use_tss32(m, 0x70000);
  m.set_idt_gate32(0x80, kHandler, sel::kCode32, 3);
  m.load_seg(SegReg::kES, sel::kUserData);  // stays: DPL 3
  m.load_code(layout::kCode, R"(
    push 0x2b
    push 0x60000
    pushfd
    or dword ptr [esp], 0x200
    push 0x23
    push 0x100100
    iretd
  )", 32);
  m.load_code(kUser, "mov ebx, ds\n mov ecx, es\n mov eax, 42\n int 0x80\n jmp .", 32);
  m.load_code(kHandler, "mov esi, esp\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 0u);  // DS (DPL 0) was nulled by the return to CPL 3
  EXPECT_EQ(m.reg(cpu::kRcx), sel::kUserData);
  EXPECT_EQ(m.reg(cpu::kRax), 42u);
  const uint64_t f = 0x70000 - 20;
  EXPECT_EQ(m.reg(cpu::kRsi), f);
  EXPECT_EQ(peek32(m, f), kUser + 11);
  EXPECT_EQ(peek32(m, f + 4), sel::kUserCode32);
  EXPECT_TRUE(peek32(m, f + 8) & arch::rflags::kIF);
  EXPECT_EQ(peek32(m, f + 12), 0x60000u);
  EXPECT_EQ(peek32(m, f + 16), sel::kUserData);
  EXPECT_EQ(m.cpu.cpl(), 0u);
}

TEST(FarTransfer, IretqToCpl3ThenInt80Back) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.cpu.intercept_exceptions = false;
  set_rsp0(m, 0x70000);
  m.set_idt_gate64(0x80, kHandler, sel::kCode64, 3);
  m.load_code(layout::kCode, R"(
    push 0x2b
    push 0x60000
    pushfq
    push 0x33
    push 0x100100
    iretq
  )", 64);
  m.load_code(kUser, "mov ebx, ds\n mov eax, 42\n int 0x80\n jmp .", 64);
  m.load_code(kHandler, "mov rsi, rsp\n hlt", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 0u);
  const uint64_t f = 0x70000 - 40;
  EXPECT_EQ(m.reg(cpu::kRsi), f);
  EXPECT_EQ(peek64(m, f), kUser + 9);
  EXPECT_EQ(peek64(m, f + 8), sel::kUserCode64);
  EXPECT_EQ(peek64(m, f + 24), 0x60000u);
  EXPECT_EQ(peek64(m, f + 32), sel::kUserData);
}

TEST(FarTransfer, IretqToCompatibilityModeAndInterruptBackTo64Bit) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.cpu.intercept_exceptions = false;
  set_rsp0(m, 0x70000);
  m.set_idt_gate64(0x80, kHandler, sel::kCode64, 3);
  m.load_code(layout::kCode, "push 0x2b\n push 0x60000\n push 2\n push 0x23\n push 0x100100\n iretq", 64);
  // 32-bit code: "mov eax, imm32" and "dec eax" (48, a REX prefix in 64-bit mode).
  m.load_code(kUser, "mov eax, 7\n dec eax\n int 0x80", 32);
  m.load_code(kHandler, "mov rsi, rsp\n hlt", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 6u);
  const uint64_t f = 0x70000 - 40;
  EXPECT_EQ(peek64(m, f), kUser + 8);
  EXPECT_EQ(peek64(m, f + 8), sel::kUserCode32);
  EXPECT_EQ(peek64(m, f + 24), 0x60000u);
  EXPECT_EQ(m.cpu.code_size(), 8u);
}

TEST(FarTransfer, Iretq64BitSamePrivilegePopsSsAndRsp) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, "mov rax, rsp\n push 0\n push 0x50000\n pushfq\n push 0x08\n push 0x100100\n iretq", 64);
  m.load_code(kUser, "mov rbx, rsp\n hlt", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x50000u);
  EXPECT_EQ(seg(m, SegReg::kSS).selector, 0u);  // a null SS returning to 64-bit CPL 0
}

TEST(FarTransfer, RetfToOuterPrivilegeReleasesBothStacksAndNullsSegments) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_seg(SegReg::kFS, sel::kUserData);
  m.load_code(layout::kCode, "push 0x2b\n push 0x5fff8\n push 1\n push 2\n push 0x23\n push 0x100100\n retf 8", 32);
  m.load_code(kUser, "mov ebx, ds\n mov ecx, fs\n jmp .", 32);
  EXPECT_EQ(m.run(100), RunExit::kBudget);
  EXPECT_EQ(m.cpu.cpl(), 3u);
  EXPECT_EQ(m.reg(cpu::kRsp), 0x60000u);
  EXPECT_EQ(m.reg(cpu::kRbx), 0u);
  EXPECT_EQ(m.reg(cpu::kRcx), sel::kUserData);
  EXPECT_EQ(seg(m, SegReg::kSS).selector, sel::kUserData);
}

TEST(FarTransfer, RetfToAMorePrivilegedLevelFaults) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, "push 0x18\n push 0x100100\n retf", 32);
  enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  expect_fault(m, Vector::kGP, sel::kCode32);
  EXPECT_EQ(m.reg(cpu::kRsp), 0x60000u - 8);  // nothing popped
}

TEST(FarTransfer, RetfToOuterLevelChecksTheStackSegment) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, "push 0x10\n push 0x60000\n push 0x23\n push 0x100100\n retf", 32);  // SS DPL 0
  expect_fault(m, Vector::kGP, sel::kData);
  EXPECT_EQ(m.cpu.cpl(), 0u);
}

TEST(FarTransfer, IretEflagsRulesDependOnCplAndIopl) {
  // At CPL 3 with IOPL 0: IOPL and IF come back unchanged; status flags are loaded.
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, "push 0x3201\n push 0x23\n push 0x100100\n iretd", 32);
  m.load_code(kUser, "pushfd\n pop eax\n jmp .", 32);
  enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  EXPECT_EQ(m.run(100), RunExit::kBudget);
  EXPECT_EQ(m.reg(cpu::kRax) & (arch::rflags::kIOPL | arch::rflags::kIF | arch::rflags::kCF), arch::rflags::kCF);

  // At CPL 0 both change.
  TestMachine k;
  k.enter_protected32(layout::kCode);
  k.load_code(layout::kCode, "push 0x3201\n push 0x18\n push 0x100100\n iretd", 32);
  k.load_code(kUser, "pushfd\n pop eax\n hlt", 32);
  ASSERT_EQ(k.run(), RunExit::kHalted);
  EXPECT_EQ(k.reg(cpu::kRax) & (arch::rflags::kIOPL | arch::rflags::kIF | arch::rflags::kCF), 0x3201u);
}

TEST(FarTransfer, IretWithNtInIa32eModeIsGp) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.cpu.set_rflags(m.cpu.rflags() | arch::rflags::kNT);
  m.load_code(layout::kCode, "iretq", 64);
  expect_fault(m, Vector::kGP, 0);
}

// ---- call gates ------------------------------------------------------------------------------

TEST(FarTransfer, CallGate32SwitchesStacksAndCopiesParameters) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  use_tss32(m, 0x70000);
  set_gdt(m, 0x50, gate_desc(sel::kCode32, uint32_t(kHandler), 0xc, 3, 2));
  m.load_code(layout::kCode, "push 0x11111111\n push 0x22222222\n call 0x53:0\n mov edi, esp\n jmp .", 32);
  m.load_code(kHandler, R"(
    mov eax, [esp+8]
    mov ebx, [esp+12]
    mov ecx, [esp+16]
    mov edx, [esp+20]
    mov esi, esp
    mov ebp, [esp+4]
    retf 8
  )", 32);
  enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  EXPECT_EQ(m.run(1000), RunExit::kBudget);
  EXPECT_EQ(m.reg(cpu::kRax), 0x22222222u);  // the parameter at the caller's ESP
  EXPECT_EQ(m.reg(cpu::kRbx), 0x11111111u);
  EXPECT_EQ(m.reg(cpu::kRcx), 0x60000u - 8);  // old ESP
  EXPECT_EQ(m.reg(cpu::kRdx), sel::kUserData);
  EXPECT_EQ(m.reg(cpu::kRsi), 0x70000u - 24);
  EXPECT_EQ(m.reg(cpu::kRbp), sel::kUserCode32);
  EXPECT_EQ(m.reg(cpu::kRdi), 0x60000u);  // RETF 8 released the parameters on both stacks
  EXPECT_EQ(m.cpu.cpl(), 3u);
}

TEST(FarTransfer, CallGate64SwitchesToRsp0) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  set_rsp0(m, 0x70000);
  set_gdt(m, 0x50, gate_desc(sel::kCode64, uint32_t(kHandler), 0xc, 3));
  set_gdt(m, 0x58, kHandler >> 32);
  m.poke<uint32_t>(0x9000, 0);
  m.poke<uint16_t>(0x9004, 0x53);
  m.load_code(layout::kCode, "call fword ptr [0x9000]\n mov rdi, rsp\n jmp .", 64);
  m.load_code(kHandler, R"(
    mov rax, [rsp]
    mov rbx, [rsp+8]
    mov rcx, [rsp+16]
    mov rdx, [rsp+24]
    mov rsi, rsp
    .byte 0x48, 0xcb
  )", 64);
  enter_user(m, sel::kUserCode64, layout::kCode, 0x60000);
  EXPECT_EQ(m.run(1000), RunExit::kBudget);
  EXPECT_EQ(m.reg(cpu::kRsi), 0x70000u - 32);
  EXPECT_EQ(m.reg(cpu::kRax), layout::kCode + 7);
  EXPECT_EQ(m.reg(cpu::kRbx), sel::kUserCode64);
  EXPECT_EQ(m.reg(cpu::kRcx), 0x60000u);
  EXPECT_EQ(m.reg(cpu::kRdx), sel::kUserData);
  EXPECT_EQ(m.reg(cpu::kRdi), 0x60000u);
  EXPECT_EQ(m.cpu.cpl(), 3u);
}

TEST(FarTransfer, CallGateChecks) {
  {  // JMP through a gate cannot raise privilege: #GP(code segment selector)
    TestMachine m;
    m.enter_protected32(layout::kCode);
    set_gdt(m, 0x50, gate_desc(sel::kCode32, uint32_t(kHandler), 0xc, 3));
    m.load_code(layout::kCode, "jmp 0x53:0", 32);
    enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
    expect_fault(m, Vector::kGP, sel::kCode32);
  }
  {  // gate DPL below CPL: #GP(gate selector)
    TestMachine m;
    m.enter_protected32(layout::kCode);
    set_gdt(m, 0x50, gate_desc(sel::kCode32, uint32_t(kHandler), 0xc, 0));
    m.load_code(layout::kCode, "call 0x53:0", 32);
    enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
    expect_fault(m, Vector::kGP, 0x50);
  }
  {  // not present: #NP(gate selector)
    TestMachine m;
    m.enter_protected32(layout::kCode);
    set_gdt(m, 0x50, gate_desc(sel::kCode32, uint32_t(kHandler), 0xc, 0, 0, false));
    m.load_code(layout::kCode, "call 0x50:0", 32);
    expect_fault(m, Vector::kNP, 0x50);
  }
  {  // IA-32e mode: the upper half of a 16-byte gate must have type 0
    TestMachine m;
    m.enter_long64(layout::kCode);
    set_gdt(m, 0x50, gate_desc(sel::kCode64, uint32_t(kHandler), 0xc, 0));
    set_gdt(m, 0x58, 0xcull << 40);
    m.poke<uint32_t>(0x9000, 0);
    m.poke<uint16_t>(0x9004, 0x50);
    m.load_code(layout::kCode, "jmp fword ptr [0x9000]", 64);
    expect_fault(m, Vector::kGP, 0x50);
  }
  {  // IA-32e mode: a gate must lead to 64-bit code
    TestMachine m;
    m.enter_long64(layout::kCode);
    set_gdt(m, 0x50, gate_desc(sel::kCode32, uint32_t(kHandler), 0xc, 0));
    set_gdt(m, 0x58, 0);
    m.poke<uint32_t>(0x9000, 0);
    m.poke<uint16_t>(0x9004, 0x50);
    m.load_code(layout::kCode, "jmp fword ptr [0x9000]", 64);
    expect_fault(m, Vector::kGP, sel::kCode32);
  }
}

// ---- hardware task switches ------------------------------------------------------------------

constexpr uint64_t kTss2 = 0x4000;
constexpr uint64_t kTask2 = layout::kCode + 0x200;

// A 32-bit protected-mode machine whose current task uses the TSS at layout::kTss (busy, TR =
// 0x40) and a second, available task at GDT 0x50 with its TSS at kTss2.
void two_tasks(TestMachine& m) {
  m.enter_protected32(layout::kCode);
  set_gdt(m, sel::kTss, sys_desc(uint32_t(layout::kTss), 0x67, arch::sys_type::kTss32Busy));
  m.cpu.state.tr = {sel::kTss, layout::kTss, 0x67, arch::ar::kP | arch::sys_type::kTss32Busy};
  set_gdt(m, 0x50, sys_desc(uint32_t(kTss2), 0x67, arch::sys_type::kTss32Avail));
  m.poke<uint32_t>(kTss2 + 0x20, uint32_t(kTask2));  // EIP
  m.poke<uint32_t>(kTss2 + 0x24, 0x2);               // EFLAGS
  m.poke<uint32_t>(kTss2 + 0x28, 0x1234);            // EAX
  m.poke<uint32_t>(kTss2 + 0x38, 0x50000);           // ESP
  m.poke<uint16_t>(kTss2 + 0x4c, sel::kCode32);      // CS
  for (unsigned off : {0x48u, 0x50u, 0x54u, 0x58u, 0x5cu}) m.poke<uint16_t>(kTss2 + off, sel::kData);
}
uint32_t desc_type(const TestMachine& m, uint16_t s) { return uint32_t(gdt(m, s) >> 40) & 0xf; }

TEST(FarTransfer, JmpToATssSwitchesTasks) {
  TestMachine m;
  two_tasks(m);
  m.load_code(layout::kCode, "mov ebx, 0x77\n jmp 0x50:0\n hlt", 32);
  m.load_code(kTask2, "mov ecx, eax\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRcx), 0x1234u);
  EXPECT_EQ(m.reg(cpu::kRsp), 0x50000u);
  EXPECT_EQ(m.cpu.state.tr.selector, 0x50u);
  EXPECT_EQ(peek32(m, layout::kTss + 0x20), layout::kCode + 12);  // outgoing EIP: after the JMP
  EXPECT_EQ(peek32(m, layout::kTss + 0x34), 0x77u);               // outgoing EBX
  EXPECT_EQ(desc_type(m, sel::kTss), arch::sys_type::kTss32Avail);
  EXPECT_EQ(desc_type(m, 0x50), arch::sys_type::kTss32Busy);
  EXPECT_TRUE(m.cpu.state.cr0 & arch::cr0::kTS);
  EXPECT_FALSE(m.cpu.rflags() & arch::rflags::kNT);
  EXPECT_EQ(m.peek<uint16_t>(kTss2), 0u);  // no back link for JMP
}

TEST(FarTransfer, CallThroughTaskGateNestsAndIretReturns) {
  TestMachine m;
  two_tasks(m);
  set_gdt(m, 0x58, gate_desc(0x50, 0, arch::sys_type::kTaskGate, 0));
  m.load_code(layout::kCode, "mov ebx, 0x77\n call 0x58:0\n mov edx, 0x99\n hlt", 32);
  m.load_code(kTask2, "mov ecx, eax\n pushfd\n pop esi\n iretd", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRdx), 0x99u);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x77u);  // the old task's registers came back from its TSS
  EXPECT_EQ(m.reg(cpu::kRsp), layout::kStackTop);
  EXPECT_EQ(m.cpu.state.tr.selector, sel::kTss);
  EXPECT_EQ(m.peek<uint16_t>(kTss2), sel::kTss);  // back link
  EXPECT_EQ(desc_type(m, 0x50), arch::sys_type::kTss32Avail);
  EXPECT_EQ(desc_type(m, sel::kTss), arch::sys_type::kTss32Busy);
  // The nested task ran with NT = 1; its saved EFLAGS has NT cleared by IRET.
  EXPECT_TRUE(peek32(m, kTss2 + 0x40) & arch::rflags::kNT);
  EXPECT_FALSE(peek32(m, kTss2 + 0x24) & arch::rflags::kNT);
  EXPECT_FALSE(m.cpu.rflags() & arch::rflags::kNT);
}

TEST(FarTransfer, ExceptionThroughTaskGatePushesItsErrorCodeOnTheNewStack) {
  TestMachine m;
  two_tasks(m);
  m.cpu.intercept_exceptions = false;
  set_idt32(m, 13, gate_desc(0x50, 0, arch::sys_type::kTaskGate, 0));
  m.load_code(layout::kCode, "mov ax, 0x7f8\n mov ds, ax\n hlt", 32);
  m.load_code(kTask2, "pop ecx\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRcx), 0x7f8u);
  EXPECT_EQ(m.cpu.state.tr.selector, 0x50u);
  EXPECT_EQ(peek32(m, layout::kTss + 0x20), layout::kCode + 4);  // the faulting instruction
  EXPECT_TRUE(m.cpu.rflags() & arch::rflags::kNT);
  EXPECT_EQ(m.peek<uint16_t>(kTss2), sel::kTss);
}

TEST(FarTransfer, TaskSwitchChecks) {
  {  // a busy TSS cannot be jumped to
    TestMachine m;
    two_tasks(m);
    m.load_code(layout::kCode, "jmp 0x40:0", 32);
    expect_fault(m, Vector::kGP, sel::kTss);
  }
  {  // a TSS shorter than 0x68 bytes: #TS(new TSS selector), old task intact
    TestMachine m;
    two_tasks(m);
    set_gdt(m, 0x50, sys_desc(uint32_t(kTss2), 0x60, arch::sys_type::kTss32Avail));
    m.load_code(layout::kCode, "jmp 0x50:0", 32);
    expect_fault(m, Vector::kTS, 0x50);
    EXPECT_EQ(m.cpu.state.tr.selector, sel::kTss);
    EXPECT_EQ(desc_type(m, 0x50), arch::sys_type::kTss32Avail);
  }
  {  // a bad CS in the new TSS: #TS(CS selector) in the new task's context
    TestMachine m;
    two_tasks(m);
    m.poke<uint16_t>(kTss2 + 0x4c, sel::kData);
    m.load_code(layout::kCode, "jmp 0x50:0", 32);
    expect_fault(m, Vector::kTS, sel::kData);
    EXPECT_EQ(m.cpu.state.tr.selector, 0x50u);
  }
  {  // no task switching in IA-32e mode
    TestMachine m;
    m.enter_long64(layout::kCode);
    set_gdt(m, 0x50, sys_desc(uint32_t(kTss2), 0x67, arch::sys_type::kTss32Avail));
    m.poke<uint32_t>(0x9000, 0);
    m.poke<uint16_t>(0x9004, 0x50);
    m.load_code(layout::kCode, "jmp fword ptr [0x9000]", 64);
    expect_fault(m, Vector::kGP, 0x50);
  }
}

}  // namespace
}  // namespace nestvm::test
