// Fast system calls (insn/syscall.cpp): SYSCALL/SYSRET and SYSENTER/SYSEXIT, Intel rules.
#include <gtest/gtest.h>

#include "test_machine.h"

namespace nestvm::test {
namespace {

using arch::SegReg;
using arch::Vector;
using cpu::RunExit;
namespace rf = arch::rflags;

constexpr uint64_t kUser = layout::kCode + 0x100;    // user code
constexpr uint64_t kKernel = layout::kCode + 0x200;  // system-call entry point

// Access rights the instructions load (VMX format): flat code/data with G = 1.
constexpr uint32_t kCode64Dpl0 = 0xa09b, kData0 = 0xc093;
constexpr uint32_t kCode64Dpl3 = 0xa0fb, kCode32Dpl3 = 0xc0fb, kData3 = 0xc0f3;

const arch::Segment& seg(TestMachine& m, SegReg s) { return m.cpu.state.seg[unsigned(s)]; }

void expect_flat(TestMachine& m, SegReg s, uint16_t sel, uint32_t ar) {
  EXPECT_EQ(seg(m, s).selector, sel);
  EXPECT_EQ(seg(m, s).base, 0u);
  EXPECT_EQ(seg(m, s).limit, 0xffffffffu);
  EXPECT_EQ(seg(m, s).ar, ar);
}

// Linux's layout: SYSCALL to 0x08/0x10, SYSRET from base 0x23 (0x23 compat, 0x2b data, 0x33 64-bit).
void setup_syscall(TestMachine& m) {
  m.cpu.state.msr.star = (uint64_t(0x23) << 48) | (uint64_t(sel::kCode64) << 32);
  m.cpu.state.msr.lstar = kKernel;
  m.cpu.state.msr.fmask = rf::kIF | rf::kDF | rf::kTF;
}

void to_ring3(TestMachine& m, uint64_t rip) {
  m.load_seg(SegReg::kCS, sel::kUserCode64);
  m.load_seg(SegReg::kSS, sel::kUserData);
  m.cpu.state.rip = rip;
  m.cpu.refresh_mode();
}

TEST(Syscall, RoundTripThroughSysret) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  setup_syscall(m);
  // CPL 0: SYSRET to user code with RFLAGS = IF | CF.
  m.load_code(layout::kCode, R"(
    mov rcx, 0x100100
    mov r11, 0x203
    .byte 0x48, 0x0f, 0x07    # SYSRET (REX.W): to 64-bit mode
  )", 64);
  // CPL 3: records its CS and RFLAGS, sets DF, calls the kernel.
  m.load_code(kUser, R"(
    mov r12, cs
    pushfq
    pop r13
    lea r14, [rip + after]
    std
    syscall
  after:
    hlt
  )", 64);
  m.load_code(kKernel, "hlt", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kR12), 0x33u);
  EXPECT_EQ(m.reg(cpu::kR13), 0x203u);
  // SYSCALL: RCX = next RIP, R11 = RFLAGS, RFLAGS masked by FMASK, flat CPL-0 CS/SS.
  EXPECT_EQ(m.cpu.state.rip, kKernel + 1);
  EXPECT_EQ(m.reg(cpu::kRcx), m.reg(cpu::kR14));
  EXPECT_EQ(m.reg(cpu::kR11), 0x203u | rf::kDF);
  EXPECT_EQ(m.cpu.rflags(), 0x3u);
  EXPECT_EQ(m.cpu.cpl(), 0u);
  EXPECT_TRUE(m.cpu.in_64bit_mode());
  expect_flat(m, SegReg::kCS, 0x08, kCode64Dpl0);
  expect_flat(m, SegReg::kSS, 0x10, kData0);
}

TEST(Syscall, RfIsClearedInR11AndRflags) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  setup_syscall(m);
  m.cpu.state.msr.fmask = 0;
  m.load_code(layout::kCode, "syscall", 64);
  m.load_code(kKernel, "hlt", 64);
  m.cpu.set_rflags(0x2 | rf::kRF | rf::kZF);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kR11), 0x2u | rf::kZF);
  EXPECT_EQ(m.cpu.rflags() & rf::kRF, 0u);
}

TEST(Sysret, ReturnsToCompatibilityModeWithoutRexW) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  setup_syscall(m);
  m.load_code(layout::kCode, "mov rcx, 0xffffffff00100100\n mov r11, -1\n .byte 0x0f, 0x07   # SYSRET", 64);
  m.load_code(kUser, "hlt", 32);  // CPL 3: HLT is #GP(0)
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kGP));
  EXPECT_EQ(m.cpu.state.rip, kUser);  // ECX
  EXPECT_EQ(m.cpu.cpl(), 3u);
  EXPECT_TRUE(m.cpu.long_mode());
  EXPECT_FALSE(m.cpu.in_64bit_mode());
  expect_flat(m, SegReg::kCS, 0x23, kCode32Dpl3);
  expect_flat(m, SegReg::kSS, 0x2b, kData3);
  // R11 = all ones: RF, VM and the reserved bits are dropped, bit 1 set; TF is set too, but the
  // HLT fault comes before the single-step trap.
  EXPECT_EQ(m.cpu.rflags(), 0x3c7fd7u);
}

TEST(Sysret, ReturnsTo64BitModeWithRexW) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  setup_syscall(m);
  m.load_code(layout::kCode, "mov rcx, 0x100100\n mov r11, 0x3246\n .byte 0x48, 0x0f, 0x07", 64);
  m.load_code(kUser, "hlt", 64);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.state.rip, kUser);
  EXPECT_TRUE(m.cpu.in_64bit_mode());
  EXPECT_EQ(m.cpu.cpl(), 3u);
  expect_flat(m, SegReg::kCS, 0x33, kCode64Dpl3);
  expect_flat(m, SegReg::kSS, 0x2b, kData3);
  EXPECT_EQ(m.cpu.rflags(), 0x3246u);
}

TEST(Sysret, FaultsBeforeChangingAnything) {
  struct Case { const char* name; bool cpl3, sce; uint64_t rcx; Vector v; };
  const Case cases[] = {
      {"CPL 3", true, true, kUser, Vector::kGP},
      {"non-canonical RCX", false, true, 0x0000800000000000ull, Vector::kGP},
      {"EFER.SCE = 0", false, false, kUser, Vector::kUD},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    TestMachine m;
    m.enter_long64(layout::kCode);
    setup_syscall(m);
    m.load_code(layout::kCode, ".byte 0x48, 0x0f, 0x07", 64);
    if (k.cpl3) to_ring3(m, layout::kCode);
    if (!k.sce) m.cpu.state.msr.efer &= ~arch::efer::kSCE;
    m.reg(cpu::kRcx) = k.rcx;
    const arch::Segment cs = seg(m, SegReg::kCS);
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(k.v));
    EXPECT_EQ(m.cpu.state.rip, layout::kCode);
    EXPECT_EQ(seg(m, SegReg::kCS).selector, cs.selector);
    EXPECT_EQ(seg(m, SegReg::kCS).ar, cs.ar);
  }
}

TEST(Syscall, UndefinedWithoutSceOrOutside64BitMode) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  setup_syscall(m);
  m.cpu.state.msr.efer &= ~arch::efer::kSCE;
  m.load_code(layout::kCode, "syscall", 64);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kUD));

  TestMachine c;  // compatibility mode: Intel processors do not have SYSCALL there
  c.enter_long64(layout::kCode);
  setup_syscall(c);
  c.load_seg(SegReg::kCS, sel::kCode32);
  c.cpu.refresh_mode();
  c.load_code(layout::kCode, "syscall", 32);
  ASSERT_EQ(c.run(), RunExit::kException);
  EXPECT_EQ(c.cpu.pending_event().vector, uint8_t(Vector::kUD));
  EXPECT_EQ(c.cpu.state.rip, layout::kCode);
}

// ---- SYSENTER / SYSEXIT --------------------------------------------------------------------

void setup_sysenter(TestMachine& m, uint16_t cs) {
  m.cpu.state.msr.sysenter_cs = cs;
  m.cpu.state.msr.sysenter_esp = 0x70000;
  m.cpu.state.msr.sysenter_eip = kKernel;
}

TEST(Sysenter, RoundTripIn64BitMode) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  setup_sysenter(m, sel::kCode64);
  m.load_code(kUser, "sysenter", 64);
  // CPL 0: record, then SYSEXIT (REX.W) to 64-bit user code at RDX with RSP = RCX.
  m.load_code(kKernel, R"(
    pushfq
    pop r12
    mov r13, rsp
    mov rcx, 0x7f000
    mov rdx, 0x100300
    .byte 0x48, 0x0f, 0x35
  )", 64);
  m.load_code(layout::kCode + 0x300, "hlt", 64);
  to_ring3(m, kUser);
  m.cpu.set_rflags(0x2 | rf::kIF | rf::kCF);
  ASSERT_EQ(m.run(), RunExit::kException);  // HLT at CPL 3
  EXPECT_EQ(m.reg(cpu::kR12), 0x2u | rf::kCF);  // IF cleared by SYSENTER
  EXPECT_EQ(m.reg(cpu::kR13), 0x70000u);
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 0x300);
  EXPECT_EQ(m.reg(cpu::kRsp), 0x7f000u);
  EXPECT_EQ(m.cpu.cpl(), 3u);
  EXPECT_TRUE(m.cpu.in_64bit_mode());
  expect_flat(m, SegReg::kCS, 0x2b, kCode64Dpl3);  // SYSENTER_CS + 32, RPL 3
  expect_flat(m, SegReg::kSS, 0x33, kData3);
}

TEST(Sysenter, EntersAtCpl0WithFlatSegments) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  setup_sysenter(m, sel::kCode64 | 3);  // the RPL bits of the MSR are dropped
  m.load_code(kUser, "sysenter", 64);
  m.load_code(kKernel, "hlt", 64);
  to_ring3(m, kUser);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.cpu.cpl(), 0u);
  EXPECT_EQ(m.reg(cpu::kRsp), 0x70000u);
  expect_flat(m, SegReg::kCS, 0x08, kCode64Dpl0);
  expect_flat(m, SegReg::kSS, 0x10, kData0);
}

TEST(Sysenter, RoundTripIn32BitProtectedMode) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  setup_sysenter(m, sel::kCode32);
  m.cpu.state.msr.sysenter_eip = 0xffffffff00000000ull | kKernel;  // EIP is the low half
  m.load_code(layout::kCode, "sysenter", 32);
  m.load_code(kKernel, "mov ebx, esp\n mov ecx, 0x6f000\n mov edx, 0x100300\n sysexit", 32);
  m.load_code(layout::kCode + 0x300, "hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x70000u);
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 0x300);
  EXPECT_EQ(m.reg(cpu::kRsp), 0x6f000u);
  EXPECT_EQ(m.cpu.cpl(), 3u);
  expect_flat(m, SegReg::kCS, 0x2b, kCode32Dpl3);  // SYSENTER_CS + 16, RPL 3
  expect_flat(m, SegReg::kSS, 0x33, kData3);
}

TEST(Sysenter, SysexitWithoutRexWReturnsToCompatibilityMode) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  setup_sysenter(m, sel::kCode64);
  m.load_code(layout::kCode, "mov rcx, 0x7e000\n mov rdx, 0xffffffff00100300\n .byte 0x0f, 0x35   # SYSEXIT", 64);
  m.load_code(layout::kCode + 0x300, "hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 0x300);
  EXPECT_FALSE(m.cpu.in_64bit_mode());
  EXPECT_TRUE(m.cpu.long_mode());
  expect_flat(m, SegReg::kCS, 0x1b, kCode32Dpl3);
}

TEST(Sysenter, FaultsLeaveStateAlone) {
  struct Case { const char* name; const char* code; uint16_t cs; bool cpl3; };
  const Case cases[] = {
      {"SYSENTER with SYSENTER_CS[15:2] = 0", "sysenter", 3, false},
      {"SYSEXIT at CPL 3", ".byte 0x0f, 0x35", sel::kCode64, true},
      {"SYSEXIT with SYSENTER_CS = 0", ".byte 0x0f, 0x35", 0, false},
      {"SYSEXIT (REX.W) to non-canonical RDX", "mov rdx, 0x0000800000000000\n f: .byte 0x48, 0x0f, 0x35", sel::kCode64, false},
      {"SYSEXIT (REX.W) with non-canonical RCX", "mov rcx, 0x0000800000000000\n f: .byte 0x48, 0x0f, 0x35", sel::kCode64, false},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    TestMachine m;
    m.enter_long64(layout::kCode);
    setup_sysenter(m, k.cs);
    std::string code = k.code;
    if (code.find("f:") == std::string::npos) code = "f: " + code;
    m.load_code(layout::kCode, "lea r15, [rip + f]\n mov rdx, 0x100300\n" + code, 64);
    if (k.cpl3) to_ring3(m, layout::kCode);
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kGP));
    EXPECT_EQ(m.cpu.pending_event().error, 0u);
    EXPECT_EQ(m.cpu.state.rip, m.reg(cpu::kR15));
    EXPECT_EQ(m.cpu.cpl(), k.cpl3 ? 3u : 0u);
  }
}

}  // namespace
}  // namespace nestvm::test
