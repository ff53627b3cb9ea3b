// Bit test/scan and bit manipulation (src/cpu/insn/bit.cpp, bmi.cpp): every form checked
// against the host processor (insn_arith_host.h), all six status flags included, plus the
// feature gating (#UD) and the bit-string addressing of BT with a register offset.
#include <gtest/gtest.h>

#include "insn_arith_host.h"

namespace nestvm::test::arith {
namespace {

using cpu::RunExit;

// A fix that zeroes register `reg` (or the 8 data bytes at offset 0x10 when reg < 0) in one
// run out of four, so that the zero-source cases are well covered.
Fix sometimes_zero(int reg) {
  return [reg](Regs& r, std::mt19937_64& rng, uint8_t* data) {
    if (rng() % 4) return;
    if (reg < 0) std::memset(data + 0x10, 0, 8);
    else r.gpr[reg] = 0;
  };
}

// Bit offsets within +-7 KiB of bits around the middle of the data area (layout::kData + 0x2000).
Fix bit_offset_in(int reg, unsigned n, int base_reg = -1) {
  return [=](Regs& r, std::mt19937_64& rng, uint8_t*) {
    const int64_t off = int64_t(rng() % 112000) - 56000;
    r.gpr[reg] = n == 2 ? (r.gpr[reg] & ~0xffffull) | (uint64_t(off / 2) & 0xffff) : uint64_t(off);
    if (n == 4) r.gpr[reg] = (r.gpr[reg] & 0xffffffff00000000ull) | (uint64_t(off) & 0xffffffff);
    if (base_reg >= 0) r.gpr[base_reg] = layout::kData + 0x2000 - 8;
  };
}

TEST(InsnArithBit, BitTestRegisterAndImmediateFormsMatchHost) {
  std::vector<DiffCase> cases;
  for (const char* op : {"bt", "bts", "btr", "btc"}) {
    const std::string o = op;
    for (const char* f : {" ax, dx", " r9w, r10w", " eax, ecx", " r11d, ebx", " rsi, rdi", " r8, r8", " ax, 17", " esi, 45",
                          " rdi, 200", " word ptr [0x200010], 17", " dword ptr [0x200010], 40",
                          " qword ptr [0x200010], 99"})
      cases.emplace_back(o + f);
    for (const char* f : {" cx, bx", " edi, esi", " ebp, 33", " word ptr [0x200020], 30", " dword ptr [0x200020], 7"})
      cases.emplace_back(o + f, 32);
    if (o != "bt") {
      cases.emplace_back("lock " + o + " dword ptr [0x200010], 3");
      cases.emplace_back("lock " + o + " qword ptr [0x200018], 63");
    }
  }
  diff(cases);
}

// With a register offset and a memory operand, the offset is signed and reaches beyond the
// addressed operand (negative offsets included).
TEST(InsnArithBit, BitStringOffsetsMatchHost) {
  std::vector<DiffCase> cases;
  for (const char* op : {"bt", "bts", "btr", "btc"}) {
    const std::string o = op;
    cases.push_back(DiffCase(o + " word ptr [0x202000], cx").with(bit_offset_in(1, 2)));
    cases.push_back(DiffCase(o + " dword ptr [0x202000], ecx").with(bit_offset_in(1, 4)));
    cases.push_back(DiffCase(o + " qword ptr [0x202000], rcx").with(bit_offset_in(1, 8)));
    cases.push_back(DiffCase(o + " qword ptr [rbx + 8], r9").with(bit_offset_in(9, 8, 3)));
    cases.push_back(DiffCase(o + " dword ptr [0x202001], edx", 32).with(bit_offset_in(2, 4)));
    cases.push_back(DiffCase(o + " word ptr [ebx + 8], si", 32).with(bit_offset_in(6, 2, 3)));
    if (o != "bt") {
      cases.push_back(DiffCase("lock " + o + " dword ptr [0x202000], ecx").with(bit_offset_in(1, 4)));
      cases.push_back(DiffCase("lock " + o + " qword ptr [0x202003], rcx").with(bit_offset_in(1, 8)));
    }
  }
  for (DiffCase& c : cases) c.fresh_data(0x1000, 0x2000).iterations(150);
  diff(cases);
}

// The same by hand, so that the addressing is pinned down even where the host check is skipped.
TEST(InsnArithBit, NegativeRegisterOffsetAddressesBelowTheOperand) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov rbx, 0x200100
    mov rcx, -1
    bts dword ptr [rbx], ecx       # bit 31 of the dword at 0x2000fc
    mov rcx, -33
    bts qword ptr [rbx], rcx       # bit 31 of the qword at 0x2000f8
    mov cx, -16
    lock btc word ptr [rbx + 0x10], cx   # bit 0 of the word at 0x20010e
    setc dl
    mov ecx, -100
    bt dword ptr [rbx], ecx        # bit 28 of the dword at 0x2000f0
    setc dh
    hlt
  )", 64);
  m.poke<uint32_t>(0x2000f0, 1u << 28);
  m.poke<uint16_t>(0x20010e, 1);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.peek<uint32_t>(0x2000fc), 0x80000000u);
  EXPECT_EQ(m.peek<uint32_t>(0x2000f8), 0x80000000u);
  EXPECT_EQ(m.peek<uint16_t>(0x20010e), 0u);
  EXPECT_EQ(m.reg(cpu::kRdx) & 0xffff, 0x0101u);
}

TEST(InsnArithBit, ScanAndCountMatchHost) {
  std::vector<DiffCase> cases;
  for (const char* op : {"bsf", "bsr", "popcnt", "lzcnt", "tzcnt"}) {
    const std::string o = op;
    cases.push_back(DiffCase(o + " ax, cx").with(sometimes_zero(1)));
    cases.push_back(DiffCase(o + " r9w, r9w").with(sometimes_zero(9)));
    cases.push_back(DiffCase(o + " eax, ecx").with(sometimes_zero(1)));
    cases.push_back(DiffCase(o + " r12d, esi").with(sometimes_zero(6)));
    cases.push_back(DiffCase(o + " rax, rdx").with(sometimes_zero(2)));
    cases.push_back(DiffCase(o + " dx, word ptr [0x200010]").with(sometimes_zero(-1)));
    cases.push_back(DiffCase(o + " edx, dword ptr [0x200010]").with(sometimes_zero(-1)));
    cases.push_back(DiffCase(o + " rdx, qword ptr [0x200010]").with(sometimes_zero(-1)));
    cases.push_back(DiffCase(o + " si, di", 32).with(sometimes_zero(7)));
    cases.push_back(DiffCase(o + " ebx, dword ptr [0x200010]", 32).with(sometimes_zero(-1)));
  }
  diff(cases);
}

// BMI1/BMI2 control operands: start/length/index bytes near the operand size most of the time.
Fix control_in(int reg) {
  return [reg](Regs& r, std::mt19937_64& rng, uint8_t*) {
    if (rng() % 4 == 0) return;
    r.gpr[reg] = (r.gpr[reg] & ~0xffffull) | (rng() % 72) | ((rng() % 72) << 8);
  };
}

TEST(InsnArithBmi, Bmi1MatchesHost) {
  std::vector<DiffCase> cases;
  for (const char* f : {"andn eax, ebx, ecx", "andn r8, r9, r10", "andn rdx, rdx, qword ptr [0x200010]",
                        "andn esi, edi, dword ptr [0x200010]"})
    cases.emplace_back(f);
  cases.push_back(DiffCase("bextr eax, ebx, ecx").with(control_in(1)));
  cases.push_back(DiffCase("bextr rax, rbx, rcx").with(control_in(1)));
  cases.push_back(DiffCase("bextr r9, qword ptr [0x200010], r11").with(control_in(11)));
  cases.push_back(DiffCase("bextr edx, dword ptr [0x200010], edx").with(control_in(2)));
  for (const char* op : {"blsi", "blsmsk", "blsr"}) {
    const std::string o = op;
    cases.push_back(DiffCase(o + " eax, ecx").with(sometimes_zero(1)));
    cases.push_back(DiffCase(o + " r10, r11").with(sometimes_zero(11)));
    cases.push_back(DiffCase(o + " rbx, rbx").with(sometimes_zero(3)));
    cases.push_back(DiffCase(o + " esi, dword ptr [0x200010]").with(sometimes_zero(-1)));
    cases.push_back(DiffCase(o + " rsi, qword ptr [0x200010]").with(sometimes_zero(-1)));
    cases.push_back(DiffCase(o + " edi, ebx", 32).with(sometimes_zero(3)));
  }
  cases.emplace_back("andn eax, ebx, ecx", 32);
  cases.push_back(DiffCase("bextr esi, dword ptr [0x200010], edi", 32).with(control_in(7)));
  diff(cases);
}

TEST(InsnArithBmi, Bmi2MatchesHost) {
  std::vector<DiffCase> cases;
  cases.push_back(DiffCase("bzhi eax, ebx, ecx").with(control_in(1)));
  cases.push_back(DiffCase("bzhi rax, rbx, rcx").with(control_in(1)));
  cases.push_back(DiffCase("bzhi r8, qword ptr [0x200010], r8").with(control_in(8)));
  cases.push_back(DiffCase("bzhi edx, dword ptr [0x200010], esi", 32).with(control_in(6)));
  for (const char* f : {"mulx rax, rbx, rcx", "mulx eax, ebx, ecx", "mulx rsi, rsi, rdx", "mulx r8, r9, qword ptr [0x200010]",
                        "mulx edi, esi, dword ptr [0x200010]", "mulx r10, r10, r11",
                        "pdep eax, ebx, ecx", "pdep rax, rbx, rcx", "pdep r9, r10, qword ptr [0x200010]",
                        "pext eax, ebx, ecx", "pext rax, rbx, rcx", "pext r9, r10, qword ptr [0x200010]",
                        "rorx eax, ebx, 0", "rorx eax, ebx, 5", "rorx eax, ebx, 37", "rorx rax, rbx, 63",
                        "rorx rsi, qword ptr [0x200010], 200",
                        "sarx eax, ebx, ecx", "sarx rax, rbx, rcx", "sarx r9, qword ptr [0x200010], r9",
                        "shlx eax, ebx, ecx", "shlx rax, rbx, rcx", "shlx edx, dword ptr [0x200010], edx",
                        "shrx eax, ebx, ecx", "shrx rax, rbx, rcx", "shrx r12, qword ptr [0x200010], r13"})
    cases.emplace_back(f);
  for (const char* f : {"mulx ecx, ebx, esi", "pdep eax, ebx, dword ptr [0x200010]", "pext esi, edi, ebx",
                        "rorx edx, dword ptr [0x200010], 13", "sarx eax, ebx, ecx", "shlx edi, esi, ebp", "shrx eax, eax, edx"})
    cases.emplace_back(f, 32);
  diff(cases);
}

TEST(InsnArithBmi, AdxMatchesHost) {
  std::vector<DiffCase> cases;
  for (const char* f : {"adcx eax, ebx", "adcx rax, rbx", "adcx r9, qword ptr [0x200010]", "adcx esi, dword ptr [0x200010]",
                        "adox eax, ebx", "adox rax, rbx", "adox r9, qword ptr [0x200010]", "adox esi, esi"})
    cases.emplace_back(f);
  cases.emplace_back("adcx ecx, edx", 32);
  cases.emplace_back("adox ebx, dword ptr [0x200010]", 32);
  diff(cases);
}

struct Gated {
  const char* text;
  cpu::Feature feature;
};

// Forms of a feature the CPU model lacks raise #UD with nothing changed.
TEST(InsnArithBmi, MissingFeatureRaisesUd) {
  const Gated kCases[] = {
      {"andn eax, ebx, ecx", cpu::Feature::kBmi1},    {"bextr rax, rbx, rcx", cpu::Feature::kBmi1},
      {"blsi eax, ecx", cpu::Feature::kBmi1},         {"blsmsk eax, ecx", cpu::Feature::kBmi1},
      {"blsr rax, [rcx]", cpu::Feature::kBmi1},       {"bzhi eax, ebx, ecx", cpu::Feature::kBmi2},
      {"mulx rax, rbx, rcx", cpu::Feature::kBmi2},    {"pdep eax, ebx, ecx", cpu::Feature::kBmi2},
      {"pext rax, rbx, rcx", cpu::Feature::kBmi2},    {"rorx eax, ebx, 3", cpu::Feature::kBmi2},
      {"sarx eax, ebx, ecx", cpu::Feature::kBmi2},    {"shlx rax, rbx, rcx", cpu::Feature::kBmi2},
      {"shrx eax, ebx, ecx", cpu::Feature::kBmi2},    {"adcx eax, ebx", cpu::Feature::kAdx},
      {"adox rax, rbx", cpu::Feature::kAdx},          {"popcnt eax, ecx", cpu::Feature::kPopcnt},
  };
  for (const Gated& g : kCases) {
    SCOPED_TRACE(g.text);
    cpu::CpuModel model = cpu::CpuModel::max();
    model.set(g.feature, false);
    TestMachine m(64ull << 20, model);
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, std::string("mov eax, 7\n") + g.text + "\nhlt", 64);
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kUD));
    EXPECT_EQ(m.cpu.state.rip, layout::kCode + 5);
    EXPECT_EQ(m.reg(cpu::kRax), 7u);
    // With the feature, the same code runs.
    TestMachine full;
    full.enter_long64(layout::kCode);
    full.load_code(layout::kCode, std::string("lea rcx, [rip]\n") + g.text + "\nhlt", 64);
    EXPECT_EQ(full.run(), RunExit::kHalted);
  }
}

// SDM Vol. 2 §2.5: VEX-encoded GPR instructions #UD in real and virtual-8086 mode, but run in
// 16-bit protected mode; ADCX (legacy encoding) runs everywhere.
TEST(InsnArithBmi, VexFormsAreInvalidInRealAndVirtual8086Mode) {
  const std::string kAndn = ".byte 0xc4, 0xe2, 0x60, 0xf2, 0xc1\n";  // andn eax, ebx, ecx
  const std::string kAdcx = ".byte 0x66, 0x0f, 0x38, 0xf6, 0xc3\n";  // adcx eax, ebx
  auto set_inputs = [](TestMachine& m) {
    m.reg(cpu::kRax) = 0;
    m.reg(cpu::kRbx) = 0xf0f0f0f0;
    m.reg(cpu::kRcx) = 0xffff0000;
  };
  {
    SCOPED_TRACE("real mode");
    TestMachine m;
    m.enter_real_mode(0x1000, 0);
    m.load_code(0x10000, kAndn + "hlt", 16);
    set_inputs(m);
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kUD));
    EXPECT_EQ(m.reg(cpu::kRax), 0u);
  }
  {
    SCOPED_TRACE("virtual-8086 mode");
    TestMachine m;
    m.enter_protected32(layout::kCode);
    for (unsigned s = 0; s < arch::kNumSegRegs; ++s)
      m.cpu.state.seg[s] = {0x2000, 0x20000, 0xffff, arch::ar::kP | arch::ar::kS | (3u << arch::ar::kDplShift) | 3};
    m.cpu.state.rip = 0;
    m.cpu.set_rflags(m.cpu.rflags() | arch::rflags::kVM);
    m.cpu.refresh_mode();
    ASSERT_TRUE(m.cpu.v86_mode());
    m.load_code(0x20000, kAdcx + kAndn + "hlt", 16);
    set_inputs(m);
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kUD));
    EXPECT_EQ(m.cpu.state.rip, 5u);                // at ANDN: ADCX ran
    EXPECT_EQ(m.reg(cpu::kRax), 0xf0f0f0f0u);      // 0 + EBX + CF (0)
  }
  {
    SCOPED_TRACE("16-bit protected mode");
    TestMachine m;
    m.enter_protected32(0x9000);  // inside the 64 KiB limit of the 16-bit code segment
    m.load_seg(arch::SegReg::kCS, sel::kCode16);
    m.cpu.refresh_mode();
    m.load_code(0x9000, kAndn + "hlt", 16);
    set_inputs(m);
    ASSERT_EQ(m.run(), RunExit::kHalted);
    EXPECT_EQ(m.reg(cpu::kRax), 0x0f0f0000u);
  }
}

// Without LZCNT/TZCNT their encodings (F3 0F BD / BC) are BSR/BSF with an ignored prefix.
TEST(InsnArithBit, LzcntTzcntWithoutTheFeatureAreBsrBsf) {
  cpu::CpuModel model = cpu::CpuModel::max();
  model.set(cpu::Feature::kAbm, false);
  model.set(cpu::Feature::kBmi1, false);
  TestMachine m(64ull << 20, model);
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov ecx, 0x00f00000
    mov eax, 99
    mov edx, 99
    lzcnt eax, ecx      # BSR: 23
    tzcnt edx, ecx      # BSF: 20
    xor esi, esi
    mov edi, 77
    lzcnt edi, esi      # BSR of 0: destination unchanged, ZF = 1
    setz bl
    hlt
  )", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 23u);
  EXPECT_EQ(m.reg(cpu::kRdx), 20u);
  EXPECT_EQ(m.reg(cpu::kRdi), 77u);
  EXPECT_EQ(m.reg(cpu::kRbx) & 0xff, 1u);
}

// BSF/BSR with a zero source leave the whole destination register alone (not even the
// upper half of a 64-bit register is cleared by a 32-bit form).
TEST(InsnArithBit, ScanOfZeroKeepsTheDestination) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov rax, 0x123456789abcdef0
    mov rbx, rax
    xor ecx, ecx
    bsf eax, ecx
    bsr rbx, qword ptr [0x200000]
    hlt
  )", 64);
  m.poke<uint64_t>(0x200000, 0);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x123456789abcdef0u);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x123456789abcdef0u);
}

TEST(InsnArithBit, RealModeForms) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.load_code(0x10000, R"(
    mov word ptr [0x300], 0
    mov bx, 0x300
    mov cx, 35
    bts word ptr [bx], cx     # bit 3 of the word at 0x304
    mov ax, 0x8010
    bsr dx, ax
    bsf si, ax
    popcnt di, ax
    hlt
  )", 16);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.peek<uint16_t>(0x304), 8u);
  EXPECT_EQ(m.reg(cpu::kRdx) & 0xffff, 15u);
  EXPECT_EQ(m.reg(cpu::kRsi) & 0xffff, 4u);
  EXPECT_EQ(m.reg(cpu::kRdi) & 0xffff, 2u);
}

}  // namespace
}  // namespace nestvm::test::arith
