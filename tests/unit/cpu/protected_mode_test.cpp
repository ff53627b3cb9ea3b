// Protected-mode machinery end to end: the mode switches a boot loader makes (real -> protected ->
// long), real-address-mode segment loads, and virtual-8086 mode (entered by IRET, left by
// interrupts, resumed by IRET).
#include <gtest/gtest.h>

#include <string>

#include "protected_mode_helpers.h"

namespace nestvm::test {
namespace {

using arch::SegReg;
using arch::Vector;
using cpu::RunExit;
using namespace pm;

const arch::Segment& seg(const TestMachine& m, SegReg s) { return m.cpu.state.seg[unsigned(s)]; }
uint32_t peek32(const TestMachine& m, uint64_t a) { return m.peek<uint32_t>(a); }

// Real mode -> LGDT, CR0.PE, far JMP -> 32-bit protected mode -> CR4.PAE, CR3, EFER.LME (WRMSR),
// CR0.PG, far JMP -> 64-bit mode: the sequence every x86-64 boot loader runs.
TEST(ProtectedMode, BootLoaderSwitchesRealToProtectedToLongMode) {
  TestMachine m;
  m.enter_long64(layout::kCode);  // for its GDT and identity-mapped page tables in RAM
  m.enter_real_mode(0, 0x7c00);
  m.poke<uint16_t>(0x7e00, 0x4f);  // the GDT pseudo-descriptor
  m.poke<uint32_t>(0x7e02, uint32_t(layout::kGdt));
  m.load_code(0x7c00, R"(
    cli
    xor ax, ax
    mov ds, ax
    lgdt [0x7e00]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    .byte 0x66, 0xea
    .long 0x8000
    .word 0x18
  )", 16);
  m.load_code(0x8000, R"(
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7c00
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, 0x10000
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    jmp 0x08:0x9000
  )", 32);
  m.load_code(0x9000, "mov rax, 0x1122334455667788\n push rax\n hlt", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x1122334455667788ull);
  EXPECT_EQ(m.reg(cpu::kRsp), 0x7c00u - 8);
  EXPECT_EQ(m.peek<uint64_t>(0x7c00 - 8), 0x1122334455667788ull);
  EXPECT_TRUE(m.cpu.long_mode());
  EXPECT_EQ(m.cpu.code_size(), 8u);
  EXPECT_EQ(m.cpu.cpl(), 0u);
  EXPECT_EQ(seg(m, SegReg::kCS).selector, sel::kCode64);
  EXPECT_EQ(seg(m, SegReg::kSS).selector, sel::kData);
  EXPECT_TRUE(gdt(m, sel::kData) & (1ull << 40));  // accessed
}

// Real-mode loads set the base and keep the limit and attributes ("unreal mode").
TEST(ProtectedMode, RealModeSegmentLoadsKeepTheDescriptorCacheLimit) {
  TestMachine m;
  m.enter_real_mode(0, 0x7c00);
  arch::Segment& ds = m.cpu.state.seg[unsigned(SegReg::kDS)];
  ds.limit = 0xffffffff;
  ds.ar |= arch::ar::kG | arch::ar::kDB;
  m.cpu.refresh_mode();
  m.poke<uint32_t>(0x110000, 0xfeedface);
  m.load_code(0x7c00, "mov ax, 0x1000\n mov ds, ax\n mov ebx, 0x100000\n mov eax, [ebx]\n hlt", 16);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0xfeedfaceu);
  EXPECT_EQ(ds.base, 0x10000u);
  EXPECT_EQ(ds.limit, 0xffffffffu);
}

TEST(ProtectedMode, RealModeAccessBeyondTheLimitFaults) {
  TestMachine m;
  m.enter_real_mode(0, 0x7c00);
  m.load_code(0x7c00, "mov ax, 0x1000\n mov ds, ax\n mov ebx, 0x10000\n mov eax, [ebx]\n hlt", 16);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kGP));
}

// Enters virtual-8086 mode with IRETD (VM = 1 in the image, CPL 0), takes INT 0x21 to a ring-0
// handler, and resumes the virtual-8086 task with IRETD.
void v86_setup(TestMachine& m, uint32_t iopl) {
  m.enter_protected32(layout::kCode);
  m.cpu.intercept_exceptions = false;
  use_tss32(m, 0x70000);
  m.set_idt_gate32(0x21, layout::kCode + 0x1000, sel::kCode32, 3);
  m.set_idt_gate32(13, layout::kCode + 0x2000);
  const uint32_t eflags = 0x20000 | (iopl << 12) | 0x2;
  m.load_code(layout::kCode, R"(
    push 0x0
    push 0x0
    push 0x3000
    push 0x0
    push 0x2000
    push 0x0ffe
    push )" + std::to_string(eflags) + R"(
    push 0x4000
    push 0x0100
    iretd
  )", 32);
  m.poke<uint16_t>(0x30010, 0xbeef);
  m.load_code(0x40100, R"(
    mov ax, [0x10]
    mov bx, ss
    int 0x21
    mov dx, 0x5000
    mov es, dx
    mov di, es
    jmp .
  )", 16);
}

TEST(ProtectedMode, Virtual8086InterruptToRing0PushesSegmentsAndNullsThem) {
  TestMachine m;
  v86_setup(m, 3);
  m.load_code(layout::kCode + 0x1000, "mov esi, esp\n mov ecx, ds\n mov ebp, gs\n iretd", 32);
  EXPECT_EQ(m.run(1000), RunExit::kBudget);
  EXPECT_EQ(m.reg(cpu::kRax) & 0xffff, 0xbeefu);  // DS base 0x30000 in virtual-8086 mode
  EXPECT_EQ(m.reg(cpu::kRbx) & 0xffff, 0x2000u);
  const uint64_t f = 0x70000 - 36;
  EXPECT_EQ(m.reg(cpu::kRsi), f);
  EXPECT_EQ(peek32(m, f + 0), 0x107u);  // past INT 0x21
  EXPECT_EQ(peek32(m, f + 4), 0x4000u);
  EXPECT_TRUE(peek32(m, f + 8) & arch::rflags::kVM);
  EXPECT_EQ(peek32(m, f + 12), 0x0ffeu);
  EXPECT_EQ(peek32(m, f + 16), 0x2000u);
  EXPECT_EQ(peek32(m, f + 20), 0u);       // ES
  EXPECT_EQ(peek32(m, f + 24), 0x3000u);  // DS
  EXPECT_EQ(m.reg(cpu::kRcx), 0u);        // the handler ran with null DS and GS
  EXPECT_EQ(m.reg(cpu::kRbp), 0u);
  // Back in virtual-8086 mode after the handler's IRETD.
  EXPECT_TRUE(m.cpu.v86_mode());
  EXPECT_EQ(m.cpu.cpl(), 3u);
  EXPECT_EQ(m.reg(cpu::kRdi) & 0xffff, 0x5000u);
  EXPECT_EQ(seg(m, SegReg::kES).base, 0x50000u);
  EXPECT_EQ(seg(m, SegReg::kES).limit, 0xffffu);
  EXPECT_EQ(seg(m, SegReg::kES).ar, 0xf3u);
  EXPECT_EQ(seg(m, SegReg::kDS).base, 0x30000u);
  EXPECT_EQ(m.reg(cpu::kRsp), 0x0ffeu);
}

TEST(ProtectedMode, Virtual8086IntNBelowIopl3GoesToTheMonitorAsGp) {
  TestMachine m;
  v86_setup(m, 0);
  m.load_code(layout::kCode + 0x1000, "mov eax, 0xbad\n hlt", 32);
  m.load_code(layout::kCode + 0x2000, "pop eax\n pop ebx\n pop ecx\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0u);       // #GP(0)
  EXPECT_EQ(m.reg(cpu::kRbx), 0x105u);   // at the INT
  EXPECT_EQ(m.reg(cpu::kRcx), 0x4000u);
  EXPECT_FALSE(m.cpu.v86_mode());
}

TEST(ProtectedMode, Virtual8086IretNeedsIopl3) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, "push 0\n push 0\n push 0\n push 0\n push 0x2000\n push 0xffe\n push 0x20002\n "
                             "push 0x4000\n push 0x100\n iretd", 32);
  m.load_code(0x40100, "iret", 16);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kGP));
  EXPECT_EQ(m.cpu.pending_event().error, 0u);
  EXPECT_EQ(m.cpu.state.rip, 0x100u);
  EXPECT_TRUE(m.cpu.v86_mode());
}

}  // namespace
}  // namespace nestvm::test
