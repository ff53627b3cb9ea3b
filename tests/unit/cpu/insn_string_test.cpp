// String instructions (src/cpu/insn/string.cpp): MOVS CMPS SCAS LODS STOS with every repeat
// prefix, direction, address size, segment override, faults in the middle of a REP and resumption,
// overlapping copies, chunking and single-step. INS/OUTS are in insn_io_test.cpp.
#include <gtest/gtest.h>

#include <vector>

#include "test_machine.h"

namespace nestvm::test {
namespace {

using arch::SegReg;
using cpu::RunExit;
namespace rf = arch::rflags;

constexpr uint64_t kSrc = layout::kData;            // 0x200000
constexpr uint64_t kDst = layout::kData + 0x40000;  // 0x240000

void fill_pattern(TestMachine& m, uint64_t pa, size_t len, uint8_t seed) {
  std::vector<uint8_t> b(len);
  for (size_t k = 0; k < len; ++k) b[k] = uint8_t(seed + k * 7 + (k >> 8));
  m.write(pa, b.data(), len);
}

std::vector<uint8_t> read_bytes(TestMachine& m, uint64_t pa, size_t len) {
  std::vector<uint8_t> b(len);
  m.ram.read(pa, b.data(), len);
  return b;
}

bool df_set(TestMachine& m) { return m.cpu.rflags() & rf::kDF; }
void set_df(TestMachine& m, bool on) {
  m.cpu.set_rflags(on ? m.cpu.rflags() | rf::kDF : m.cpu.rflags() & ~rf::kDF);
}

// Runs `src` in 64-bit mode from layout::kCode with the given registers.
struct Long64 {
  TestMachine m;
  explicit Long64(std::string_view src, cpu::CpuModel model = cpu::CpuModel::max()) : m(64ull << 20, std::move(model)) {
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, src, 64);
  }
  void at_start(uint64_t rsi, uint64_t rdi, uint64_t rcx) {
    m.cpu.state.rip = layout::kCode;
    m.cpu.state.activity = cpu::Activity::kActive;  // after an earlier HLT
    m.reg(cpu::kRsi) = rsi;
    m.reg(cpu::kRdi) = rdi;
    m.reg(cpu::kRcx) = rcx;
  }
};

TEST(InsnString, RepMovsbCopiesForwardAcrossPages) {
  Long64 t("rep movsb\n hlt");
  fill_pattern(t.m, kSrc + 0x123, 10000, 1);
  t.at_start(kSrc + 0x123, kDst + 0x777, 10000);
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(read_bytes(t.m, kDst + 0x777, 10000), read_bytes(t.m, kSrc + 0x123, 10000));
  EXPECT_EQ(t.m.peek<uint8_t>(kDst + 0x777 + 10000), 0u);
  EXPECT_EQ(t.m.reg(cpu::kRcx), 0u);
  EXPECT_EQ(t.m.reg(cpu::kRsi), kSrc + 0x123 + 10000);
  EXPECT_EQ(t.m.reg(cpu::kRdi), kDst + 0x777 + 10000);
}

TEST(InsnString, SingleMovsOfEachSizeAndDirection) {
  const struct { const char* insn; unsigned n; } kForms[] = {{"movsb", 1}, {"movsw", 2}, {"movsd", 4}, {"movsq", 8}};
  for (const auto& f : kForms) {
    for (bool down : {false, true}) {
      SCOPED_TRACE(std::string(f.insn) + (down ? " DF=1" : " DF=0"));
      Long64 t(std::string(f.insn) + "\n hlt");
      fill_pattern(t.m, kSrc, 64, 9);
      t.at_start(kSrc + 16, kDst + 16, 77);
      set_df(t.m, down);
      ASSERT_EQ(t.m.run(), RunExit::kHalted);
      EXPECT_EQ(read_bytes(t.m, kDst + 16, f.n), read_bytes(t.m, kSrc + 16, f.n));
      EXPECT_EQ(t.m.peek<uint8_t>(kDst + 16 + f.n), 0u);
      const uint64_t d = down ? -uint64_t(f.n) : f.n;
      EXPECT_EQ(t.m.reg(cpu::kRsi), kSrc + 16 + d);
      EXPECT_EQ(t.m.reg(cpu::kRdi), kDst + 16 + d);
      EXPECT_EQ(t.m.reg(cpu::kRcx), 77u);  // no REP: the count is untouched
    }
  }
}

TEST(InsnString, RepMovsBackwardWithDf) {
  Long64 t("rep movsq\n hlt");
  fill_pattern(t.m, kSrc, 0x3000, 3);
  // Highest element first: 0x500 quadwords ending at kSrc + 0x2ff8.
  t.at_start(kSrc + 0x2ff8, kDst + 0x2ff8, 0x500);
  set_df(t.m, true);
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  const uint64_t lo = 0x3000 - 0x500 * 8;
  EXPECT_EQ(read_bytes(t.m, kDst + lo, 0x2800), read_bytes(t.m, kSrc + lo, 0x2800));
  EXPECT_EQ(t.m.peek<uint64_t>(kDst + lo - 8), 0u);
  EXPECT_EQ(t.m.reg(cpu::kRsi), kSrc + lo - 8);
  EXPECT_EQ(t.m.reg(cpu::kRdi), kDst + lo - 8);
  EXPECT_TRUE(df_set(t.m));
}

// The result of n sequential element moves, on a host copy of the region.
void reference_movs(std::vector<uint8_t>& mem, uint64_t si, uint64_t di, uint64_t n, unsigned size, bool down) {
  for (uint64_t k = 0; k < n; ++k) {
    uint8_t t[8];
    std::memcpy(t, &mem[si], size);
    std::memcpy(&mem[di], t, size);
    si += down ? -uint64_t(size) : size;
    di += down ? -uint64_t(size) : size;
  }
}

TEST(InsnString, OverlappingMovsIsExactlySequential) {
  const struct { const char* insn; unsigned n; } kForms[] = {{"movsb", 1}, {"movsw", 2}, {"movsd", 4}, {"movsq", 8}};
  const int64_t kGaps[] = {1, 2, 3, 5, 7, 8, 12, 100, -1, -3, -8, -13, 0};
  for (const auto& f : kForms) {
    Long64 t(std::string("rep ") + f.insn + "\n hlt");
    for (int64_t gap : kGaps) {
      for (bool down : {false, true}) {
        SCOPED_TRACE(std::string(f.insn) + " gap " + std::to_string(gap) + (down ? " DF=1" : " DF=0"));
        const uint64_t region = kSrc, len = 0x3000;
        fill_pattern(t.m, region, len, uint8_t(gap));
        std::vector<uint8_t> want = read_bytes(t.m, region, len);
        const uint64_t count = 700 / f.n;
        const uint64_t si = 0x1000 + 0x7f3;  // runs across the page boundary at 0x2000
        const uint64_t di = si + gap;
        reference_movs(want, si, di, count, f.n, down);
        t.at_start(region + si, region + di, count);
        set_df(t.m, down);
        ASSERT_EQ(t.m.run(), RunExit::kHalted);
        EXPECT_EQ(read_bytes(t.m, region, len), want);
        const uint64_t moved = down ? -(count * f.n) : count * f.n;
        EXPECT_EQ(t.m.reg(cpu::kRsi), region + si + moved);
        EXPECT_EQ(t.m.reg(cpu::kRdi), region + di + moved);
      }
    }
  }
}

TEST(InsnString, SegmentOverrideAppliesToSourceOnly) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  // Distinct bases: DS reads from 0x300000, FS from 0x320000; ES (destination) is 0x310000.
  m.cpu.state.seg[unsigned(SegReg::kDS)].base = 0x300000;
  m.cpu.state.seg[unsigned(SegReg::kES)].base = 0x310000;
  m.cpu.state.seg[unsigned(SegReg::kFS)].base = 0x320000;
  m.cpu.refresh_mode();
  m.load_code(layout::kCode, R"(
    mov esi, 0x100
    mov edi, 0x200
    mov ecx, 8
    rep movs byte ptr es:[edi], byte ptr fs:[esi]
    mov esi, 0x100
    mov edi, 0x300
    mov ecx, 8
    rep movsb
    hlt
  )", 32);
  fill_pattern(m, 0x300100, 8, 0x10);
  fill_pattern(m, 0x320100, 8, 0x80);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(read_bytes(m, 0x310200, 8), read_bytes(m, 0x320100, 8));  // FS source, ES destination
  EXPECT_EQ(read_bytes(m, 0x310300, 8), read_bytes(m, 0x300100, 8));  // DS source
  EXPECT_EQ(m.peek<uint64_t>(0x320200), 0u);                          // nothing written through FS
}

TEST(InsnString, AddressSize16UsesCxSiDiAndKeepsUpperBits) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov ecx, 0x12340003
    mov esi, 0xabcd0100
    mov edi, 0x55550200
    addr16 rep movsb
    hlt
  )", 32);
  fill_pattern(m, 0x100, 3, 0x21);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(read_bytes(m, 0x200, 3), read_bytes(m, 0x100, 3));
  EXPECT_EQ(m.reg(cpu::kRcx), 0x12340000u);
  EXPECT_EQ(m.reg(cpu::kRsi), 0xabcd0103u);
  EXPECT_EQ(m.reg(cpu::kRdi), 0x55550203u);
}

TEST(InsnString, AddressSize32In64BitModeZeroExtends) {
  Long64 t("addr32 rep movsb\n hlt");
  fill_pattern(t.m, kSrc, 4, 0x31);
  t.at_start(0xffffffff00000000ull | kSrc, 0x7777777700000000ull | kDst, 0xffffffff00000004ull);
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(read_bytes(t.m, kDst, 4), read_bytes(t.m, kSrc, 4));
  EXPECT_EQ(t.m.reg(cpu::kRcx), 0u);
  EXPECT_EQ(t.m.reg(cpu::kRsi), kSrc + 4);
  EXPECT_EQ(t.m.reg(cpu::kRdi), kDst + 4);
}

TEST(InsnString, RealModeStoswWrapsTheOffsetAt64K) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.cpu.state.seg[unsigned(SegReg::kES)].selector = 0x3000;
  m.cpu.state.seg[unsigned(SegReg::kES)].base = 0x30000;
  m.cpu.refresh_mode();
  m.load_code(0x10000, R"(
    mov di, 0xfffc
    mov cx, 4
    mov ax, 0xbeef
    rep stosw
    hlt
  )", 16);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.peek<uint16_t>(0x3fffc), 0xbeefu);
  EXPECT_EQ(m.peek<uint16_t>(0x3fffe), 0xbeefu);
  EXPECT_EQ(m.peek<uint16_t>(0x30000), 0xbeefu);  // DI wrapped to 0 within ES
  EXPECT_EQ(m.peek<uint16_t>(0x30002), 0xbeefu);
  EXPECT_EQ(m.peek<uint16_t>(0x40000), 0u);
  EXPECT_EQ(m.reg(cpu::kRdi) & 0xffff, 4u);
  EXPECT_EQ(m.reg(cpu::kRcx) & 0xffff, 0u);
}

TEST(InsnString, RepStosFillsEverySizeBothDirections) {
  const struct { const char* insn; unsigned n; uint64_t rax; } kForms[] = {
      {"stosb", 1, 0x11223344556677abull}, {"stosw", 2, 0x1122334455667788ull},
      {"stosd", 4, 0x99aabbccddeeff01ull}, {"stosq", 8, 0x0123456789abcdefull}};
  for (const auto& f : kForms) {
    for (bool down : {false, true}) {
      SCOPED_TRACE(std::string(f.insn) + (down ? " DF=1" : " DF=0"));
      Long64 t(std::string("rep ") + f.insn + "\n hlt");
      const uint64_t count = 5000 / f.n;  // crosses pages
      const uint64_t start = kDst + 0x4000 + 3;
      t.at_start(0, start, count);
      t.m.reg(cpu::kRax) = f.rax;
      set_df(t.m, down);
      ASSERT_EQ(t.m.run(), RunExit::kHalted);
      const uint64_t lo = down ? start - (count - 1) * f.n : start;
      for (uint64_t k = 0; k < count; ++k) {
        uint64_t v = 0;
        t.m.ram.read(lo + k * f.n, &v, f.n);
        ASSERT_EQ(v, f.rax & (~0ull >> (64 - 8 * f.n))) << "element " << k;
      }
      EXPECT_EQ(t.m.peek<uint8_t>(lo - 1), 0u);
      EXPECT_EQ(t.m.peek<uint8_t>(lo + count * f.n), 0u);
      EXPECT_EQ(t.m.reg(cpu::kRdi), down ? lo - f.n : lo + count * f.n);
    }
  }
}

TEST(InsnString, LodsLoadsTheAccumulator) {
  Long64 t(R"(
    mov rax, -1
    rep lodsb
    mov rbx, rax
    mov rax, -1
    lodsd
    hlt
  )");
  t.m.poke<uint32_t>(kSrc, 0x44332211);
  t.m.poke<uint32_t>(kSrc + 4, 0x88776655);
  t.at_start(kSrc, 0, 3);
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.reg(cpu::kRbx), 0xffffffffffffff33ull);  // the last byte of three, into AL only
  EXPECT_EQ(t.m.reg(cpu::kRax), 0x77665544ull);           // LODSD from kSrc + 3, zero-extended
  EXPECT_EQ(t.m.reg(cpu::kRsi), kSrc + 3 + 4);
}

TEST(InsnString, RepeCmpsStopsAtTheFirstDifference) {
  Long64 t("repe cmpsb\n hlt");
  fill_pattern(t.m, kSrc, 32, 5);
  fill_pattern(t.m, kDst, 32, 5);
  t.m.poke<uint8_t>(kDst + 5, 0xff);  // [rsi] < [rdi] at index 5
  t.at_start(kSrc, kDst, 16);
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.reg(cpu::kRcx), 10u);
  EXPECT_EQ(t.m.reg(cpu::kRsi), kSrc + 6);
  EXPECT_EQ(t.m.reg(cpu::kRdi), kDst + 6);
  EXPECT_FALSE(t.m.cpu.rflags() & rf::kZF);
  EXPECT_TRUE(t.m.cpu.rflags() & rf::kCF);  // SRC1 - SRC2 borrowed

  // Equal buffers: runs to rCX = 0 with ZF = 1.
  t.m.poke<uint8_t>(kDst + 5, t.m.peek<uint8_t>(kSrc + 5));
  t.at_start(kSrc, kDst, 16);
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.reg(cpu::kRcx), 0u);
  EXPECT_TRUE(t.m.cpu.rflags() & rf::kZF);
}

TEST(InsnString, RepneCmpsStopsAtTheFirstEquality) {
  Long64 t("repne cmpsw\n hlt");
  for (int k = 0; k < 8; ++k) {
    t.m.poke<uint16_t>(kSrc + 2 * k, uint16_t(k));
    t.m.poke<uint16_t>(kDst + 2 * k, uint16_t(k == 3 ? 3 : 100 + k));
  }
  t.at_start(kSrc, kDst, 8);
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.reg(cpu::kRcx), 4u);
  EXPECT_EQ(t.m.reg(cpu::kRsi), kSrc + 8);
  EXPECT_TRUE(t.m.cpu.rflags() & rf::kZF);
}

TEST(InsnString, RepneScasFindsTheByte) {
  Long64 t("repne scasb\n hlt");
  t.m.write(kSrc, "hello, world", 12);
  t.at_start(0, kSrc, 100);
  t.m.reg(cpu::kRax) = ',';
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.reg(cpu::kRdi), kSrc + 6);  // one past the match
  EXPECT_EQ(t.m.reg(cpu::kRcx), 94u);
  EXPECT_TRUE(t.m.cpu.rflags() & rf::kZF);

  // Not found within the count: rCX runs out with ZF = 0.
  t.at_start(0, kSrc, 5);
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.reg(cpu::kRcx), 0u);
  EXPECT_EQ(t.m.reg(cpu::kRdi), kSrc + 5);
  EXPECT_FALSE(t.m.cpu.rflags() & rf::kZF);
}

TEST(InsnString, RepeScasqSkipsEqualElements) {
  Long64 t("repe scasq\n hlt");
  for (int k = 0; k < 6; ++k) t.m.poke<uint64_t>(kSrc + 8 * k, k < 4 ? 0x5a5a5a5a5a5a5a5aull : 1);
  t.at_start(0, kSrc, 6);
  t.m.reg(cpu::kRax) = 0x5a5a5a5a5a5a5a5aull;
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.reg(cpu::kRcx), 1u);
  EXPECT_EQ(t.m.reg(cpu::kRdi), kSrc + 40);
  EXPECT_FALSE(t.m.cpu.rflags() & rf::kZF);
}

TEST(InsnString, ZeroCountDoesNothingAndCannotFault) {
  Long64 t("rep movsb\n repe cmpsb\n rep stosq\n hlt");
  const uint64_t bad = 0x0000800000000000ull;  // non-canonical
  t.at_start(bad, bad, 0);
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.reg(cpu::kRsi), bad);
  EXPECT_EQ(t.m.reg(cpu::kRdi), bad);
}

TEST(InsnString, NonCanonicalSourceFaultsGp) {
  Long64 t("rep movsb\n hlt");
  t.at_start(0x0000800000000000ull, kDst, 8);
  ASSERT_EQ(t.m.run(), RunExit::kException);
  EXPECT_EQ(t.m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
  EXPECT_EQ(t.m.reg(cpu::kRcx), 8u);
  EXPECT_EQ(t.m.cpu.state.rip, layout::kCode);
}

// Maps [0x400000, 0x600000) with 4 KiB pages (a page table at 0x30000) so that single pages
// can be made not present.
struct Paged : Long64 {
  static constexpr uint64_t kPt = 0x30000;
  static constexpr uint64_t kBase = 0x400000;
  explicit Paged(std::string_view src) : Long64(src) {
    for (uint64_t j = 0; j < 512; ++j) m.poke<uint64_t>(kPt + 8 * j, (kBase + j * 0x1000) | 7);
    m.poke<uint64_t>(layout::kPml4 + 0x2000 + 2 * 8, kPt | 7);  // PD0[2] covers 0x400000
    m.cpu.flush_tlb_all();
  }
  void set_present(uint64_t page, bool present) {
    m.poke<uint64_t>(kPt + 8 * ((page - kBase) >> 12), present ? page | 7 : 0);
    m.cpu.flush_tlb_all();
  }
};

TEST(InsnString, RepMovsFaultsMidwayAndResumes) {
  Paged t("rep movsb\n hlt");
  t.set_present(0x403000, false);
  fill_pattern(t.m, 0x401800, 0x3000, 0x42);
  t.at_start(0x401800, 0x600000, 0x3000);
  ASSERT_EQ(t.m.run(), RunExit::kException);
  const cpu::Event& e = t.m.cpu.pending_event();
  EXPECT_EQ(e.vector, uint8_t(arch::Vector::kPF));
  EXPECT_EQ(e.error, 0u);  // not present, read, supervisor
  EXPECT_EQ(t.m.cpu.state.rip, layout::kCode);
  EXPECT_EQ(t.m.reg(cpu::kRcx), 0x1800u);
  EXPECT_EQ(t.m.reg(cpu::kRsi), 0x403000u);
  EXPECT_EQ(t.m.reg(cpu::kRdi), 0x601800u);
  EXPECT_EQ(read_bytes(t.m, 0x600000, 0x1800), read_bytes(t.m, 0x401800, 0x1800));
  EXPECT_EQ(t.m.peek<uint8_t>(0x601800), 0u);

  // The handler maps the page and returns to the instruction: it completes.
  t.set_present(0x403000, true);
  t.m.cpu.clear_pending_event();
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.reg(cpu::kRcx), 0u);
  EXPECT_EQ(t.m.reg(cpu::kRsi), 0x404800u);
  EXPECT_EQ(t.m.reg(cpu::kRdi), 0x603000u);
  EXPECT_EQ(read_bytes(t.m, 0x600000, 0x3000), read_bytes(t.m, 0x401800, 0x3000));
}

TEST(InsnString, RepMovsFaultOnTheDestinationIsAWriteFault) {
  Paged t("rep movsq\n hlt");
  t.set_present(0x405000, false);
  fill_pattern(t.m, kSrc, 0x2000, 0x17);
  t.at_start(kSrc, 0x404800, 0x200);
  ASSERT_EQ(t.m.run(), RunExit::kException);
  EXPECT_EQ(t.m.cpu.pending_event().vector, uint8_t(arch::Vector::kPF));
  EXPECT_EQ(t.m.cpu.pending_event().error, uint32_t(arch::pfec::kWrite));
  EXPECT_EQ(t.m.reg(cpu::kRcx), 0x100u);
  EXPECT_EQ(t.m.reg(cpu::kRsi), kSrc + 0x800);
  EXPECT_EQ(t.m.reg(cpu::kRdi), 0x405000u);
}

TEST(InsnString, ElementStraddlingIntoAMissingPageFaultsBeforeMoving) {
  Paged t("rep movsd\n hlt");
  t.set_present(0x403000, false);
  t.at_start(0x402ff8, kDst, 4);
  ASSERT_EQ(t.m.run(), RunExit::kException);
  EXPECT_EQ(t.m.cpu.pending_event().vector, uint8_t(arch::Vector::kPF));
  // Elements at ...ff8 and ...ffc moved; the third would read 0x403000.
  EXPECT_EQ(t.m.reg(cpu::kRcx), 2u);
  EXPECT_EQ(t.m.reg(cpu::kRsi), 0x403000u);

  t.at_start(0x402ffe, kDst, 4);  // the first element straddles the boundary
  t.m.cpu.clear_pending_event();
  ASSERT_EQ(t.m.run(), RunExit::kException);
  EXPECT_EQ(t.m.reg(cpu::kRcx), 4u);
  EXPECT_EQ(t.m.reg(cpu::kRsi), 0x402ffeu);
  EXPECT_EQ(t.m.reg(cpu::kRdi), kDst);
}

TEST(InsnString, BackwardRepFaultsAtTheLowerPage) {
  Paged t("rep movsb\n hlt");
  t.set_present(0x403000, false);
  fill_pattern(t.m, 0x404000, 0x200, 0x66);
  t.at_start(0x404100, kDst + 0x1000, 0x200);
  set_df(t.m, true);
  ASSERT_EQ(t.m.run(), RunExit::kException);
  EXPECT_EQ(t.m.cpu.pending_event().vector, uint8_t(arch::Vector::kPF));
  EXPECT_EQ(t.m.reg(cpu::kRcx), 0x200u - 0x101u);
  EXPECT_EQ(t.m.reg(cpu::kRsi), 0x403fffu);
  EXPECT_EQ(t.m.reg(cpu::kRdi), kDst + 0x1000 - 0x101);
  EXPECT_EQ(read_bytes(t.m, kDst + 0x1000 - 0x100, 0x101), read_bytes(t.m, 0x404000, 0x101));
}

TEST(InsnString, RepStosFaultsMidwayAndResumes) {
  Paged t("rep stosd\n hlt");
  t.set_present(0x401000, false);
  t.at_start(0, 0x400f00, 0x100);
  t.m.reg(cpu::kRax) = 0xa5a5a5a5;
  ASSERT_EQ(t.m.run(), RunExit::kException);
  EXPECT_EQ(t.m.cpu.pending_event().error, uint32_t(arch::pfec::kWrite));
  EXPECT_EQ(t.m.reg(cpu::kRcx), 0x100u - 0x40u);
  EXPECT_EQ(t.m.reg(cpu::kRdi), 0x401000u);
  t.set_present(0x401000, true);
  t.m.cpu.clear_pending_event();
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.peek<uint32_t>(0x4012fc), 0xa5a5a5a5u);
  EXPECT_EQ(t.m.peek<uint32_t>(0x401300), 0u);
}

TEST(InsnString, ReadOnlyDestinationFaultsWithPresentBit) {
  Paged t("rep movsb\n hlt");
  t.m.poke<uint64_t>(Paged::kPt + 8 * 2, 0x402000 | 5);  // present, user, read-only
  t.m.cpu.flush_tlb_all();
  t.at_start(kSrc, 0x401ff0, 0x20);
  ASSERT_EQ(t.m.run(), RunExit::kException);
  EXPECT_EQ(t.m.cpu.pending_event().error, uint32_t(arch::pfec::kWrite | arch::pfec::kPresent));
  EXPECT_EQ(t.m.reg(cpu::kRcx), 0x10u);  // CR0.WP = 1: supervisor writes honour R/W
}

TEST(InsnString, LongRepRunsInChunksWithRipAtTheInstruction) {
  Long64 t("rep movsb\n hlt");
  const uint64_t len = 1 << 20;
  fill_pattern(t.m, 0x800000, len, 0x5);
  t.at_start(0x800000, 0xa00000, len);
  const uint64_t before = t.m.cpu.instructions_retired();
  ASSERT_EQ(t.m.run(2), RunExit::kBudget);
  // Some of the copy is done, RIP is still at the REP, and the run loop got control back.
  EXPECT_EQ(t.m.cpu.state.rip, layout::kCode);
  EXPECT_GT(t.m.reg(cpu::kRcx), 0u);
  EXPECT_LT(t.m.reg(cpu::kRcx), len);
  EXPECT_EQ(t.m.reg(cpu::kRsi) - 0x800000, len - t.m.reg(cpu::kRcx));
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.reg(cpu::kRcx), 0u);
  EXPECT_EQ(read_bytes(t.m, 0xa00000, len), read_bytes(t.m, 0x800000, len));
  EXPECT_GT(t.m.cpu.instructions_retired() - before, 3u);  // chunks count as the loop's work units
}

TEST(InsnString, InterruptIsTakenBetweenChunks) {
  Long64 t("rep stosb\n hlt");
  t.m.cpu.intercept_exceptions = false;
  t.m.load_code(layout::kCode + 0x1000, "hlt", 64);  // the interrupt handler
  t.m.set_idt_gate64(0x20, layout::kCode + 0x1000);
  t.at_start(0, 0x800000, 4 << 20);
  t.m.reg(cpu::kRax) = 0x77;
  t.m.cpu.set_rflags(t.m.cpu.rflags() | rf::kIF);
  ASSERT_EQ(t.m.run(1), RunExit::kBudget);
  t.m.io.pending_vector = 0x20;
  t.m.cpu.set_intr_line(true);
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.cpu.state.rip, layout::kCode + 0x1001);  // in the handler
  // The interrupt frame returns to the REP, with the count partly done.
  const uint64_t rsp = t.m.reg(cpu::kRsp);
  EXPECT_EQ(t.m.peek<uint64_t>(rsp), layout::kCode);
  EXPECT_GT(t.m.reg(cpu::kRcx), 0u);
  EXPECT_LT(t.m.reg(cpu::kRcx), 4u << 20);
  EXPECT_EQ(t.m.peek<uint8_t>(t.m.reg(cpu::kRdi) - 1), 0x77u);
  EXPECT_EQ(t.m.peek<uint8_t>(t.m.reg(cpu::kRdi)), 0u);
}

TEST(InsnString, SingleStepTrapsAfterEachIteration) {
  Long64 t("rep movsb\n hlt");
  fill_pattern(t.m, kSrc, 3, 0x70);
  t.at_start(kSrc, kDst, 3);
  t.m.cpu.set_rflags(t.m.cpu.rflags() | rf::kTF);
  for (uint64_t left = 2; left != ~0ull; --left) {
    ASSERT_EQ(t.m.run(), RunExit::kException);
    EXPECT_EQ(t.m.cpu.pending_event().vector, uint8_t(arch::Vector::kDB));
    EXPECT_EQ(t.m.reg(cpu::kRcx), left);
    // RIP stays at the REP until the last iteration.
    EXPECT_EQ(t.m.cpu.state.rip, left ? layout::kCode : layout::kCode + 2);
    t.m.cpu.clear_pending_event();
  }
  EXPECT_EQ(read_bytes(t.m, kDst, 3), read_bytes(t.m, kSrc, 3));
}

TEST(InsnString, RepMovsOverwritingTheNextInstructionIsSeen) {
  Long64 t(R"(
    lea rsi, [rip + new_insn]
    lea rdi, [rip + target]
    mov ecx, 5
    rep movsb
  target:
    mov eax, 1
    hlt
  new_insn:
    mov eax, 2
  )");
  ASSERT_EQ(t.m.run(), RunExit::kHalted);
  EXPECT_EQ(t.m.reg(cpu::kRax), 2u);
}

TEST(InsnString, SegmentLimitFaultsInProtectedMode) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.cpu.state.seg[unsigned(SegReg::kES)].base = 0x300000;
  m.cpu.state.seg[unsigned(SegReg::kES)].limit = 0x10ff;  // byte-granular limit
  m.cpu.refresh_mode();
  m.load_code(layout::kCode, R"(
    mov esi, 0x200000
    mov edi, 0x1000
    mov ecx, 0x200
    rep movsb
    hlt
  )", 32);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
  EXPECT_EQ(m.reg(cpu::kRdi), 0x1100u);  // the first byte past the limit
  EXPECT_EQ(m.reg(cpu::kRcx), 0x100u);
}

TEST(InsnString, SseMovsdIsNotTakenAsTheStringForm) {
  // F2 0F 10 is the SSE2 scalar move: whatever the SSE class does with it, it must not move
  // memory at [rsi] to [rdi].
  Long64 t(".byte 0xf2, 0x0f, 0x10, 0xc1\n hlt");
  t.m.poke<uint32_t>(kSrc, 0x12345678);
  t.at_start(kSrc, kDst, 0);
  t.m.run();
  EXPECT_EQ(t.m.peek<uint32_t>(kDst), 0u);
  EXPECT_EQ(t.m.reg(cpu::kRsi), kSrc);
}

}  // namespace
}  // namespace nestvm::test
