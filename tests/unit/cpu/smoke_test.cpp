// End-to-end checks of the execution loop on small programs.
#include <gtest/gtest.h>

#include "test_machine.h"

namespace nestvm::test {
namespace {

using cpu::RunExit;

TEST(Smoke, LongModeArithmeticLoop) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    xor eax, eax
    mov ecx, 100
  1:
    add rax, rcx
    dec ecx
    jnz 1b
    hlt
  )", 64);
  EXPECT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 5050u);
  EXPECT_EQ(m.reg(cpu::kRcx), 0u);
}

// run() stops at block boundaries; run_one() after exactly one instruction, also inside a block
// and with the block already compiled by the JIT (L0's emulator relies on it).
TEST(Smoke, RunOneExecutesExactlyOneInstruction) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
  1:
    mov eax, 1
    mov ebx, 2
    mov ecx, 3
    xor eax, eax
    xor ebx, ebx
    xor ecx, ecx
    jmp 1b
  )", 64);
  EXPECT_EQ(m.cpu.run(200), RunExit::kBudget);  // hot: compiled by the JIT
  m.cpu.state.rip = layout::kCode;
  const uint64_t retired = m.cpu.instructions_retired();
  EXPECT_EQ(m.cpu.run_one(), RunExit::kBudget);
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 5);
  EXPECT_EQ(m.reg(cpu::kRax), 1u);
  EXPECT_EQ(m.reg(cpu::kRbx), 0u);
  EXPECT_EQ(m.cpu.instructions_retired(), retired + 1);
  EXPECT_EQ(m.cpu.run_one(), RunExit::kBudget);
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 10);
  EXPECT_EQ(m.reg(cpu::kRbx), 2u);
  EXPECT_EQ(m.reg(cpu::kRcx), 0u);
  // Afterwards run() runs whole blocks again.
  EXPECT_EQ(m.cpu.run(3), RunExit::kBudget);
  EXPECT_GT(m.cpu.instructions_retired(), retired + 5);
}

TEST(Smoke, CallRetAndStack) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov rdi, 7
    call f
    hlt
  f:
    push rbx
    lea rax, [rdi + rdi*4]
    pop rbx
    ret
  )", 64);
  EXPECT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 35u);
  EXPECT_EQ(m.reg(cpu::kRsp), layout::kStackTop);
}

TEST(Smoke, RealModeCountsWith16BitRegisters) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0x0);
  m.load_code(0x10000, R"(
    mov ax, 0x1234
    mov bx, 0x10
    add ax, bx
    mov [0x100], ax
    hlt
  )", 16);
  EXPECT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax) & 0xffff, 0x1244u);
  EXPECT_EQ(m.peek<uint16_t>(0x100), 0x1244u);  // DS = 0
}

TEST(Smoke, SelfModifyingCodeIsSeen) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  // Overwrites the immediate of the instruction it is about to execute a second time.
  m.load_code(layout::kCode, R"(
    xor ebx, ebx
    mov ecx, 2
  1:
    mov eax, 1
    add ebx, eax
    mov byte ptr [rip + 1b + 1], 5

    dec ecx
    jnz 1b
    hlt
  )", 64);
  EXPECT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 6u);  // 1 + 5
}

}  // namespace
}  // namespace nestvm::test

namespace nestvm::test {
namespace {

TEST(Smoke, FaultIsReportedWithRipAtTheInstruction) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov rax, 0x0000800000000000
    mov rbx, [rax]
    hlt
  )", 64);
  ASSERT_EQ(m.run(), cpu::RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
  EXPECT_EQ(m.cpu.pending_event().error, 0u);
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 10);  // at the faulting MOV
}

}  // namespace
}  // namespace nestvm::test

namespace nestvm::test {
namespace {

TEST(Decode, InvalidOpcodeIsUdAndOverlongInstructionIsGp) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, ".byte 0x06", 64);        // PUSH ES: invalid in 64-bit mode
  ASSERT_EQ(m.run(), cpu::RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kUD));
  EXPECT_EQ(m.cpu.state.rip, layout::kCode);

  TestMachine m2;
  m2.enter_long64(layout::kCode);
  // Fourteen operand-size prefixes before a 2-byte instruction: 16 bytes in all.
  m2.load_code(layout::kCode, ".fill 14, 1, 0x66\n.byte 0x01, 0xc0", 64);
  ASSERT_EQ(m2.run(), cpu::RunExit::kException);
  EXPECT_EQ(m2.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
  EXPECT_EQ(m2.cpu.pending_event().error, 0u);
}

TEST(Decode, SysenterInRealModeIsGp) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.load_code(0x10000, ".byte 0x0f, 0x34", 16);
  ASSERT_EQ(m.run(), cpu::RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
}

}  // namespace
}  // namespace nestvm::test
