// x87/SSE state management (insn/fpu_state.cpp, cpu/fpu.cpp): FXSAVE/FXRSTOR and XSAVE/XRSTOR
// images compared with the host processor's own, their faults, XGETBV/XSETBV, and the x87
// control instructions.
#include <cpuid.h>
#include <gtest/gtest.h>

#include <array>
#include <cstring>

#include "test_machine.h"

namespace nestvm::test {
namespace {

using arch::Vector;
using cpu::RunExit;
namespace cr0 = arch::cr0;
namespace cr4 = arch::cr4;

constexpr uint64_t kArea = layout::kData;  // save area used by the snippets (RSI)

using Image = std::array<uint8_t, 576>;

// ---- register values loaded natively and into the core ---------------------------------
// 80-bit values: 1.5 and -2.25.
constexpr uint8_t kOnePointFive[10] = {0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0x3f};
constexpr uint8_t kMinus2_25[10] = {0, 0, 0, 0, 0, 0, 0, 0x90, 0x00, 0xc0};
constexpr uint16_t kFcw = 0x027f;
constexpr uint32_t kMxcsr = 0xdfa1;  // FZ, RC = 10, masks, IE and PE flags

alignas(16) const std::array<uint8_t, 256> kXmm = [] {
  std::array<uint8_t, 256> a{};
  for (unsigned i = 0; i < 256; ++i) a[i] = uint8_t(i * 7 + 3);
  return a;
}();

bool host_has_xsave() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c & (1u << 26)) && (c & (1u << 27));
}

// Loads FCW, FLD 1.5, FLD -2.25, FLDZ (so TOP = 5: ST0 = R5 = +0, ST1 = R6, ST2 = R7), MXCSR
// and XMM0-15 natively, then saves with `save` (an instruction taking the area in RSI). The
// host's own state is saved and restored around it.
template <typename F> void host_run(F save) {
  alignas(64) static uint8_t keep[4096];
  asm volatile("fxsave64 %0" : "=m"(keep));
  save();
  asm volatile("fxrstor64 %0" ::"m"(keep));
}

void host_save_loaded(Image& out, int form) {
  alignas(64) uint8_t area[4096] = {};
  const uint16_t fcw = kFcw;
  const uint32_t mxcsr = kMxcsr;
  host_run([&] {
    asm volatile(
        "fninit\n\t"
        "fldcw %[fcw]\n\t"
        "fldt %[v0]\n\t"
        "fldt %[v1]\n\t"
        "fldz\n\t"
        "ldmxcsr %[mx]\n\t"
        "movdqu 0(%[x]), %%xmm0\n\t movdqu 16(%[x]), %%xmm1\n\t movdqu 32(%[x]), %%xmm2\n\t"
        "movdqu 48(%[x]), %%xmm3\n\t movdqu 64(%[x]), %%xmm4\n\t movdqu 80(%[x]), %%xmm5\n\t"
        "movdqu 96(%[x]), %%xmm6\n\t movdqu 112(%[x]), %%xmm7\n\t movdqu 128(%[x]), %%xmm8\n\t"
        "movdqu 144(%[x]), %%xmm9\n\t movdqu 160(%[x]), %%xmm10\n\t movdqu 176(%[x]), %%xmm11\n\t"
        "movdqu 192(%[x]), %%xmm12\n\t movdqu 208(%[x]), %%xmm13\n\t movdqu 224(%[x]), %%xmm14\n\t"
        "movdqu 240(%[x]), %%xmm15\n\t"
        "cmpl $0, %[form]\n\t jne 1f\n\t fxsave64 (%[a])\n\t jmp 9f\n"
        "1: cmpl $1, %[form]\n\t jne 2f\n\t fxsave (%[a])\n\t jmp 9f\n"
        "2: movl $3, %%eax\n\t xorl %%edx, %%edx\n\t xsave64 (%[a])\n"
        "9:\n\t"
        :
        : [fcw] "m"(fcw), [v0] "m"(kOnePointFive), [v1] "m"(kMinus2_25), [mx] "m"(mxcsr), [x] "r"(kXmm.data()),
          [a] "r"(area), [form] "r"(form)
        : "memory", "rax", "rdx", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)", "st(2)");
  });
  std::memcpy(out.data(), area, out.size());
}

// The same register values in the core's state.
void load_state(cpu::FpuState& f) {
  f.fcw = kFcw;
  f.fsw = 5 << 11;
  f.ftw = 0x07ff;  // R0-R4 empty, R5 zero, R6 and R7 valid
  for (auto& r : f.st) r.fill(0x5c);
  f.st[5].fill(0);
  f.st[6].fill(0);
  f.st[7].fill(0);
  std::memcpy(f.st[6].data(), kMinus2_25, 10);
  std::memcpy(f.st[7].data(), kOnePointFive, 10);
  f.mxcsr = kMxcsr;
  std::memcpy(f.xmm.data(), kXmm.data(), 256);
}

// Bytes of an FXSAVE/XSAVE image that the loaded values define: FCW, FSW, abridged FTW and
// byte 5, MXCSR and MXCSR_MASK, the three non-empty ST slots, XMM0-15. (FOP, FIP and FDP
// depend on the host's last x87 instruction.)
void expect_defined_bytes_equal(const Image& core, const Image& host) {
  for (unsigned i = 0; i < 416; ++i) {
    const bool defined = i < 6 || (i >= 24 && i < 32) || (i >= 32 && i < 80) || i >= 160;
    if (!defined) continue;
    EXPECT_EQ(core[i], host[i]) << "byte " << i;
  }
}

// 64-bit mode at CPL 0 with OSFXSR (enter_long64), OSXSAVE and XCR0 = x87 | SSE.
void start64(TestMachine& m, const std::string& src) {
  m.enter_long64(layout::kCode);
  m.cpu.state.cr4 |= cr4::kOSXSAVE;
  m.cpu.state.xcr0 = 3;
  m.cpu.refresh_mode();
  m.load_code(layout::kCode, "mov rsi, 0x200000\n" + src, 64);
}

bool same_state(const cpu::FpuState& a, const cpu::FpuState& b) {
  return a.fcw == b.fcw && a.fsw == b.fsw && a.ftw == b.ftw && a.fop == b.fop && a.fip == b.fip && a.fdp == b.fdp &&
         a.fcs == b.fcs && a.fds == b.fds && a.mxcsr == b.mxcsr && a.st == b.st && a.xmm == b.xmm;
}

Image area(TestMachine& m, uint64_t pa = kArea) {
  Image a;
  m.ram.read(pa, a.data(), a.size());
  return a;
}

void expect_fault(TestMachine& m, Vector v) {
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(v));
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 7);  // the instruction after `mov rsi, imm32`
}

// ---- FXSAVE ------------------------------------------------------------------------------

TEST(Fxsave, ImageMatchesTheHostFxsave64) {
  Image host{};
  host_save_loaded(host, 0);
  TestMachine m;
  start64(m, "fxsave64 [rsi]\n hlt");
  load_state(m.cpu.state.fpu);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  expect_defined_bytes_equal(area(m), host);
}

TEST(Fxsave, ImageMatchesTheHostFxsaveWithoutRexW) {
  Image host{};
  host_save_loaded(host, 1);
  TestMachine m;
  start64(m, "fxsave [rsi]\n hlt");
  load_state(m.cpu.state.fpu);
  m.cpu.state.fpu.fip = 0x1122334455667788ull;
  m.cpu.state.fpu.fcs = 0x1234;
  m.cpu.state.fpu.fdp = 0xaabbccdd;
  m.cpu.state.fpu.fds = 0x5678;
  m.cpu.state.fpu.fop = 0xffff;
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const Image a = area(m);
  expect_defined_bytes_equal(a, host);
  // The 32-bit pointer format: FIP[31:0], FCS, FDP[31:0], FDS; FOP has 11 bits.
  const uint8_t ptrs[] = {0xff, 0x07, 0x88, 0x77, 0x66, 0x55, 0x34, 0x12, 0, 0, 0xdd, 0xcc, 0xbb, 0xaa, 0x78, 0x56, 0, 0};
  EXPECT_EQ(std::memcmp(a.data() + 6, ptrs, sizeof ptrs), 0);
}

TEST(Fxsave, LeavesTheBytesItDoesNotDefine) {
  TestMachine m;
  start64(m, "fxsave64 [rsi]\n hlt");
  std::vector<uint8_t> fill(1024, 0xa5);
  m.write(kArea, fill.data(), fill.size());
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const Image a = area(m);
  for (unsigned i = 416; i < 512; ++i) EXPECT_EQ(a[i], 0xa5) << "byte " << i;
  EXPECT_EQ(a[5], 0);
  EXPECT_EQ(a[32 + 10], 0);  // ST slot padding is written as zero
}

TEST(Fxsave, SavesXmm0To7OutsideSixtyFourBitMode) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.cpu.state.cr4 |= cr4::kOSFXSR;
  m.cpu.refresh_mode();
  m.load_code(layout::kCode, "mov esi, 0x200000\n fxsave [esi]\n hlt", 32);
  load_state(m.cpu.state.fpu);
  std::vector<uint8_t> fill(512, 0xa5);
  m.write(kArea, fill.data(), fill.size());
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const Image a = area(m);
  EXPECT_EQ(std::memcmp(a.data() + 160, kXmm.data(), 128), 0);
  for (unsigned i = 288; i < 512; ++i) EXPECT_EQ(a[i], 0xa5) << "byte " << i;
}

// ---- FXRSTOR -----------------------------------------------------------------------------

// An image with every field unusual: reserved FCW bits, a stale B bit, an unmasked pending
// exception flag, TOP = 3, register contents of each tag class, garbage in reserved bytes.
Image crafted_image() {
  Image img{};
  for (unsigned i = 0; i < img.size(); ++i) img[i] = uint8_t(i * 13 + 1);
  auto put16 = [&](unsigned off, uint16_t v) { std::memcpy(img.data() + off, &v, 2); };
  auto put32 = [&](unsigned off, uint32_t v) { std::memcpy(img.data() + off, &v, 4); };
  auto put64 = [&](unsigned off, uint64_t v) { std::memcpy(img.data() + off, &v, 8); };
  put16(0, 0xf37a);  // IE and ZE unmasked
  put16(2, 0x9921);  // B set, TOP = 3, C0, IE and PE flags
  img[4] = 0xb5;     // R0, R2, R4, R5, R7 non-empty
  put16(6, 0xf123);
  put64(8, 0x00007fff12345678ull);
  put64(16, 0xffff800000001234ull);
  put32(24, 0x1f80 | 0x3f);
  put32(28, 0);
  // Slot i holds R[(3 + i) & 7].
  auto reg = [&](unsigned r, uint64_t mant, uint16_t se) {
    const unsigned slot = (r - 3) & 7;
    put64(32 + 16 * slot, mant);
    put16(40 + 16 * slot, se);
  };
  reg(0, 0, 0x8000);                      // -0: zero
  reg(2, 0x0000000012345678ull, 0x0000);  // denormal: special
  reg(4, 0x8000000000000000ull, 0x3fff);  // 1.0: valid
  reg(5, 0xc000000000000000ull, 0x7fff);  // NaN: special
  reg(7, 0x4000000000000000ull, 0x4001);  // unnormal: special
  return img;
}
constexpr uint16_t kCraftedFullTags = 0xb8ed;  // R7..R0 = 10 11 10 00 11 10 11 01

struct HostRestore {
  Image image;        // FXSAVE after the FXRSTOR
  uint16_t tags = 0;  // the full tag word (FNSTENV)
};

HostRestore host_fxrstor(const Image& img, bool rex_w) {
  alignas(16) uint8_t in[512], out[512] = {};
  uint8_t env[28] = {};
  std::memcpy(in, img.data(), 512);
  host_run([&] {
    if (rex_w) asm volatile("fxrstor64 %1\n\t fxsave64 %0\n\t fnstenv %2" : "=m"(out) : "m"(in), "m"(env) : "memory");
    else asm volatile("fxrstor %1\n\t fxsave %0\n\t fnstenv %2" : "=m"(out) : "m"(in), "m"(env) : "memory");
  });
  HostRestore r;
  r.image.fill(0);
  std::memcpy(r.image.data(), out, 512);
  std::memcpy(&r.tags, env + 8, 2);
  return r;
}

TEST(Fxrstor, RoundTripMatchesTheHost) {
  for (bool rex_w : {true, false}) {
    SCOPED_TRACE(rex_w ? "FXRSTOR64" : "FXRSTOR");
    const Image img = crafted_image();
    const HostRestore host = host_fxrstor(img, rex_w);
    TestMachine m;
    start64(m, rex_w ? "fxrstor64 [rsi]\n fxsave64 [rsi + 0x400]\n hlt" : "fxrstor [rsi]\n fxsave [rsi + 0x400]\n hlt");
    m.write(kArea, img.data(), 512);
    ASSERT_EQ(m.run(), RunExit::kHalted);
    const Image core = area(m, kArea + 0x400);
    for (unsigned i = 0; i < 416; ++i) {
      // Without REX.W the host stores FCS and FDS as zero (its CPUID reports them deprecated;
      // the core's models do not), so those two fields are compared with the image instead.
      const bool selector = !rex_w && ((i >= 12 && i < 14) || (i >= 20 && i < 22));
      EXPECT_EQ(core[i], selector ? img[i] : host.image[i]) << "byte " << i;
    }
    EXPECT_EQ(m.cpu.state.fpu.ftw, host.tags);
    EXPECT_EQ(m.cpu.state.fpu.ftw, kCraftedFullTags);
  }
}

TEST(Fxrstor, ReservedMxcsrBitsAreGpAndChangeNothing) {
  TestMachine m;
  start64(m, "fxrstor64 [rsi]\n hlt");
  Image img = crafted_image();
  const uint32_t bad = 0x10000 | 0x1f80;
  std::memcpy(img.data() + 24, &bad, 4);
  m.write(kArea, img.data(), 512);
  load_state(m.cpu.state.fpu);
  const cpu::FpuState before = m.cpu.state.fpu;
  expect_fault(m, Vector::kGP);
  EXPECT_EQ(m.cpu.pending_event().error, 0u);
  EXPECT_TRUE(same_state(m.cpu.state.fpu, before));
}

struct FaultCase {
  const char* name;
  const char* code;  // the faulting instruction is labelled f
  uint64_t cr0_set;
  Vector v;
};

TEST(FxsaveFxrstor, AvailabilityAndAlignmentFaults) {
  const FaultCase cases[] = {
      {"FXSAVE misaligned", "add rsi, 8\n f: fxsave64 [rsi]", 0, Vector::kGP},
      {"FXRSTOR misaligned", "add rsi, 8\n f: fxrstor [rsi]", 0, Vector::kGP},
      {"FXSAVE with CR0.EM", "f: fxsave [rsi]", cr0::kEM, Vector::kUD},
      {"FXRSTOR with CR0.EM and TS", "f: fxrstor [rsi]", cr0::kEM | cr0::kTS, Vector::kUD},
      {"FXSAVE with CR0.TS", "f: fxsave [rsi]", cr0::kTS, Vector::kNM},
      {"FXRSTOR64 with CR0.TS", "f: fxrstor64 [rsi]", cr0::kTS, Vector::kNM},
  };
  for (const FaultCase& k : cases) {
    SCOPED_TRACE(k.name);
    TestMachine m;
    start64(m, std::string("lea r15, [rip + f]\n") + k.code + "\nhlt");
    m.cpu.state.cr0 |= k.cr0_set;
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(k.v));
    EXPECT_EQ(m.cpu.state.rip, m.reg(cpu::kR15));
  }
}

TEST(Fxsave, PageFaultWritesNothing) {
  TestMachine m;
  // The area's second half is on a read-only page: the whole operand is checked first.
  start64(m, "mov rsi, 0x400f00\n fxsave64 [rsi]\n hlt");
  m.poke<uint64_t>(layout::kPml4 + 0x2000 + 2 * 8, 0x30000 | 7);
  m.poke<uint64_t>(0x30000, 0x300000 | 7);
  m.poke<uint64_t>(0x30008, 0x301000 | 5);  // present, user, read-only
  std::vector<uint8_t> fill(4096, 0xa5);
  m.write(0x300000, fill.data(), fill.size());
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kPF));
  EXPECT_EQ(m.cpu.pending_event().error, arch::pfec::kPresent | arch::pfec::kWrite);
  EXPECT_EQ(m.peek<uint64_t>(0x300f00), 0xa5a5a5a5a5a5a5a5ull);
}

// ---- XSAVE family ----------------------------------------------------------------------

TEST(Xsave, ImageMatchesTheHostXsave) {
  if (!host_has_xsave()) GTEST_SKIP() << "host without XSAVE";
  Image host{};
  host_save_loaded(host, 2);
  TestMachine m;
  start64(m, "mov eax, 3\n xor edx, edx\n xsave64 [rsi]\n hlt");
  load_state(m.cpu.state.fpu);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const Image a = area(m);
  expect_defined_bytes_equal(a, host);
  EXPECT_EQ(std::memcmp(a.data() + 512, host.data() + 512, 64), 0);  // XSTATE_BV = 3, rest 0
}

TEST(Xsave, RequestedFeatureBitmapSelectsWhatIsWritten) {
  struct Case { uint32_t eax, edx; bool x87, mxcsr, xmm; uint8_t bv; };
  const Case cases[] = {
      {1, 0, true, false, false, 0xa5},
      {2, 0, false, true, true, 0xa6},
      {0xffffffff, 0xffffffff, true, true, true, 0xa7},  // EDX:EAX is ANDed with XCR0
      {0, 0, false, false, false, 0xa4},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.eax);
    TestMachine m;
    start64(m, "xsave [rsi]\n hlt");
    load_state(m.cpu.state.fpu);
    m.reg(cpu::kRax) = k.eax;
    m.reg(cpu::kRdx) = k.edx;
    std::vector<uint8_t> fill(1024, 0xa5);  // XSTATE_BV = a5: bits 0 and 2 set
    fill[512] = 0xa4;
    m.write(kArea, fill.data(), fill.size());
    ASSERT_EQ(m.run(), RunExit::kHalted);
    const Image a = area(m);
    EXPECT_EQ(a[0] != 0xa5, k.x87);
    EXPECT_EQ(a[24] != 0xa5, k.mxcsr);
    EXPECT_EQ(a[160] != 0xa5, k.xmm);
    EXPECT_EQ(a[288], k.xmm ? kXmm[128] : 0xa5);  // 64-bit mode: XMM8-15 too
    EXPECT_EQ(a[512], k.bv);
    for (unsigned i = 513; i < 576; ++i) EXPECT_EQ(a[i], 0xa5) << "header byte " << i - 512;
    for (unsigned i = 416; i < 512; ++i) EXPECT_EQ(a[i], 0xa5) << "byte " << i;
  }
}

TEST(Xsaveopt, SkipsComponentsInTheirInitialConfiguration) {
  TestMachine m;
  start64(m, "mov eax, 3\n xor edx, edx\n xsaveopt [rsi]\n xsave [rsi + 0x400]\n hlt");
  m.cpu.state.fpu.xmm[3][5] = 9;  // SSE in use; x87 in its initial configuration
  std::vector<uint8_t> fill(2048, 0xa5);
  m.write(kArea, fill.data(), fill.size());
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const Image opt = area(m), full = area(m, kArea + 0x400);
  EXPECT_EQ(opt[0], 0xa5);  // x87 not written
  EXPECT_EQ(opt[512], 0xa6);
  EXPECT_EQ(opt[160 + 3 * 16 + 5], 9);
  EXPECT_EQ(full[0], 0x7f);  // XSAVE writes it, with XSTATE_BV[0] = XINUSE[0] = 0
  EXPECT_EQ(full[512], 0xa6);
}

TEST(Xrstor, RestoresWhatXsaveSaved) {
  TestMachine m;
  start64(m, R"(
    mov eax, 3
    xor edx, edx
    xsave64 [rsi]
    fninit
    xrstor64 [rsi]
    hlt
  )");
  load_state(m.cpu.state.fpu);
  m.cpu.state.fpu.fip = 0x12345;
  const cpu::FpuState before = m.cpu.state.fpu;
  std::vector<uint8_t> zero(1024, 0);
  m.write(kArea, zero.data(), zero.size());
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const cpu::FpuState& f = m.cpu.state.fpu;
  EXPECT_EQ(f.fcw, before.fcw);
  EXPECT_EQ(f.fsw, before.fsw);
  EXPECT_EQ(f.ftw, before.ftw);
  EXPECT_EQ(f.fip, before.fip);
  EXPECT_EQ(f.mxcsr, before.mxcsr);
  EXPECT_EQ(f.xmm, before.xmm);
  for (unsigned r = 5; r < 8; ++r) EXPECT_EQ(std::memcmp(f.st[r].data(), before.st[r].data(), 10), 0);
}

TEST(Xrstor, MatchesTheHostOnACraftedImage) {
  if (!host_has_xsave()) GTEST_SKIP() << "host without XSAVE";
  Image img = crafted_image();
  std::memset(img.data() + 512, 0, 64);
  img[512] = 3;
  alignas(64) uint8_t in[576], out[576] = {};
  std::memcpy(in, img.data(), 576);
  host_run([&] {
    asm volatile("xrstor64 %1\n\t xsave64 %0" : "+m"(out) : "m"(in), "a"(3), "d"(0) : "memory");
  });
  TestMachine m;
  start64(m, "mov eax, 3\n xor edx, edx\n xrstor64 [rsi]\n xsave64 [rsi + 0x400]\n hlt");
  m.write(kArea, img.data(), img.size());
  std::vector<uint8_t> zero(576, 0);
  m.write(kArea + 0x400, zero.data(), zero.size());
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const Image core = area(m, kArea + 0x400);
  for (unsigned i = 0; i < 416; ++i) EXPECT_EQ(core[i], out[i]) << "byte " << i;
  EXPECT_EQ(core[512], out[512]);
}

TEST(Xrstor, InitializesComponentsWhoseXstateBvBitIsClear) {
  TestMachine m;
  start64(m, "mov eax, 3\n xor edx, edx\n xrstor [rsi]\n hlt");
  load_state(m.cpu.state.fpu);
  Image img = crafted_image();
  std::memset(img.data() + 512, 0, 64);  // XSTATE_BV = 0
  const uint32_t mx = 0x1f00;
  std::memcpy(img.data() + 24, &mx, 4);
  m.write(kArea, img.data(), img.size());
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const cpu::FpuState& f = m.cpu.state.fpu;
  EXPECT_EQ(f.fcw, 0x37fu);
  EXPECT_EQ(f.fsw, 0u);
  EXPECT_EQ(f.ftw, 0xffffu);
  for (const auto& r : f.st) EXPECT_EQ(r, (std::array<uint8_t, 16>{}));
  for (const auto& x : f.xmm) EXPECT_EQ(x, (std::array<uint8_t, 16>{}));
  EXPECT_EQ(f.mxcsr, 0x1f00u);  // loaded from memory whatever XSTATE_BV says
}

TEST(Xrstor, HeaderAndMxcsrChecks) {
  struct Case { const char* name; unsigned byte; uint8_t value; uint32_t rfbm; bool bad_mxcsr; bool gp; };
  const Case cases[] = {
      {"XCOMP_BV[63] (compacted form, no XSAVEC)", 512 + 15, 0x80, 3, false, true},
      {"XCOMP_BV[0]", 512 + 8, 1, 3, false, true},
      {"header bytes 23:16", 512 + 20, 1, 3, false, true},
      {"header byte 24", 512 + 24, 1, 3, false, false},
      {"header byte 63", 512 + 63, 1, 3, false, false},
      {"XSTATE_BV bit not in XCR0", 512, 7, 3, false, true},
      {"XSTATE_BV bit not in XCR0 nor RFBM", 512, 7, 1, false, true},
      {"reserved MXCSR bit, RFBM[1] = 1", 512, 3, 2, true, true},
      {"reserved MXCSR bit, RFBM[1] = 0", 512, 3, 1, true, false},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    TestMachine m;
    start64(m, "xrstor [rsi]\n hlt");
    m.reg(cpu::kRax) = k.rfbm;
    Image img = crafted_image();
    std::memset(img.data() + 512, 0, 64);
    img[512] = 3;
    img[k.byte] = k.value;
    if (k.bad_mxcsr) img[26] = 1;
    m.write(kArea, img.data(), img.size());
    const cpu::FpuState before = m.cpu.state.fpu;
    if (k.gp) {
      expect_fault(m, Vector::kGP);
      EXPECT_TRUE(same_state(m.cpu.state.fpu, before));
    } else {
      EXPECT_EQ(m.run(), RunExit::kHalted);
    }
  }
}

TEST(Xsave, AvailabilityAndAlignmentFaults) {
  struct Case { const char* name; const char* insn; bool osxsave; uint64_t cr0_set; unsigned misalign; Vector v; };
  const Case cases[] = {
      {"XSAVE without CR4.OSXSAVE", "xsave [rsi]", false, 0, 0, Vector::kUD},
      {"XRSTOR without CR4.OSXSAVE", "xrstor [rsi]", false, 0, 0, Vector::kUD},
      {"XGETBV without CR4.OSXSAVE", "xgetbv", false, 0, 0, Vector::kUD},
      {"XSAVE with CR0.TS", "xsave64 [rsi]", true, cr0::kTS, 0, Vector::kNM},
      {"XSAVEOPT with CR0.TS", "xsaveopt [rsi]", true, cr0::kTS, 0, Vector::kNM},
      {"XRSTOR with CR0.TS", "xrstor64 [rsi]", true, cr0::kTS, 0, Vector::kNM},
      {"XSAVE at a 32-byte boundary", "xsave [rsi]", true, 0, 32, Vector::kGP},
      {"XRSTOR at a 16-byte boundary", "xrstor [rsi]", true, 0, 16, Vector::kGP},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    TestMachine m;
    start64(m, std::string(k.insn) + "\nhlt");
    if (!k.osxsave) m.cpu.state.cr4 &= ~cr4::kOSXSAVE;
    m.cpu.state.cr0 |= k.cr0_set;
    m.cpu.refresh_mode();
    m.reg(cpu::kRax) = 3;
    m.write_bytes(layout::kCode + 3, {uint8_t(k.misalign)});  // mov rsi, 0x200000 + misalign
    expect_fault(m, k.v);
  }
  // CR0.EM plays no part in the XSAVE feature set.
  TestMachine m;
  start64(m, "mov eax, 3\n xsave [rsi]\n hlt");
  m.cpu.state.cr0 |= cr0::kEM;
  EXPECT_EQ(m.run(), RunExit::kHalted);
}

TEST(Xgetbv, ReadsXcr0AndRejectsOtherRegisters) {
  TestMachine m;
  start64(m, "xor ecx, ecx\n xgetbv\n mov r8, rax\n mov r9, rdx\n mov ecx, 1\n lea r15, [rip + f]\n f: xgetbv\n hlt");
  m.reg(cpu::kRax) = ~0ull;
  m.reg(cpu::kRdx) = ~0ull;
  ASSERT_EQ(m.run(), RunExit::kException);  // ECX = 1 needs XGETBV_ECX_1, not in "max"
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kGP));
  EXPECT_EQ(m.cpu.state.rip, m.reg(cpu::kR15));
  EXPECT_EQ(m.reg(cpu::kR8), 3u);
  EXPECT_EQ(m.reg(cpu::kR9), 0u);

  cpu::CpuModel model = cpu::CpuModel::max();
  model.set(cpu::Feature::kXgetbv1, true);
  TestMachine x(64ull << 20, model);
  start64(x, "mov ecx, 1\n xgetbv\n hlt");
  x.cpu.state.fpu.xmm[0][0] = 1;  // SSE in use, x87 in its initial configuration
  ASSERT_EQ(x.run(), RunExit::kHalted);
  EXPECT_EQ(x.reg(cpu::kRax), 2u);
}

TEST(Xsetbv, WritesXcr0WithItsChecks) {
  struct Case { const char* name; uint32_t ecx, eax; bool cpl3; bool gp; };
  const Case cases[] = {
      {"x87 | SSE", 0, 3, false, false},
      {"x87 only", 0, 1, false, false},
      {"x87 clear", 0, 2, false, true},
      {"AVX (not supported)", 0, 7, false, true},
      {"ECX = 1", 1, 3, false, true},
      {"CPL 3", 0, 3, true, true},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    TestMachine m;
    start64(m, "xsetbv\n hlt");
    m.reg(cpu::kRcx) = k.ecx;
    m.reg(cpu::kRax) = k.eax;
    m.reg(cpu::kRdx) = 0;
    m.cpu.state.xcr0 = 1;
    if (k.cpl3) {
      m.load_seg(arch::SegReg::kCS, sel::kUserCode64);
      m.load_seg(arch::SegReg::kSS, sel::kUserData);
      m.cpu.refresh_mode();
    }
    if (k.gp) {
      expect_fault(m, Vector::kGP);
      EXPECT_EQ(m.cpu.state.xcr0, 1u);
    } else {
      ASSERT_EQ(m.run(), RunExit::kHalted);
      EXPECT_EQ(m.cpu.state.xcr0, k.eax);
    }
  }
}

// ---- x87 control instructions -----------------------------------------------------------

TEST(X87Control, FninitFnstswFnstcw) {
  TestMachine m;
  start64(m, R"(
    fninit
    mov ax, -1
    fnstsw ax
    fnstsw [rsi]
    fnstcw [rsi + 2]
    hlt
  )");
  load_state(m.cpu.state.fpu);
  m.cpu.state.fpu.fip = m.cpu.state.fpu.fdp = 0x1234;
  m.cpu.state.fpu.fop = 0x55;
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const cpu::FpuState& f = m.cpu.state.fpu;
  EXPECT_EQ(f.fcw, 0x37fu);
  EXPECT_EQ(f.fsw, 0u);
  EXPECT_EQ(f.ftw, 0xffffu);
  EXPECT_EQ(f.fip | f.fdp | f.fop, 0u);
  EXPECT_EQ(std::memcmp(f.st[7].data(), kOnePointFive, 10), 0);  // registers are kept
  EXPECT_EQ(m.reg(cpu::kRax) & 0xffff, 0u);
  EXPECT_EQ(m.peek<uint16_t>(kArea), 0u);
  EXPECT_EQ(m.peek<uint16_t>(kArea + 2), 0x37fu);
}

TEST(X87Control, FldcwStoresLikeTheHost) {
  for (uint16_t cw : {uint16_t(0), uint16_t(0xffff), uint16_t(0x1234), uint16_t(0xc0c0)}) {
    SCOPED_TRACE(cw);
    uint16_t host = 0;
    host_run([&] { asm volatile("fninit\n\t fldcw %1\n\t fnstcw %0" : "=m"(host) : "m"(cw)); });
    TestMachine m;
    start64(m, "fldcw [rsi]\n fnstcw [rsi + 2]\n hlt");
    m.poke<uint16_t>(kArea, cw);
    ASSERT_EQ(m.run(), RunExit::kHalted);
    EXPECT_EQ(m.peek<uint16_t>(kArea + 2), host);
  }
}

TEST(X87Control, UnmaskingAPendingFlagSetsEsAndTheNextWaitFaults) {
  TestMachine m;
  start64(m, "fldcw [rsi]\n lea r15, [rip + f]\n f: fwait\n hlt");
  m.cpu.state.fpu.fsw = 0x0001;  // IE flag, masked: nothing pending
  m.poke<uint16_t>(kArea, 0x037e);  // unmask IE
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kMF));
  EXPECT_EQ(m.cpu.state.rip, m.reg(cpu::kR15));
  EXPECT_EQ(m.cpu.state.fpu.fsw, 0x8081u);
}

TEST(X87Control, PendingExceptionChecks) {
  struct Case { const char* insn; bool ne; bool fault; };
  const Case cases[] = {
      {"fwait", true, true}, {"fldcw [rsi]", true, true}, {"emms", true, true},
      {"fnstsw ax", true, false}, {"fnstcw [rsi]", true, false}, {"fninit", true, false},
      {"fxsave [rsi]", true, false},
      {"fwait", false, false},  // CR0.NE = 0: FERR# (not modelled), no #MF
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(std::string(k.insn) + (k.ne ? "" : " NE=0"));
    TestMachine m;
    start64(m, std::string(k.insn) + "\nhlt");
    m.cpu.state.fpu.fcw = 0x037e;
    m.cpu.state.fpu.fsw = 0x8081;
    m.poke<uint16_t>(kArea, 0x037f);
    if (!k.ne) m.cpu.state.cr0 &= ~cr0::kNE;
    if (k.fault) {
      expect_fault(m, Vector::kMF);
    } else {
      EXPECT_EQ(m.run(), RunExit::kHalted);
    }
  }
}

TEST(X87Control, DeviceNotAvailableRules) {
  struct Case { const char* insn; uint64_t cr0_bits; Vector v; };  // kDE: runs
  const Case cases[] = {
      {"fninit", cr0::kEM, Vector::kNM},
      {"fninit", cr0::kTS, Vector::kNM},
      {"fnstsw ax", cr0::kTS, Vector::kNM},
      {"fldcw [rsi]", cr0::kEM, Vector::kNM},
      {"fwait", cr0::kTS, Vector::kDE},   // MP clear below
      {"fwait", cr0::kTS | cr0::kMP, Vector::kNM},
      {"fwait", cr0::kEM | cr0::kMP, Vector::kDE},
      {"emms", cr0::kEM, Vector::kUD},
      {"emms", cr0::kTS, Vector::kNM},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(std::string(k.insn) + " cr0 " + std::to_string(k.cr0_bits));
    TestMachine m;
    start64(m, std::string(k.insn) + "\nhlt");
    m.poke<uint16_t>(kArea, 0x037f);
    m.cpu.state.cr0 = (m.cpu.state.cr0 & ~(cr0::kMP | cr0::kEM | cr0::kTS)) | k.cr0_bits;
    if (k.v == Vector::kDE) {
      EXPECT_EQ(m.run(), RunExit::kHalted);
    } else {
      expect_fault(m, k.v);
    }
  }
}

TEST(X87Control, EmmsEmptiesTheTagsAndClearsTopLikeTheHost) {
  uint16_t host_sw = 0xffff;
  uint8_t host_env[28] = {};
  host_run([&] { asm volatile("fninit\n\t fld1\n\t fld1\n\t emms\n\t fnstsw %0\n\t fnstenv %1" : "=m"(host_sw), "=m"(host_env)); });
  uint16_t host_tags;
  std::memcpy(&host_tags, host_env + 8, 2);
  TestMachine m;
  start64(m, "emms\n hlt");
  load_state(m.cpu.state.fpu);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.cpu.state.fpu.ftw, host_tags);
  EXPECT_EQ(m.cpu.state.fpu.ftw, 0xffffu);
  EXPECT_EQ(m.cpu.state.fpu.fsw, host_sw);  // TOP = 0
}

}  // namespace
}  // namespace nestvm::test
