// Segment-register loads and descriptor instructions (cpu/insn/segment.cpp, cpu/segmentation.cpp):
// MOV/POP/PUSH Sreg, LDS..LSS, LAR, LSL, VERR, VERW, ARPL, LLDT, LTR, SLDT, STR.
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

void expect_fault(TestMachine& m, Vector v, uint32_t error) {
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(v));
  EXPECT_EQ(m.cpu.pending_event().error, error);
}

TEST(Segment, MovDsLoadsTheDescriptorAndSetsTheAccessedBit) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  set_gdt(m, 0x50, seg_desc(uint32_t(layout::kData), 0xfff, 0x2, 0));  // accessed bit clear
  m.poke<uint32_t>(layout::kData + 0x10, 0xcafef00d);
  m.load_code(layout::kCode, "mov ax, 0x50\n mov ds, ax\n mov eax, [0x10]\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0xcafef00du);
  EXPECT_EQ(seg(m, SegReg::kDS).base, layout::kData);
  EXPECT_EQ(seg(m, SegReg::kDS).limit, 0xfffu);
  EXPECT_TRUE(gdt(m, 0x50) & (1ull << 40));
}

struct LoadCase {
  const char* name;
  uint64_t desc;      // written at GDT selector 0x50 (0 = leave the GDT alone)
  uint16_t selector;
  bool user;          // run at CPL 3
  Vector vector;
  uint32_t error;
};

class DataSegmentLoad : public ::testing::TestWithParam<LoadCase> {};

TEST_P(DataSegmentLoad, Faults) {
  const LoadCase& k = GetParam();
  TestMachine m;
  m.enter_protected32(layout::kCode);
  if (k.desc) set_gdt(m, 0x50, k.desc);
  m.load_code(layout::kCode, "mov ax, " + std::to_string(k.selector) + "\n mov es, ax\n hlt", 32);
  if (k.user) enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  expect_fault(m, k.vector, k.error);
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 4);
  EXPECT_EQ(seg(m, SegReg::kES).selector, k.user ? sel::kUserData : sel::kData);  // unchanged
}

INSTANTIATE_TEST_SUITE_P(
    Segment, DataSegmentLoad,
    ::testing::Values(
        LoadCase{"BeyondGdtLimit", 0, 0x7f8, false, Vector::kGP, 0x7f8},
        LoadCase{"TiWithUnusableLdtr", 0, 0x0c, false, Vector::kGP, 0x0c},
        LoadCase{"SystemDescriptor", sys_desc(0x5000, 0x17, 2), 0x50, false, Vector::kGP, 0x50},
        LoadCase{"ExecuteOnlyCode", seg_desc(0, 0xfffff, kCodeXo, 0), 0x50, false, Vector::kGP, 0x50},
        LoadCase{"RplAboveDpl", 0, sel::kData | 3, false, Vector::kGP, sel::kData},
        LoadCase{"CplAboveDpl", 0, sel::kData, true, Vector::kGP, sel::kData},
        LoadCase{"NotPresent", seg_desc(0, 0xfffff, kData, 0, true, true, false, false), 0x50, false, Vector::kNP, 0x50}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Segment, ConformingReadableCodeLoadsAtAnyCpl) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  set_gdt(m, 0x50, seg_desc(0, 0xfffff, kCodeConf, 0, true, true));
  m.load_code(layout::kCode, "mov ax, 0x53\n mov ds, ax\n mov eax, [0x100000]\n jmp .", 32);
  enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  EXPECT_EQ(m.run(100), RunExit::kBudget);
  EXPECT_EQ(seg(m, SegReg::kDS).selector, 0x53u);
  EXPECT_EQ(uint32_t(m.reg(cpu::kRax)), m.peek<uint32_t>(layout::kCode));  // readable code
}

TEST(Segment, NullDataSelectorLoadsButFaultsOnUse) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, "xor eax, eax\n mov ds, ax\n mov ebx, [0x100]\n hlt", 32);
  expect_fault(m, Vector::kGP, 0);
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 4);  // the access through DS, not the load
  EXPECT_TRUE(seg(m, SegReg::kDS).ar & arch::ar::kUnusable);
}

struct SsCase {
  const char* name;
  uint64_t desc;
  uint16_t selector;
  Vector vector;
  uint32_t error;
};
class StackSegmentLoad : public ::testing::TestWithParam<SsCase> {};

TEST_P(StackSegmentLoad, Faults) {
  const SsCase& k = GetParam();
  TestMachine m;
  m.enter_protected32(layout::kCode);
  if (k.desc) set_gdt(m, 0x50, k.desc);
  m.load_code(layout::kCode, "mov ax, " + std::to_string(k.selector) + "\n mov ss, ax\n hlt", 32);
  expect_fault(m, k.vector, k.error);
  EXPECT_FALSE(m.cpu.state.movss_blocking);
}

INSTANTIATE_TEST_SUITE_P(
    Segment, StackSegmentLoad,
    ::testing::Values(SsCase{"Null", 0, 0, Vector::kGP, 0},
                      SsCase{"RplNotCpl", 0, sel::kData | 1, Vector::kGP, sel::kData},
                      SsCase{"ReadOnly", seg_desc(0, 0xfffff, kDataRo, 0), 0x50, Vector::kGP, 0x50},
                      SsCase{"Code", 0, sel::kCode32, Vector::kGP, sel::kCode32},
                      SsCase{"DplNotCpl", 0, sel::kUserData & ~3, Vector::kGP, sel::kUserData & ~3},
                      SsCase{"NotPresent", seg_desc(0, 0xfffff, kData, 0, true, true, false, false), 0x50, Vector::kSS,
                             0x50}),
    [](const auto& info) { return std::string(info.param.name); });

// (Each scenario after an intercepted exception uses a fresh machine: Cpu::reset does not end
// an interception that run() has already reported.)
TEST(Segment, NullSsIn64BitModeOnlyBelowCpl3WithRplEqualCpl) {
  {
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, "xor eax, eax\n mov ss, ax\n push rax\n hlt", 64);
    ASSERT_EQ(m.run(), RunExit::kHalted);
    EXPECT_EQ(seg(m, SegReg::kSS).selector, 0u);
    EXPECT_EQ(m.cpu.cpl(), 0u);  // a null SS keeps DPL = CPL
    EXPECT_EQ(m.reg(cpu::kRsp), layout::kStackTop - 8);
  }
  {
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, "mov eax, 1\n mov ss, ax\n hlt", 64);  // RPL 1 at CPL 0
    expect_fault(m, Vector::kGP, 0);
  }
  {
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, "mov eax, 3\n mov ss, ax\n hlt", 64);
    enter_user(m, sel::kUserCode64, layout::kCode, 0x60000);
    expect_fault(m, Vector::kGP, 0);
  }
}

// MOV SS holds off an interrupt until the instruction after it has completed.
TEST(Segment, MovSsShadowsTheNextInstruction) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.cpu.intercept_exceptions = false;
  m.set_idt_gate64(0x30, layout::kCode + 0x1000);
  m.load_code(layout::kCode, "mov eax, 0x10\n mov ss, ax\n mov ebx, 1\n hlt", 64);
  m.load_code(layout::kCode + 0x1000, "mov rcx, [rsp]\n hlt", 64);
  ASSERT_EQ(m.run(2), RunExit::kBudget);
  EXPECT_TRUE(m.cpu.state.movss_blocking);
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 7);
  m.cpu.set_rflags(m.cpu.rflags() | arch::rflags::kIF);
  m.io.pending_vector = 0x30;
  m.cpu.set_intr_line(true);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 1u);                     // ran before the interrupt
  EXPECT_EQ(m.reg(cpu::kRcx), layout::kCode + 12);     // the interrupt came right after it
}

TEST(Segment, PushAndPopSegmentRegisters) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.poke<uint32_t>(layout::kStackTop - 4, 0xffffffff);
  m.load_code(layout::kCode, R"(
    push ds
    mov eax, [esp]
    mov dword ptr [esp], 0x2b
    pop es
    push 0x10
    pop ss
    mov ebx, esp
    hlt
  )", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0xffff0010u);  // a 16-bit store into a 4-byte slot
  EXPECT_EQ(seg(m, SegReg::kES).selector, sel::kUserData);
  EXPECT_EQ(m.reg(cpu::kRbx), layout::kStackTop);
}

TEST(Segment, PopIntoSegmentRegisterFaultsWithoutMovingEsp) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, "push 0x7f8\n pop ds\n hlt", 32);
  expect_fault(m, Vector::kGP, 0x7f8);
  EXPECT_EQ(m.reg(cpu::kRsp), layout::kStackTop - 4);
}

TEST(Segment, MovFromSegmentRegisterWidths) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov rax, -1
    mov rbx, -1
    mov rcx, -1
    mov eax, ds
    mov bx, ds
    mov rcx, cs
    mov qword ptr [0x9000], -1
    mov [0x9000], ss
    hlt
  )", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), sel::kData);
  EXPECT_EQ(m.reg(cpu::kRbx), 0xffffffffffff0000ull | sel::kData);
  EXPECT_EQ(m.reg(cpu::kRcx), sel::kCode64);
  EXPECT_EQ(m.peek<uint64_t>(0x9000), 0xffffffffffff0000ull | sel::kData);
}

TEST(Segment, LoadFarPointers) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.poke<uint32_t>(0x9000, 0x12345678);
  m.poke<uint16_t>(0x9004, sel::kUserData);
  m.load_code(layout::kCode, "lds ebx, [0x9000]\n mov ax, 0x10\n mov ds, ax\n lss esp, [0x9000]\n hlt", 32);
  // LSS with an SS of the wrong privilege faults and leaves ESP alone.
  expect_fault(m, Vector::kGP, sel::kUserData & ~3u);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x12345678u);
  EXPECT_EQ(seg(m, SegReg::kDS).selector, sel::kData);
  EXPECT_EQ(m.reg(cpu::kRsp), layout::kStackTop);
}

TEST(Segment, LoadFarPointersIn64BitMode) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.poke<uint64_t>(0x9000, 0x123456789aull);  // m16:64
  m.poke<uint16_t>(0x9008, sel::kData);
  m.poke<uint32_t>(0x9100, 0xdeadbeef);       // m16:32
  m.poke<uint16_t>(0x9104, sel::kUserData);
  m.load_code(layout::kCode, ".byte 0x48, 0x0f, 0xb2, 0x24, 0x25, 0x00, 0x90, 0x00, 0x00  # lss rsp, [0x9000]\n lfs eax, [0x9100]\n hlt", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRsp), 0x123456789aull);
  EXPECT_EQ(m.reg(cpu::kRax), 0xdeadbeefu);
  EXPECT_EQ(seg(m, SegReg::kFS).selector, sel::kUserData);
  EXPECT_EQ(seg(m, SegReg::kSS).selector, sel::kData);
}

TEST(Segment, FsBaseIn64BitModeComesFromTheDescriptor) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  set_gdt(m, 0x50, seg_desc(0x300000, 0, kData, 0));
  m.poke<uint64_t>(0x300008, 0x1122334455667788ull);
  m.load_code(layout::kCode, "mov eax, 0x50\n mov fs, ax\n mov rbx, fs:[8]\n hlt", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x1122334455667788ull);
  EXPECT_EQ(seg(m, SegReg::kFS).base, 0x300000u);
}

// ---- LAR, LSL, VERR, VERW, ARPL ------------------------------------------------------------

// Runs `insn` (which sets EAX or ZF) on `selector` and returns {ZF, EAX}; EAX starts at ~0.
std::pair<bool, uint32_t> probe(TestMachine& m, const std::string& insn, uint16_t selector, bool user = false) {
  m.load_code(layout::kCode,
              "mov ecx, " + std::to_string(selector) + "\n mov eax, -1\n " + insn + "\n setz dl\n jmp .", 32);
  m.cpu.state.rip = layout::kCode;
  if (user) enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  EXPECT_EQ(m.run(4), RunExit::kBudget);
  return {m.reg(cpu::kRdx) & 1, uint32_t(m.reg(cpu::kRax))};
}

TEST(Segment, LarAndLslInProtectedMode) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  set_gdt(m, 0x50, gate_desc(sel::kCode32, 0, 0xe, 0));   // interrupt gate: not for LAR
  set_gdt(m, 0x58, gate_desc(sel::kCode32, 0, 0xc, 3));   // call gate: LAR yes, LSL no
  set_gdt(m, 0x60, seg_desc(0, 0xfffff, kCodeConf, 0, true, true));
  EXPECT_EQ(probe(m, "lar eax, ecx", sel::kCode32), std::make_pair(true, 0x00c09b00u));
  EXPECT_EQ(probe(m, "lar ax, cx", sel::kCode32), std::make_pair(true, 0xffff9b00u));
  EXPECT_EQ(probe(m, "lar eax, ecx", sel::kTss), std::make_pair(true, 0x00008900u));
  EXPECT_EQ(probe(m, "lar eax, ecx", 0), std::make_pair(false, 0xffffffffu));
  EXPECT_EQ(probe(m, "lar eax, ecx", 0x7f8), std::make_pair(false, 0xffffffffu));
  EXPECT_EQ(probe(m, "lar eax, ecx", 0x50), std::make_pair(false, 0xffffffffu));
  EXPECT_EQ(probe(m, "lar eax, ecx", 0x58), std::make_pair(true, 0x0000ec00u));
  EXPECT_EQ(probe(m, "lsl eax, ecx", 0x58), std::make_pair(false, 0xffffffffu));
  EXPECT_EQ(probe(m, "lsl eax, ecx", sel::kData), std::make_pair(true, 0xffffffffu));
  EXPECT_EQ(probe(m, "lsl eax, ecx", sel::kTss), std::make_pair(true, 0x67u));
  // At CPL 3: DPL-0 descriptors are invisible, except conforming code.
  EXPECT_EQ(probe(m, "lar eax, ecx", sel::kData, true), std::make_pair(false, 0xffffffffu));
  EXPECT_EQ(probe(m, "lar eax, ecx", sel::kUserData, true).first, true);
  EXPECT_EQ(probe(m, "lar eax, ecx", 0x63, true).first, true);
  EXPECT_EQ(probe(m, "lar eax, ecx", sel::kUserData & ~3, true).first, true);
  // RPL 3 hides DPL-0 descriptors even at CPL 0.
  m.enter_protected32(layout::kCode);
  EXPECT_EQ(probe(m, "lsl eax, ecx", sel::kData | 3).first, false);
}

TEST(Segment, LarAndLslInIa32eModeKnowOnlyItsSystemTypes) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  set_gdt(m, 0x50, gate_desc(sel::kCode32, 0, 0x4, 0));  // 16-bit call gate: gone in IA-32e mode
  set_gdt(m, 0x58, sys_desc(0x5000, 0x2b, 1));            // 16-bit TSS: gone too
  set_gdt(m, 0x60, 0);
  auto run64 = [&](const std::string& insn, uint16_t s) {
    m.load_code(layout::kCode, "mov ecx, " + std::to_string(s) + "\n mov rax, -1\n " + insn + "\n setz dl\n jmp .", 64);
    m.cpu.state.rip = layout::kCode;
    EXPECT_EQ(m.run(4), RunExit::kBudget);
    return std::make_pair(bool(m.reg(cpu::kRdx) & 1), m.reg(cpu::kRax));
  };
  EXPECT_EQ(run64("lar eax, ecx", 0x50).first, false);
  EXPECT_EQ(run64("lsl eax, ecx", 0x58).first, false);
  EXPECT_EQ(run64("lsl rax, rcx", sel::kTss), std::make_pair(true, uint64_t(0x67)));
  EXPECT_EQ(run64("lar rax, rcx", sel::kCode64), std::make_pair(true, uint64_t(0x00a09b00)));
  // A 16-byte descriptor must fit under the limit.
  m.cpu.state.gdtr.limit = sel::kTss + 7;
  EXPECT_EQ(run64("lsl eax, ecx", sel::kTss).first, false);
}

TEST(Segment, VerrAndVerw) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  set_gdt(m, 0x50, seg_desc(0, 0xfffff, kCodeXo, 0));
  set_gdt(m, 0x58, seg_desc(0, 0xfffff, kDataRo, 0));
  EXPECT_TRUE(probe(m, "verr cx", sel::kCode32).first);
  EXPECT_FALSE(probe(m, "verr cx", 0x50).first);
  EXPECT_TRUE(probe(m, "verr cx", 0x58).first);
  EXPECT_FALSE(probe(m, "verw cx", 0x58).first);
  EXPECT_TRUE(probe(m, "verw cx", sel::kData).first);
  EXPECT_FALSE(probe(m, "verw cx", sel::kCode32).first);
  EXPECT_FALSE(probe(m, "verr cx", sel::kTss).first);
  EXPECT_FALSE(probe(m, "verw cx", sel::kData, true).first);
  EXPECT_TRUE(probe(m, "verw cx", sel::kUserData, true).first);
}

TEST(Segment, DescriptorInstructionsAreUndefinedInRealMode) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.load_code(0x10000, "lar ax, cx\n hlt", 16);
  expect_fault(m, Vector::kUD, 0);
}

TEST(Segment, ArplRaisesTheRpl) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.poke<uint16_t>(0x9000, 0x11);
  m.load_code(layout::kCode, R"(
    mov eax, 0x10
    mov ecx, 3
    arpl ax, cx
    setz bl
    arpl ax, cx
    setz bh
    arpl [0x9000], cx
    setz dl
    hlt
  )", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x13u);
  EXPECT_EQ(m.reg(cpu::kRbx) & 0xffff, 0x0001u);  // adjusted once, then not
  EXPECT_EQ(m.reg(cpu::kRdx) & 0xff, 1u);
  EXPECT_EQ(m.peek<uint16_t>(0x9000), 0x13u);
}

// ---- LLDT, LTR, SLDT, STR -----------------------------------------------------------------

TEST(Segment, LtrLoadsTrAndMarksTheTssBusy) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, "mov ax, 0x40\n ltr ax\n str ebx\n ltr ax\n hlt", 32);
  expect_fault(m, Vector::kGP, sel::kTss);  // the second LTR: already busy
  EXPECT_EQ(m.cpu.state.tr.selector, sel::kTss);
  EXPECT_EQ(m.cpu.state.tr.base, layout::kTss);
  EXPECT_EQ(m.cpu.state.tr.limit, 0x67u);
  EXPECT_EQ(m.cpu.state.tr.ar & 0xf, arch::sys_type::kTss32Busy);
  EXPECT_EQ((gdt(m, sel::kTss) >> 40) & 0xf, arch::sys_type::kTss32Busy);
  EXPECT_EQ(m.reg(cpu::kRbx), sel::kTss);
}

// Runs `code` (32-bit, CPL 0 or 3) on a fresh machine after `setup` and expects a fault.
template <typename Setup>
void expect_fault32(const std::string& code, Vector v, uint32_t error, Setup setup, bool user = false) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  setup(m);
  m.load_code(layout::kCode, code, 32);
  if (user) enter_user(m, sel::kUserCode32, layout::kCode, 0x60000);
  expect_fault(m, v, error);
}
void no_setup(TestMachine&) {}

TEST(Segment, LtrChecks) {
  expect_fault32("xor eax, eax\n ltr ax", Vector::kGP, 0, no_setup);
  expect_fault32("mov eax, 0x10\n ltr ax", Vector::kGP, sel::kData, no_setup);
  expect_fault32("mov eax, 0x50\n ltr ax", Vector::kNP, 0x50,
                 [](TestMachine& m) { set_gdt(m, 0x50, sys_desc(uint32_t(layout::kTss), 0x67, 9, 0, false)); });
  expect_fault32("mov eax, 0x40\n ltr ax", Vector::kGP, 0, no_setup, true);
}

TEST(Segment, LtrIn64BitModeReadsSixteenByteDescriptors) {
  {
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.poke<uint64_t>(layout::kGdt + sel::kTss + 8, 0x12);  // base[63:32]
    m.load_code(layout::kCode, "mov eax, 0x40\n ltr ax\n hlt", 64);
    ASSERT_EQ(m.run(), RunExit::kHalted);
    EXPECT_EQ(m.cpu.state.tr.base, (0x12ull << 32) | layout::kTss);
  }
  {
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.poke<uint64_t>(layout::kGdt + sel::kTss + 8, 0x8000);  // base 0x00008000_xxxxxxxx: not canonical
    m.load_code(layout::kCode, "mov eax, 0x40\n ltr ax\n hlt", 64);
    expect_fault(m, Vector::kGP, sel::kTss);
    EXPECT_EQ((gdt(m, sel::kTss) >> 40) & 0xf, arch::sys_type::kTss32Avail);  // not marked busy
  }
  {
    TestMachine m;
    m.enter_long64(layout::kCode);
    set_gdt(m, 0x50, sys_desc(0x5000, 0x2b, arch::sys_type::kTss16Avail));
    set_gdt(m, 0x58, 0);
    m.load_code(layout::kCode, "mov eax, 0x50\n ltr ax\n hlt", 64);
    expect_fault(m, Vector::kGP, 0x50);
  }
}

TEST(Segment, LldtAndLocalDescriptors) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  set_gdt(m, 0x50, sys_desc(0x5000, 0x17, arch::sys_type::kLdt));
  m.poke<uint64_t>(0x5008, seg_desc(uint32_t(layout::kData), 0xffff, kData, 0));  // LDT entry 1
  m.poke<uint32_t>(layout::kData + 4, 0x600d);
  m.load_code(layout::kCode, R"(
    mov eax, 0x50
    lldt ax
    sldt ecx
    mov eax, 0x0c
    mov ds, ax
    mov ebx, [4]
    xor eax, eax
    lldt ax
    mov eax, 0x0c
    mov es, ax
  )", 32);
  expect_fault(m, Vector::kGP, 0x0c);  // TI = 1 with a null LDTR
  EXPECT_EQ(m.reg(cpu::kRbx), 0x600du);
  EXPECT_EQ(m.reg(cpu::kRcx), 0x50u);
  EXPECT_EQ(seg(m, SegReg::kDS).base, layout::kData);
  EXPECT_TRUE(m.cpu.state.ldtr.ar & arch::ar::kUnusable);
  expect_fault32("mov eax, 0x10\n lldt ax", Vector::kGP, 0x10, no_setup);
}

TEST(Segment, UmipForbidsSldtAndStrAboveCpl0) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.cpu.state.cr4 |= arch::cr4::kUMIP;
  m.load_code(layout::kCode, "str eax\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);  // CPL 0: allowed
  auto umip = [](TestMachine& t) { t.cpu.state.cr4 |= arch::cr4::kUMIP; };
  expect_fault32("sldt [0x9000]\n hlt", Vector::kGP, 0, umip, true);
  expect_fault32("str eax\n hlt", Vector::kGP, 0, umip, true);
}

}  // namespace
}  // namespace nestvm::test
