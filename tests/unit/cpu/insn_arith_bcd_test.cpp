// Decimal adjustments (src/cpu/insn/bcd.cpp): DAA DAS AAA AAS AAM AAD checked against the host
// processor in 32-bit code (compatibility mode on the host), every AL value with every AF/CF
// combination, all six status flags included; #DE for AAM 0; #UD in 64-bit mode.
#include <gtest/gtest.h>

#include "insn_arith_host.h"

namespace nestvm::test::arith {
namespace {

using cpu::RunExit;

// Walks AL through 0-255 and AF/CF through their four combinations (1024 runs), with AH and
// the other flags random.
Fix every_al_af_cf() {
  return [n = 0u](Regs& r, std::mt19937_64&, uint8_t*) mutable {
    const unsigned k = n++ % 1024;
    r.gpr[0] = (r.gpr[0] & ~0xffull) | (k & 0xff);
    r.flags &= ~(arch::rflags::kAF | arch::rflags::kCF);
    if (k & 0x100) r.flags |= arch::rflags::kAF;
    if (k & 0x200) r.flags |= arch::rflags::kCF;
  };
}

TEST(InsnArithBcd, AdjustmentsMatchHost) {
  std::vector<DiffCase> cases;
  for (const char* f : {"daa", "das", "aaa", "aas", "aam", "aam 7", "aam 0x10", "aam 0xff", "aad", "aad 7", "aad 0",
                        "aad 0xff"})
    cases.push_back(DiffCase(f, 32).with(every_al_af_cf()).iterations(2048));
  diff(cases);
}

TEST(InsnArithBcd, AamZeroRaisesDivideError) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, "mov eax, 0x1234\naam 0\nhlt", 32);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kDE));
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 5);
  EXPECT_EQ(m.reg(cpu::kRax), 0x1234u);
}

TEST(InsnArithBcd, InvalidIn64BitMode) {
  for (const char* f : {".byte 0x27", ".byte 0x2f", ".byte 0x37", ".byte 0x3f", ".byte 0xd4, 0x0a", ".byte 0xd5, 0x0a"}) {
    SCOPED_TRACE(f);
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, std::string(f) + "\nhlt", 64);
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kUD));
    EXPECT_EQ(m.cpu.state.rip, layout::kCode);
  }
}

// Packed and unpacked BCD arithmetic as real-mode software does it (SDM Vol. 1 §7.3.2.6).
TEST(InsnArithBcd, RealModeDecimalArithmetic) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.load_code(0x10000, R"(
    mov al, 0x38
    add al, 0x45
    daa               # 38 + 45 = 83
    mov bl, al
    mov al, 0x83
    sub al, 0x45
    das               # 83 - 45 = 38
    mov bh, al
    mov ax, 0x0009
    add al, 0x08
    aaa               # 9 + 8 = 17: AX = 0x0107, CF = 1
    mov cx, ax
    setc dl
    mov ax, 0x0103
    sub al, 0x05
    aas               # 13 - 5 = 8: AX = 0x0008
    mov si, ax
    mov al, 63
    aam               # AH = 6, AL = 3
    mov di, ax
    mov ax, 0x0407
    aad               # 47
    hlt
  )", 16);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx) & 0xffff, 0x3883u);
  EXPECT_EQ(m.reg(cpu::kRcx) & 0xffff, 0x0107u);
  EXPECT_EQ(m.reg(cpu::kRdx) & 0xff, 1u);
  EXPECT_EQ(m.reg(cpu::kRsi) & 0xffff, 0x0008u);
  EXPECT_EQ(m.reg(cpu::kRdi) & 0xffff, 0x0603u);
  EXPECT_EQ(m.reg(cpu::kRax) & 0xffff, 47u);
}

}  // namespace
}  // namespace nestvm::test::arith
