// Port I/O (src/cpu/insn/io.cpp, io_permission.cpp, and INS/OUTS in string.cpp): IN/OUT forms,
// and the protected-mode permission rules of SDM Vol. 1 §19.5 (IOPL, TSS I/O permission bitmap,
// virtual-8086 mode).
#include <gtest/gtest.h>

#include <initializer_list>
#include <vector>

#include "test_machine.h"

namespace nestvm::test {
namespace {

using arch::SegReg;
using cpu::RunExit;
namespace rf = arch::rflags;

constexpr uint32_t kBitmapOffset = 0x68;
constexpr uint32_t kFullLimit = kBitmapOffset + 0x2000;  // 65536 bits plus the trailing 0xff byte

// Writes an I/O permission bitmap into the TSS at layout::kTss that denies every port but
// `allowed`, and sets TR's limit.
void set_bitmap(TestMachine& m, std::initializer_list<uint16_t> allowed, uint32_t limit = kFullLimit,
                uint16_t base = kBitmapOffset) {
  m.poke<uint16_t>(layout::kTss + 0x66, base);
  std::vector<uint8_t> bm(0x2001, 0xff);
  for (uint16_t p : allowed) bm[p / 8] &= uint8_t(~(1u << (p & 7)));
  m.write(layout::kTss + base, bm.data(), bm.size());
  m.cpu.state.tr.limit = limit;
}

// CPL 3 in 64-bit mode with the given IOPL.
void to_user(TestMachine& m, unsigned iopl) {
  m.load_seg(SegReg::kCS, sel::kUserCode64);
  for (SegReg s : {SegReg::kSS, SegReg::kDS, SegReg::kES}) m.load_seg(s, sel::kUserData);
  m.cpu.set_rflags((m.cpu.rflags() & ~rf::kIOPL) | (uint64_t(iopl) << rf::kIoplShift));
  m.cpu.refresh_mode();
}

// Runs code ending in UD2 (HLT is privileged at CPL 3); true if it reached the UD2.
bool ran_to_ud2(TestMachine& m) {
  return m.run() == RunExit::kException && m.cpu.pending_event().vector == uint8_t(arch::Vector::kUD);
}
bool faulted_gp0(TestMachine& m) {
  return m.cpu.has_pending_event() && m.cpu.pending_event().vector == uint8_t(arch::Vector::kGP) &&
         m.cpu.pending_event().error == 0;
}

// Runs `in`/`out` code at CPL 3 with DX = port; returns whether it completed (else #GP(0)).
struct UserIo {
  TestMachine m;
  explicit UserIo(std::string_view src, unsigned iopl = 0) {
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, std::string(src) + "\n ud2", 64);
    to_user(m, iopl);
  }
  bool run(uint16_t port) {
    m.cpu.state.rip = layout::kCode;
    m.cpu.clear_pending_event();
    m.reg(cpu::kRdx) = port;
    if (ran_to_ud2(m)) return true;
    EXPECT_TRUE(faulted_gp0(m));
    EXPECT_EQ(m.cpu.state.rip, layout::kCode);
    return false;
  }
};

TEST(InsnIo, InAndOutFormsAtCpl0) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.io.in_values[0x60] = 0xab;
  m.io.in_values[0x1f0] = 0x1234;
  m.io.in_values[0xcfc] = 0x89abcdef;
  m.load_code(layout::kCode, R"(
    mov rax, -1
    in al, 0x60
    mov rbx, rax
    mov dx, 0x1f0
    mov rax, -1
    in ax, dx
    mov rsi, rax
    mov dx, 0xcfc
    mov rax, -1
    in eax, dx
    mov rdi, rax
    mov eax, 0x11223344
    out 0x80, al
    mov dx, 0x3f8
    out dx, ax
    out dx, eax
    out 0xe9, eax
    hlt
  )", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 0xffffffffffffffabull);  // IN AL merges
  EXPECT_EQ(m.reg(cpu::kRsi), 0xffffffffffff1234ull);  // IN AX merges
  EXPECT_EQ(m.reg(cpu::kRdi), 0x89abcdefull);          // IN EAX zero-extends
  ASSERT_EQ(m.io.outs.size(), 4u);
  EXPECT_EQ(m.io.outs[0].port, 0x80); EXPECT_EQ(m.io.outs[0].size, 1u); EXPECT_EQ(m.io.outs[0].value, 0x44u);
  EXPECT_EQ(m.io.outs[1].port, 0x3f8); EXPECT_EQ(m.io.outs[1].size, 2u); EXPECT_EQ(m.io.outs[1].value, 0x3344u);
  EXPECT_EQ(m.io.outs[2].port, 0x3f8); EXPECT_EQ(m.io.outs[2].size, 4u); EXPECT_EQ(m.io.outs[2].value, 0x11223344u);
  EXPECT_EQ(m.io.outs[3].port, 0xe9); EXPECT_EQ(m.io.outs[3].size, 4u);
}

TEST(InsnIo, RealModeIoIsAlwaysAllowed) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.io.in_values[0x71] = 0x5a;
  m.load_code(0x10000, "in al, 0x71\n out 0x70, al\n hlt", 16);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax) & 0xff, 0x5au);
  ASSERT_EQ(m.io.outs.size(), 1u);
  EXPECT_EQ(m.io.outs[0].port, 0x70);
}

TEST(InsnIo, IoplAtOrAboveCplAllowsEveryPort) {
  UserIo t("in al, dx\n out dx, eax", 3);
  t.m.cpu.state.tr.limit = 0x67;  // no bitmap at all
  t.m.poke<uint16_t>(layout::kTss + 0x66, 0x68);
  EXPECT_TRUE(t.run(0x1234));
  EXPECT_EQ(t.m.io.outs.size(), 1u);
}

TEST(InsnIo, CplAboveIoplWithoutBitmapFaults) {
  UserIo t("out dx, al", 2);
  t.m.cpu.state.tr.limit = 0x67;
  t.m.poke<uint16_t>(layout::kTss + 0x66, 0x68);  // the map would start past the limit
  EXPECT_FALSE(t.run(0x80));
  EXPECT_TRUE(t.m.io.outs.empty());
}

TEST(InsnIo, BitmapDecidesEachPortOfTheAccess) {
  UserIo t("in eax, dx");
  t.m.io.in_values[0x3f8] = 0xcafe;
  set_bitmap(t.m, {0x3f8, 0x3f9, 0x3fa});
  EXPECT_FALSE(t.run(0x3f8));  // 0x3fb is denied
  set_bitmap(t.m, {0x3f8, 0x3f9, 0x3fa, 0x3fb});
  EXPECT_TRUE(t.run(0x3f8));
  EXPECT_EQ(t.m.reg(cpu::kRax), 0xcafeu);
  EXPECT_FALSE(t.run(0x3f7));
}

TEST(InsnIo, BitmapBitsInTheSecondByte) {
  UserIo t("in ax, dx");
  set_bitmap(t.m, {0x3ff, 0x400});  // the access spans two bitmap bytes
  EXPECT_TRUE(t.run(0x3ff));
  set_bitmap(t.m, {0x3ff});
  EXPECT_FALSE(t.run(0x3ff));
}

TEST(InsnIo, ByteAccessNeedsOnlyItsOwnBit) {
  UserIo t("out dx, al");
  set_bitmap(t.m, {0x61});
  EXPECT_TRUE(t.run(0x61));
  EXPECT_FALSE(t.run(0x60));
  EXPECT_FALSE(t.run(0x62));
  ASSERT_EQ(t.m.io.outs.size(), 1u);
  EXPECT_EQ(t.m.io.outs[0].port, 0x61);
}

TEST(InsnIo, BitsBeyondTheTssLimitCountAsOne) {
  UserIo t("in al, dx");
  UserIo w("in ax, dx");
  for (UserIo* u : {&t, &w}) set_bitmap(u->m, {0x7, 0x8}, kBitmapOffset);  // only byte 0 is inside the limit
  EXPECT_TRUE(t.run(0x7));
  EXPECT_FALSE(w.run(0x7));  // port 8's bit is in byte 1, past the limit
  EXPECT_FALSE(t.run(0x8));
  set_bitmap(t.m, {0x7}, kBitmapOffset - 1);  // the bitmap starts past the limit
  EXPECT_FALSE(t.run(0x7));
}

TEST(InsnIo, MapBaseBeyondTheLimitDeniesEverything) {
  UserIo t("in al, dx");
  set_bitmap(t.m, {0x10}, kFullLimit);
  t.m.poke<uint16_t>(layout::kTss + 0x66, 0xffff);
  EXPECT_FALSE(t.run(0x10));
}

TEST(InsnIo, SixteenBitTssDeniesAtCplAboveIopl) {
  UserIo t("in al, dx");
  set_bitmap(t.m, {0x10});
  EXPECT_TRUE(t.run(0x10));
  t.m.cpu.state.tr.ar = arch::ar::kP | arch::sys_type::kTss16Busy;
  EXPECT_FALSE(t.run(0x10));
}

TEST(InsnIo, Virtual8086ModeAlwaysConsultsTheBitmap) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.cpu.state.tr = {sel::kTss, layout::kTss, kFullLimit, arch::ar::kP | arch::sys_type::kTss32Busy};
  set_bitmap(m, {0x42});
  m.io.in_values[0x42] = 0x99;
  // Virtual-8086 mode with IOPL = 3: segments are real-mode style, code at 0x2000:0.
  for (unsigned s = 0; s < arch::kNumSegRegs; ++s)
    m.cpu.state.seg[s] = {0x2000, 0x20000, 0xffff, arch::ar::kP | arch::ar::kS | (3u << arch::ar::kDplShift) | 3};
  m.cpu.state.rip = 0;
  m.cpu.set_rflags(m.cpu.rflags() | rf::kVM | rf::kIOPL);
  m.cpu.refresh_mode();
  ASSERT_TRUE(m.cpu.v86_mode());
  m.load_code(0x20000, "in al, dx\n ud2", 16);
  m.reg(cpu::kRdx) = 0x42;
  ASSERT_TRUE(ran_to_ud2(m));
  EXPECT_EQ(m.reg(cpu::kRax) & 0xff, 0x99u);

  m.cpu.clear_pending_event();
  m.cpu.state.rip = 0;
  m.reg(cpu::kRdx) = 0x43;
  m.run();
  EXPECT_TRUE(faulted_gp0(m));  // IOPL = 3 does not help in virtual-8086 mode
}

// ---- INS/OUTS ---------------------------------------------------------------------------------

TEST(InsnIo, RepOutsWritesEachElementInOrder) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, "rep outsw\n hlt", 64);
  for (uint16_t k = 0; k < 3; ++k) m.poke<uint16_t>(layout::kData + 2 * k, uint16_t(0x100 + k));
  m.reg(cpu::kRsi) = layout::kData;
  m.reg(cpu::kRcx) = 3;
  m.reg(cpu::kRdx) = 0x1f0;
  ASSERT_EQ(m.run(), RunExit::kHalted);
  ASSERT_EQ(m.io.outs.size(), 3u);
  for (unsigned k = 0; k < 3; ++k) {
    EXPECT_EQ(m.io.outs[k].port, 0x1f0);
    EXPECT_EQ(m.io.outs[k].size, 2u);
    EXPECT_EQ(m.io.outs[k].value, 0x100u + k);
  }
  EXPECT_EQ(m.reg(cpu::kRsi), layout::kData + 6);
  EXPECT_EQ(m.reg(cpu::kRcx), 0u);
}

TEST(InsnIo, LongRepOutsYieldsToTheRunLoop) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, "rep outsb\n hlt", 64);
  m.reg(cpu::kRsi) = layout::kData;
  m.reg(cpu::kRcx) = 1000;
  m.reg(cpu::kRdx) = 0xe9;
  ASSERT_EQ(m.run(1), RunExit::kBudget);
  EXPECT_GT(m.io.outs.size(), 0u);
  EXPECT_LT(m.io.outs.size(), 1000u);
  EXPECT_EQ(m.reg(cpu::kRcx), 1000u - m.io.outs.size());
  EXPECT_EQ(m.cpu.state.rip, layout::kCode);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.io.outs.size(), 1000u);
  EXPECT_EQ(m.reg(cpu::kRsi), layout::kData + 1000);
}

TEST(InsnIo, OutsTakesASegmentOverride) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.cpu.state.seg[unsigned(SegReg::kFS)].base = 0x300000;
  m.cpu.refresh_segment(SegReg::kFS);
  m.load_code(layout::kCode, "outs dx, byte ptr fs:[rsi]\n hlt", 64);
  m.poke<uint8_t>(0x300010, 0x5e);
  m.reg(cpu::kRsi) = 0x10;
  m.reg(cpu::kRdx) = 0x80;
  ASSERT_EQ(m.run(), RunExit::kHalted);
  ASSERT_EQ(m.io.outs.size(), 1u);
  EXPECT_EQ(m.io.outs[0].value, 0x5eu);
}

TEST(InsnIo, RepInsStoresEachElementBothDirections) {
  for (bool down : {false, true}) {
    SCOPED_TRACE(down ? "DF=1" : "DF=0");
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, "rep insd\n hlt", 64);
    m.io.in_values[0xcfc] = 0xdeadbeef;
    m.reg(cpu::kRdi) = layout::kData + 0x100;
    m.reg(cpu::kRcx) = 4;
    m.reg(cpu::kRdx) = 0xcfc;
    if (down) m.cpu.set_rflags(m.cpu.rflags() | rf::kDF);
    ASSERT_EQ(m.run(), RunExit::kHalted);
    const uint64_t lo = down ? layout::kData + 0x100 - 12 : layout::kData + 0x100;
    for (unsigned k = 0; k < 4; ++k) EXPECT_EQ(m.peek<uint32_t>(lo + 4 * k), 0xdeadbeefu);
    EXPECT_EQ(m.peek<uint32_t>(lo + 16), 0u);
    EXPECT_EQ(m.peek<uint32_t>(lo - 4), 0u);
    EXPECT_EQ(m.reg(cpu::kRdi), down ? lo - 4 : lo + 16);
  }
}

TEST(InsnIo, InsOutsObeyTheBitmapAtCpl3) {
  UserIo t("rep outsb");
  set_bitmap(t.m, {0x2f8});
  t.m.poke<uint32_t>(layout::kData, 0x030201);
  t.m.reg(cpu::kRsi) = layout::kData;
  t.m.reg(cpu::kRcx) = 3;
  EXPECT_FALSE(t.run(0x3f8));
  EXPECT_EQ(t.m.reg(cpu::kRcx), 3u);
  EXPECT_TRUE(t.m.io.outs.empty());
  EXPECT_TRUE(t.run(0x2f8));
  ASSERT_EQ(t.m.io.outs.size(), 3u);
  EXPECT_EQ(t.m.io.outs[2].value, 3u);

  UserIo i("insb");
  set_bitmap(i.m, {0x60});
  i.m.io.in_values[0x60] = 0x77;
  i.m.reg(cpu::kRdi) = layout::kData + 0x40;
  EXPECT_FALSE(i.run(0x61));
  EXPECT_EQ(i.m.peek<uint8_t>(layout::kData + 0x40), 0u);
  EXPECT_TRUE(i.run(0x60));
  EXPECT_EQ(i.m.peek<uint8_t>(layout::kData + 0x40), 0x77u);
  EXPECT_EQ(i.m.reg(cpu::kRdi), layout::kData + 0x41);
}

TEST(InsnIo, InsFaultOnTheDestinationLeavesRegisters) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, "rep insb\n hlt", 64);
  m.reg(cpu::kRdi) = 0x0000800000000000ull;  // non-canonical
  m.reg(cpu::kRcx) = 2;
  m.reg(cpu::kRdx) = 0x60;
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_TRUE(faulted_gp0(m));
  EXPECT_EQ(m.reg(cpu::kRcx), 2u);
  EXPECT_EQ(m.reg(cpu::kRdi), 0x0000800000000000ull);
}

}  // namespace
}  // namespace nestvm::test
