// SSE and MMX data movement (insn/sse_move.cpp): the same instruction sequences run natively
// and in the core, plus alignment, availability and MMX-state rules.
#include <gtest/gtest.h>

#include <array>
#include <cstring>

#include "test_machine.h"

namespace nestvm::test {
namespace {

using arch::SegReg;
using arch::Vector;
using cpu::RunExit;
namespace cr0 = arch::cr0;
namespace cr4 = arch::cr4;

constexpr uint64_t kBuf = layout::kData;  // RSI in the snippets

struct Regs {
  alignas(16) std::array<uint8_t, 256> xmm{};
  uint64_t rax = 0, rbx = 0, rcx = 0;
  alignas(16) std::array<uint8_t, 128> buf{};
};

Regs initial() {
  Regs r;
  for (unsigned i = 0; i < 256; ++i) r.xmm[i] = uint8_t(0x11 * (i % 15) + i / 16);
  for (unsigned i = 0; i < 128; ++i) r.buf[i] = uint8_t(0xf0 - i);
  r.rax = 0x8877665544332211ull;
  r.rbx = r.rcx = ~0ull;
  return r;
}

// Every XMM form of MOVD/MOVQ and the 128-bit moves, in Intel syntax shared by GNU as (for the
// core) and the host (inline assembly).
#define XMM_MOVES                                                         \
  "movd xmm0, eax\n"                                                      \
  "movq xmm1, rax\n"                                                      \
  "movd ebx, xmm2\n"                                                      \
  "movq rcx, xmm2\n"                                                      \
  "movd xmm3, dword ptr [rsi]\n"                                          \
  "movq xmm4, qword ptr [rsi + 8]\n"                                      \
  "movq xmm5, xmm6\n"                                                     \
  "movq qword ptr [rsi + 16], xmm7\n"                                     \
  ".byte 0x66, 0x45, 0x0f, 0xd6, 0xc8\n" /* MOVQ xmm8, xmm9 (66 0F D6) */ \
  "movd dword ptr [rsi + 24], xmm10\n"                                    \
  "movdqu xmm11, [rsi + 33]\n"                                            \
  "movups [rsi + 49], xmm12\n"                                            \
  "movaps xmm13, [rsi + 64]\n"                                            \
  "movdqa [rsi + 80], xmm14\n"                                            \
  "movapd xmm15, xmm0\n"                                                  \
  "movupd [rsi + 96], xmm1\n"                                             \
  "movdqa xmm6, xmm14\n"

Regs host_xmm_moves() {
  Regs r = initial();
  uint8_t* x = r.xmm.data();
  asm volatile(
      ".intel_syntax noprefix\n"
      "movdqu xmm0, [rdi]\n movdqu xmm1, [rdi + 16]\n movdqu xmm2, [rdi + 32]\n movdqu xmm3, [rdi + 48]\n"
      "movdqu xmm4, [rdi + 64]\n movdqu xmm5, [rdi + 80]\n movdqu xmm6, [rdi + 96]\n movdqu xmm7, [rdi + 112]\n"
      "movdqu xmm8, [rdi + 128]\n movdqu xmm9, [rdi + 144]\n movdqu xmm10, [rdi + 160]\n movdqu xmm11, [rdi + 176]\n"
      "movdqu xmm12, [rdi + 192]\n movdqu xmm13, [rdi + 208]\n movdqu xmm14, [rdi + 224]\n movdqu xmm15, [rdi + 240]\n"
      XMM_MOVES
      "movdqu [rdi], xmm0\n movdqu [rdi + 16], xmm1\n movdqu [rdi + 32], xmm2\n movdqu [rdi + 48], xmm3\n"
      "movdqu [rdi + 64], xmm4\n movdqu [rdi + 80], xmm5\n movdqu [rdi + 96], xmm6\n movdqu [rdi + 112], xmm7\n"
      "movdqu [rdi + 128], xmm8\n movdqu [rdi + 144], xmm9\n movdqu [rdi + 160], xmm10\n movdqu [rdi + 176], xmm11\n"
      "movdqu [rdi + 192], xmm12\n movdqu [rdi + 208], xmm13\n movdqu [rdi + 224], xmm14\n movdqu [rdi + 240], xmm15\n"
      ".att_syntax prefix\n"
      : "+a"(r.rax), "+b"(r.rbx), "+c"(r.rcx)
      : "D"(x), "S"(r.buf.data())
      : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
        "xmm12", "xmm13", "xmm14", "xmm15");
  return r;
}

void start64(TestMachine& m, const std::string& src, const Regs& r) {
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, src, 64);
  std::memcpy(m.cpu.state.fpu.xmm.data(), r.xmm.data(), 256);
  m.reg(cpu::kRax) = r.rax;
  m.reg(cpu::kRbx) = r.rbx;
  m.reg(cpu::kRcx) = r.rcx;
  m.reg(cpu::kRsi) = kBuf;
  m.write(kBuf, r.buf.data(), r.buf.size());
}

TEST(SseMove, XmmFormsMatchTheHost) {
  const Regs host = host_xmm_moves();
  TestMachine m;
  start64(m, XMM_MOVES "hlt", initial());
  ASSERT_EQ(m.run(), RunExit::kHalted);
  for (unsigned r = 0; r < 16; ++r)
    EXPECT_EQ(std::memcmp(m.cpu.state.fpu.xmm[r].data(), host.xmm.data() + 16 * r, 16), 0) << "xmm" << r;
  EXPECT_EQ(m.reg(cpu::kRbx), host.rbx);
  EXPECT_EQ(m.reg(cpu::kRcx), host.rcx);
  std::array<uint8_t, 128> buf;
  m.ram.read(kBuf, buf.data(), buf.size());
  EXPECT_EQ(buf, host.buf);
}

// ---- MMX forms: x87 state after them, compared with the host ------------------------------
#define MMX_MOVES                   \
  "movq mm3, qword ptr [rsi]\n"     \
  "movd mm4, eax\n"                 \
  "movq mm5, mm3\n"                 \
  "movd ebx, mm4\n"                 \
  "movq qword ptr [rsi + 8], mm5\n" \
  "movq rcx, mm3\n"                 \
  "movq mm6, rax\n"                 \
  "movd dword ptr [rsi + 16], mm6\n"

struct MmxResult {
  alignas(16) std::array<uint8_t, 512> fxsave{};
  uint64_t rbx = ~0ull, rcx = ~0ull;
  alignas(16) std::array<uint8_t, 128> buf{};
};

MmxResult host_mmx_moves() {
  MmxResult r;
  r.buf = initial().buf;
  uint64_t rax = initial().rax;
  alignas(16) static uint8_t keep[512];
  asm volatile(
      "fxsave64 %[keep]\n"
      ".intel_syntax noprefix\n"
      "fninit\n fld1\n fld1\n fld1\n"
      MMX_MOVES
      "fxsave64 [rdi]\n"
      ".att_syntax prefix\n"
      "fxrstor64 %[keep]\n"
      : "+a"(rax), "+b"(r.rbx), "+c"(r.rcx), [keep] "+m"(keep)
      : "D"(r.fxsave.data()), "S"(r.buf.data())
      : "memory");
  return r;
}

TEST(MmxMove, FormsAndX87StateMatchTheHost) {
  const MmxResult host = host_mmx_moves();
  TestMachine m;
  start64(m, MMX_MOVES "fxsave64 [rsi + 0x100]\n hlt", initial());
  // FNINIT; FLD1 x3: TOP = 5, R5-R7 = 1.0.
  cpu::FpuState& f = m.cpu.state.fpu;
  f.fsw = 5 << 11;
  f.ftw = 0x03ff;
  for (unsigned r = 5; r < 8; ++r) {
    f.st[r].fill(0);
    f.st[r][7] = 0x80;
    f.st[r][9] = 0x3f;
    f.st[r][8] = 0xff;
  }
  ASSERT_EQ(m.run(), RunExit::kHalted);
  std::array<uint8_t, 512> core;
  m.ram.read(kBuf + 0x100, core.data(), core.size());
  EXPECT_EQ(core[2], host.fxsave[2]);  // FSW: TOP = 0
  EXPECT_EQ(core[3], host.fxsave[3]);
  EXPECT_EQ(core[4], host.fxsave[4]);  // all tags valid
  EXPECT_EQ(f.ftw, 0u);
  for (unsigned r = 3; r < 8; ++r)  // R3-R6 written by MMX (exponent all ones), R7 untouched
    EXPECT_EQ(std::memcmp(core.data() + 32 + 16 * r, host.fxsave.data() + 32 + 16 * r, 16), 0) << "R" << r;
  EXPECT_EQ(m.reg(cpu::kRbx), host.rbx);
  EXPECT_EQ(m.reg(cpu::kRcx), host.rcx);
  std::array<uint8_t, 128> buf;
  m.ram.read(kBuf, buf.data(), buf.size());
  EXPECT_EQ(buf, host.buf);
}

TEST(MmxMove, FaultsLeaveTheX87StateAlone) {
  struct Case { const char* name; uint64_t cr0_set; bool pending; Vector v; };
  const Case cases[] = {
      {"CR0.EM", cr0::kEM, false, Vector::kUD},
      {"CR0.TS", cr0::kTS, false, Vector::kNM},
      {"pending x87 exception", 0, true, Vector::kMF},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    TestMachine m;
    start64(m, "movq mm1, rax\n hlt", initial());
    m.cpu.state.cr0 |= k.cr0_set;
    m.cpu.state.fpu.fsw = 0x2800;
    if (k.pending) {
      m.cpu.state.fpu.fcw = 0x037e;
      m.cpu.state.fpu.fsw |= 0x8081;
    }
    const uint16_t fsw = m.cpu.state.fpu.fsw;
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(k.v));
    EXPECT_EQ(m.cpu.state.rip, layout::kCode);
    EXPECT_EQ(m.cpu.state.fpu.fsw, fsw);
    EXPECT_EQ(m.cpu.state.fpu.ftw, 0xffffu);
  }
}

// ---- alignment and availability ------------------------------------------------------------

TEST(SseMove, AlignedFormsFaultOnMisalignedLinearAddresses) {
  struct Case { const char* code; bool gp; };
  const Case cases[] = {
      {"movaps xmm0, [rsi + 8]", true},
      {"movapd [rsi + 4], xmm0", true},
      {"movdqa xmm1, [rsi + 1]", true},
      {"movups xmm0, [rsi + 8]", false},
      {"movdqu [rsi + 3], xmm0", false},
      {"movdqa xmm0, fs:[rsi]", true},  // FS base 8: the linear address is misaligned
      {"movdqa xmm0, fs:[rsi + 8]", false},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.code);
    TestMachine m;
    start64(m, std::string(k.code) + "\n hlt", initial());
    m.cpu.state.seg[unsigned(SegReg::kFS)].base = 8;
    m.cpu.refresh_segment(SegReg::kFS);
    if (k.gp) {
      ASSERT_EQ(m.run(), RunExit::kException);
      EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kGP));
      EXPECT_EQ(m.cpu.pending_event().error, 0u);
      EXPECT_EQ(m.cpu.state.rip, layout::kCode);
    } else {
      EXPECT_EQ(m.run(), RunExit::kHalted);
    }
  }
}

TEST(SseMove, AvailabilityFaults) {
  struct Case { const char* name; uint64_t cr0_set; bool osfxsr; Vector v; };
  const Case cases[] = {
      {"CR0.EM", cr0::kEM, true, Vector::kUD},
      {"CR4.OSFXSR = 0", 0, false, Vector::kUD},
      {"CR0.TS", cr0::kTS, true, Vector::kNM},
      {"CR0.EM and TS", cr0::kEM | cr0::kTS, true, Vector::kUD},
  };
  for (const char* insn : {"movaps xmm0, xmm1", "movdqu xmm0, [rsi]", "movd xmm0, eax", "movq rax, xmm0",
                           "ldmxcsr [rsi]", "stmxcsr [rsi]"}) {
    for (const Case& k : cases) {
      SCOPED_TRACE(std::string(insn) + ", " + k.name);
      TestMachine m;
      start64(m, std::string(insn) + "\n hlt", initial());
      m.cpu.state.cr0 |= k.cr0_set;
      if (!k.osfxsr) m.cpu.state.cr4 &= ~cr4::kOSFXSR;
      const std::array<uint8_t, 16> xmm0 = m.cpu.state.fpu.xmm[0];
      ASSERT_EQ(m.run(), RunExit::kException);
      EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(k.v));
      EXPECT_EQ(m.cpu.state.fpu.xmm[0], xmm0);
    }
  }
}

TEST(SseMove, FeaturesTheModelLacksAreUd) {
  cpu::CpuModel model = cpu::CpuModel::max();
  model.set(cpu::Feature::kSse2, false);
  for (const char* insn : {"movdqa xmm0, xmm1", "movd xmm0, eax", "movapd xmm0, xmm1"}) {
    SCOPED_TRACE(insn);
    TestMachine m(64ull << 20, model);
    start64(m, std::string(insn) + "\n hlt", initial());
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kUD));
  }
  TestMachine m(64ull << 20, model);
  start64(m, "movaps xmm0, xmm1\n movq mm0, rax\n hlt", initial());  // SSE and MMX remain
  EXPECT_EQ(m.run(), RunExit::kHalted);
}

TEST(SseMove, MovdIn32BitProtectedMode) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.cpu.state.cr4 |= cr4::kOSFXSR;
  m.cpu.refresh_mode();
  m.load_code(layout::kCode, "mov eax, 0x89abcdef\n movd xmm7, eax\n movd ebx, xmm7\n movq xmm1, xmm7\n hlt", 32);
  m.cpu.state.fpu.xmm[7].fill(0xee);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x89abcdefu);
  const std::array<uint8_t, 16> want = {0xef, 0xcd, 0xab, 0x89};
  EXPECT_EQ(m.cpu.state.fpu.xmm[7], want);
  EXPECT_EQ(m.cpu.state.fpu.xmm[1], want);
}

// ---- LDMXCSR / STMXCSR -----------------------------------------------------------------

TEST(Mxcsr, LoadStoreAndReservedBits) {
  TestMachine m;
  start64(m, "ldmxcsr [rsi]\n stmxcsr [rsi + 4]\n lea r15, [rip + f]\n f: ldmxcsr [rsi + 8]\n hlt", initial());
  m.poke<uint32_t>(kBuf, 0xffff);
  m.poke<uint32_t>(kBuf + 8, 0x1f80 | 0x10000);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kGP));
  EXPECT_EQ(m.cpu.state.rip, m.reg(cpu::kR15));
  EXPECT_EQ(m.peek<uint32_t>(kBuf + 4), 0xffffu);
  EXPECT_EQ(m.cpu.state.fpu.mxcsr, 0xffffu);
}

}  // namespace
}  // namespace nestvm::test
