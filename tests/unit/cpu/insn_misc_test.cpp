// Miscellaneous instructions (src/cpu/insn/misc.cpp): CPUID and its state-dependent bits,
// RDRAND/RDSEED, fences, CLFLUSH/CLFLUSHOPT, PAUSE, prefetches, UD0/UD1/UD2, feature gating.
#include <gtest/gtest.h>

#include "arch/msr_index.h"
#include "cpu/msr_file.h"
#include "test_machine.h"

namespace nestvm::test {
namespace {

using cpu::Feature;
using cpu::RunExit;
namespace rf = arch::rflags;

struct Cpuid {
  uint32_t eax, ebx, ecx, edx;
};

// Executes CPUID(leaf, subleaf) in 64-bit mode and returns the registers.
struct CpuidRig {
  TestMachine m;
  explicit CpuidRig(cpu::CpuModel model = cpu::CpuModel::max()) : m(64ull << 20, std::move(model)) {
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, "cpuid\n hlt", 64);
  }
  Cpuid operator()(uint32_t leaf, uint32_t subleaf = 0) {
    m.cpu.state.rip = layout::kCode;
    m.cpu.state.activity = cpu::Activity::kActive;
    // Upper halves set: CPUID must zero-extend every result.
    m.reg(cpu::kRax) = 0xdead000000000000ull | leaf;
    m.reg(cpu::kRcx) = 0xdead000000000000ull | subleaf;
    m.reg(cpu::kRbx) = m.reg(cpu::kRdx) = ~0ull;
    EXPECT_EQ(m.run(), RunExit::kHalted);
    for (cpu::Gpr r : {cpu::kRax, cpu::kRbx, cpu::kRcx, cpu::kRdx}) EXPECT_EQ(m.reg(r) >> 32, 0u);
    return {uint32_t(m.reg(cpu::kRax)), uint32_t(m.reg(cpu::kRbx)), uint32_t(m.reg(cpu::kRcx)),
            uint32_t(m.reg(cpu::kRdx))};
  }
};

TEST(InsnMisc, CpuidReportsTheModel) {
  CpuidRig c;
  const Cpuid v = c(0);
  const cpu::CpuidResult want = c.m.model.cpuid(0, 0);
  EXPECT_EQ(v.eax, want.eax);
  EXPECT_EQ(v.ebx, 0x756e6547u);  // "Genu"
  EXPECT_EQ(v.edx, 0x49656e69u);  // "ineI"
  EXPECT_EQ(v.ecx, 0x6c65746eu);  // "ntel"
  const Cpuid ext = c(0x80000008);
  EXPECT_EQ(ext.eax & 0xff, 40u);  // MAXPHYADDR
}

TEST(InsnMisc, CpuidApicIdAndApicEnable) {
  CpuidRig c;
  c.m.cpu.apic_id = 0x2a;
  Cpuid v = c(1);
  EXPECT_EQ(v.ebx >> 24, 0x2au);
  EXPECT_EQ(v.ebx & 0xffffff, c.m.model.cpuid(1, 0).ebx & 0xffffff);
  EXPECT_TRUE(v.edx & (1u << 9));  // APIC: IA32_APIC_BASE.EN is 1 after reset
  c.m.cpu.state.msr.apic_base &= ~arch::apic_base::kEnable;
  v = c(1);
  EXPECT_FALSE(v.edx & (1u << 9));
  EXPECT_EQ(v.edx | (1u << 9), c.m.model.cpuid(1, 0).edx);
}

TEST(InsnMisc, CpuidOsxsaveFollowsCr4) {
  CpuidRig c;
  EXPECT_FALSE(c(1).ecx & (1u << 27));
  c.m.cpu.state.cr4 |= arch::cr4::kOSXSAVE;
  EXPECT_TRUE(c(1).ecx & (1u << 27));
}

TEST(InsnMisc, CpuidOspkeFollowsCr4) {
  cpu::CpuModel model = cpu::CpuModel::max();
  model.set(Feature::kPku, true);
  CpuidRig c(model);
  EXPECT_FALSE(c(7, 0).ecx & (1u << 4));
  EXPECT_TRUE(c(7, 0).ecx & (1u << 3));  // PKU itself is static
  c.m.cpu.state.cr4 |= arch::cr4::kPKE;
  EXPECT_TRUE(c(7, 0).ecx & (1u << 4));
}

TEST(InsnMisc, CpuidXsaveSizeFollowsXcr0) {
  cpu::CpuModel model = cpu::CpuModel::max();
  model.set_leaf({0xd, 2, true, 256, 576, 0, 0});  // an AVX component: 256 bytes at offset 576
  CpuidRig c(model);
  c.m.cpu.state.xcr0 = 3;
  EXPECT_EQ(c(0xd, 0).ebx, 576u);
  EXPECT_EQ(c(0xd, 0).ecx, 576u);  // ECX: the maximum for every supported component (static)
  c.m.cpu.state.xcr0 = 1;
  EXPECT_EQ(c(0xd, 0).ebx, 576u);
  c.m.cpu.state.xcr0 = 7;
  EXPECT_EQ(c(0xd, 0).ebx, 832u);
}

TEST(InsnMisc, CpuidLeafAboveMaximumReturnsTheHighestBasicLeaf) {
  CpuidRig c;
  const uint32_t max = c.m.model.cpuid(0, 0).eax;
  const Cpuid hi = c(max, 0);
  const Cpuid over = c(max + 5, 0);
  EXPECT_EQ(over.eax, hi.eax);
  EXPECT_EQ(over.ebx, hi.ebx);
}

TEST(InsnMisc, CpuidMaxvalLimitFromMiscEnable) {
  CpuidRig c;
  c.m.cpu.state.msr.misc_enable |= cpu::misc_enable::kLimitCpuidMaxval;
  EXPECT_EQ(c(0).eax, 2u);
  c.m.cpu.state.msr.misc_enable &= ~cpu::misc_enable::kLimitCpuidMaxval;
  EXPECT_EQ(c(0).eax, c.m.model.cpuid(0, 0).eax);
}

TEST(InsnMisc, Cpuid1LoadsTheMicrocodeSignature) {
  CpuidRig c;
  c.m.cpu.state.msr.bios_sign_id = 0;
  c(1);
  EXPECT_EQ(c.m.cpu.state.msr.bios_sign_id, uint64_t(cpu::kMicrocodeRevision) << 32);
}

// ---- RDRAND / RDSEED ----------------------------------------------------------------------------

TEST(InsnMisc, RdrandAndRdseedSetCfAndClearTheOtherFlags) {
  for (const char* insn : {"rdrand", "rdseed"}) {
    SCOPED_TRACE(insn);
    TestMachine m;
    m.enter_long64(layout::kCode);
    const std::string i = insn;
    m.load_code(layout::kCode, "mov rax, -1\n cmp rax, 1\n" + i + " ax\n" + i + " rbx\n" + i + " ecx\n" + i +
                                   " rdx\n hlt", 64);
    m.reg(cpu::kRcx) = ~0ull;
    ASSERT_EQ(m.run(), RunExit::kHalted);
    const uint64_t f = m.cpu.rflags();
    EXPECT_EQ(f & rf::kArith, rf::kCF);
    EXPECT_EQ(m.reg(cpu::kRax) >> 16, 0xffffffffffffull);  // a 16-bit destination merges
    EXPECT_EQ(m.reg(cpu::kRcx) >> 32, 0u);                 // a 32-bit one zero-extends
    // Two 64-bit draws agree with probability 2^-64.
    EXPECT_NE(m.reg(cpu::kRbx), m.reg(cpu::kRdx));
  }
}

TEST(InsnMisc, RdrandAndRdseedAreGatedByTheModel) {
  cpu::CpuModel model = cpu::CpuModel::max();
  model.set(Feature::kRdrand, false);
  model.set(Feature::kRdseed, false);
  for (const char* src : {"rdrand eax", "rdseed eax"}) {
    TestMachine m(64ull << 20, model);
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, src, 64);
    ASSERT_EQ(m.run(), RunExit::kException) << src;
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kUD));
  }
}

// ---- fences, CLFLUSH, hints, UD ------------------------------------------------------------------

TEST(InsnMisc, FencesPauseAndPrefetchesExecute) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov rax, 0x0000800000000000
    lfence
    sfence
    mfence
    pause
    prefetcht0 [rax]
    prefetcht1 [rax + 64]
    prefetcht2 [rip]
    prefetchnta [rax]
    prefetchw [rax]
    prefetch [rax]
    mov ebx, 7
    hlt
  )", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);  // a prefetch of a non-canonical address does not fault
  EXPECT_EQ(m.reg(cpu::kRbx), 7u);
}

TEST(InsnMisc, FeatureGatedFormsAreUndefinedWithoutTheFeature) {
  const struct { Feature f; const char* src; } kCases[] = {
      {Feature::kSse2, "lfence"},       {Feature::kSse2, "mfence"},      {Feature::kSse, "sfence"},
      {Feature::kClflush, "clflush [rax]"}, {Feature::kClflushopt, "clflushopt [rax]"},
      {Feature::kPrefetchw, "prefetchw [rax]"}, {Feature::kSse, "prefetcht0 [rax]"},
  };
  for (const auto& k : kCases) {
    SCOPED_TRACE(k.src);
    cpu::CpuModel model = cpu::CpuModel::max();
    model.set(k.f, false);
    TestMachine m(64ull << 20, model);
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, std::string("mov eax, 0x200000\n") + k.src + "\n hlt", 64);
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kUD));
    EXPECT_EQ(m.cpu.state.rip, layout::kCode + 5);
  }
}

TEST(InsnMisc, ClflushChecksTheOperandLikeAByteRead) {
  for (const char* insn : {"clflush", "clflushopt"}) {
    SCOPED_TRACE(insn);
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, std::string(insn) + " [rax]\n hlt", 64);
    m.reg(cpu::kRax) = layout::kData + 0x123;
    ASSERT_EQ(m.run(), RunExit::kHalted);

    m.cpu.state.rip = layout::kCode;
    m.cpu.state.activity = cpu::Activity::kActive;
    m.reg(cpu::kRax) = 0x0000800000000000ull;
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));

    // Beyond the 4 GiB identity map: not present.
    m.cpu.clear_pending_event();
    m.reg(cpu::kRax) = 0x100000000ull + 0x40;
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kPF));
    EXPECT_EQ(m.cpu.pending_event().error, 0u);  // a read, not a write
    EXPECT_EQ(m.cpu.state.rip, layout::kCode);
  }
}

TEST(InsnMisc, ClflushThroughSsIsAStackFault) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, "clflush [rsp]\n hlt", 64);
  m.reg(cpu::kRsp) = 0x0000900000000000ull;
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kSS));
}

TEST(InsnMisc, ClflushRespectsUserPagePermissions) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  // Make the 2 MiB page at 0x400000 supervisor-only, then flush it from CPL 3.
  m.poke<uint64_t>(layout::kPml4 + 0x2000 + 2 * 8, 0x400000 | 0x83);
  m.load_code(layout::kCode, "clflush [rax]\n ud2", 64);
  m.load_seg(arch::SegReg::kCS, sel::kUserCode64);
  m.load_seg(arch::SegReg::kSS, sel::kUserData);
  m.cpu.refresh_mode();
  m.reg(cpu::kRax) = 0x400000;
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kPF));
  EXPECT_EQ(m.cpu.pending_event().error, uint32_t(arch::pfec::kPresent | arch::pfec::kUser));
}

TEST(InsnMisc, UdInstructionsRaiseInvalidOpcode) {
  for (const char* src : {"ud2", "ud1 eax, [rax]", "ud0 eax, [rax]"}) {
    SCOPED_TRACE(src);
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, std::string("nop\n") + src + "\n hlt", 64);
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kUD));
    EXPECT_EQ(m.cpu.state.rip, layout::kCode + 1);
  }
}

}  // namespace
}  // namespace nestvm::test
