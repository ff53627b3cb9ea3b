// The MSR file (src/cpu/msr_file.cpp) and the MSR/TSC instructions (src/cpu/insn/msr.cpp):
// each architectural MSR's value and #GP rules, the hook mechanism later layers use, RDMSR/WRMSR
// privilege, RDTSC/RDTSCP/RDPID/RDPMC.
#include <gtest/gtest.h>

#include <optional>

#include "arch/msr_index.h"
#include "cpu/msr_file.h"
#include "test_machine.h"

namespace nestvm::test {
namespace {

using arch::Msr;
using cpu::Feature;
using cpu::MsrResult;
using cpu::RunExit;

constexpr uint32_t idx(Msr m) { return arch::msr_index(m); }

struct Rig {
  TestMachine m;
  explicit Rig(cpu::CpuModel model = cpu::CpuModel::max()) : m(64ull << 20, std::move(model)) {
    m.enter_long64(layout::kCode);
  }
  bool wr(uint32_t i, uint64_t v) {
    const bool ok = cpu::write_msr(m.cpu, i, v) == MsrResult::kOk;
    EXPECT_FALSE(m.cpu.has_pending_event());  // the file reports; it never raises
    return ok;
  }
  std::optional<uint64_t> rd(uint32_t i) {
    uint64_t v = 0;
    if (cpu::read_msr(m.cpu, i, v) != MsrResult::kOk) return std::nullopt;
    return v;
  }
  bool wr(Msr i, uint64_t v) { return wr(idx(i), v); }
  std::optional<uint64_t> rd(Msr i) { return rd(idx(i)); }
};

cpu::CpuModel with(Feature f, bool on = true) {
  cpu::CpuModel m = cpu::CpuModel::max();
  m.set(f, on);
  return m;
}

// ---- instructions -------------------------------------------------------------------------------

TEST(Msr, RdmsrWrmsrMoveEdxEax) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov ecx, 0xc0000081
    mov rax, 0xffffffff89abcdef
    mov rdx, 0xffffffff01234567
    wrmsr
    mov rax, -1
    mov rdx, -1
    rdmsr
    hlt
  )", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.cpu.state.msr.star, 0x0123456789abcdefull);  // the upper halves of RAX/RDX are ignored
  EXPECT_EQ(m.reg(cpu::kRax), 0x89abcdefull);              // and zeroed on read
  EXPECT_EQ(m.reg(cpu::kRdx), 0x01234567ull);
}

TEST(Msr, UnknownIndexFaultsGp) {
  for (const char* insn : {"rdmsr", "wrmsr"}) {
    for (uint32_t i : {0x12345678u, 0x802u, 0x480u, 0x251u, 0xc0000104u}) {
      SCOPED_TRACE(std::string(insn) + " " + std::to_string(i));
      TestMachine m;
      m.enter_long64(layout::kCode);
      m.load_code(layout::kCode, std::string(insn) + "\n hlt", 64);
      m.reg(cpu::kRcx) = i;
      m.reg(cpu::kRax) = 0;
      ASSERT_EQ(m.run(), RunExit::kException);
      EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
      EXPECT_EQ(m.cpu.pending_event().error, 0u);
      EXPECT_EQ(m.cpu.state.rip, layout::kCode);
      EXPECT_EQ(m.reg(cpu::kRax), 0u);
    }
  }
}

TEST(Msr, RdmsrAndWrmsrArePrivileged) {
  for (const char* insn : {"rdmsr", "wrmsr"}) {
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, std::string(insn) + "\n ud2", 64);
    m.load_seg(arch::SegReg::kCS, sel::kUserCode64);
    m.load_seg(arch::SegReg::kSS, sel::kUserData);
    m.cpu.refresh_mode();
    m.reg(cpu::kRcx) = idx(Msr::kIA32_STAR);
    ASSERT_EQ(m.run(), RunExit::kException) << insn;
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
    EXPECT_EQ(m.cpu.state.rip, layout::kCode);
  }
}

TEST(Msr, WrmsrFsBaseTakesEffectForTheNextInstruction) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.poke<uint32_t>(0x300010, 0x600dcafe);
  m.load_code(layout::kCode, R"(
    mov ecx, 0xc0000100
    mov eax, 0x300000
    xor edx, edx
    wrmsr
    mov eax, fs:[0x10]
    hlt
  )", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x600dcafeu);
  EXPECT_EQ(m.cpu.state.seg[unsigned(arch::SegReg::kFS)].base, 0x300000u);
}

TEST(Msr, RdtscIsMonotonicAndFollowsTheTscMsr) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    rdtsc
    mov r8d, eax
    mov r9d, edx
    rdtsc
    hlt
  )", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const uint64_t t0 = (m.reg(cpu::kR9) << 32) | m.reg(cpu::kR8);
  const uint64_t t1 = (m.reg(cpu::kRdx) << 32) | m.reg(cpu::kRax);
  EXPECT_GE(t1, t0);
  EXPECT_EQ(m.reg(cpu::kRax) >> 32, 0u);

  // After WRMSR to the TSC, RDTSC counts on from the written value.
  const uint64_t v = 0x100000000000ull;
  ASSERT_EQ(cpu::write_msr(m.cpu, idx(Msr::kIA32_TIME_STAMP_COUNTER), v), MsrResult::kOk);
  m.cpu.state.rip = layout::kCode;
  m.cpu.state.activity = cpu::Activity::kActive;
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const uint64_t t2 = (m.reg(cpu::kRdx) << 32) | m.reg(cpu::kRax);
  EXPECT_GE(t2, v);
  EXPECT_LT(t2, v + (1ull << 40));
}

TEST(Msr, RdtscWithTsdFaultsOnlyAboveCpl0) {
  for (const char* insn : {"rdtsc", "rdtscp"}) {
    for (bool tsd : {false, true}) {
      for (bool user : {false, true}) {
        SCOPED_TRACE(std::string(insn) + (tsd ? " TSD" : "") + (user ? " CPL3" : " CPL0"));
        TestMachine m;
        m.enter_long64(layout::kCode);
        m.load_code(layout::kCode, std::string(insn) + "\n ud2", 64);
        if (tsd) m.cpu.state.cr4 |= arch::cr4::kTSD;
        if (user) {
          m.load_seg(arch::SegReg::kCS, sel::kUserCode64);
          m.load_seg(arch::SegReg::kSS, sel::kUserData);
        }
        m.cpu.refresh_mode();
        ASSERT_EQ(m.run(), RunExit::kException);
        const bool denied = tsd && user;
        EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(denied ? arch::Vector::kGP : arch::Vector::kUD));
      }
    }
  }
}

TEST(Msr, RdtscpAndRdpidReturnTscAux) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, "mov rcx, -1\n rdtscp\n mov rbx, rcx\n rdpid rsi\n hlt", 64);
  m.cpu.state.msr.tsc_aux = 0x8badf00d;
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x8badf00dull);
  EXPECT_EQ(m.reg(cpu::kRsi), 0x8badf00dull);
}

TEST(Msr, RdtscpAndRdpidAreGated) {
  for (const auto& [f, src] : {std::pair{Feature::kRdtscp, "rdtscp"}, std::pair{Feature::kRdpid, "rdpid rax"}}) {
    TestMachine m(64ull << 20, with(f, false));
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, src, 64);
    ASSERT_EQ(m.run(), RunExit::kException) << src;
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kUD));
  }
}

TEST(Msr, RdpmcFaultsForEveryCounter) {
  for (uint32_t counter : {0u, 1u, 0x40000000u}) {
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.cpu.state.cr4 |= arch::cr4::kPCE;
    m.load_code(layout::kCode, "rdpmc\n hlt", 64);
    m.reg(cpu::kRcx) = counter;
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
  }
}

// ---- the architectural file ---------------------------------------------------------------------

TEST(Msr, TimeStampCounterAndTscAdjust) {
  Rig r(with(Feature::kTscAdjust));
  ASSERT_TRUE(r.wr(Msr::kIA32_TIME_STAMP_COUNTER, 1000));
  const uint64_t t = *r.rd(Msr::kIA32_TIME_STAMP_COUNTER);
  EXPECT_GE(t, 1000u);
  EXPECT_LT(t, 1000u + (1ull << 40));
  // SDM §18.17.3: the TSC write moved IA32_TSC_ADJUST by the same amount as the TSC.
  EXPECT_EQ(*r.rd(Msr::kIA32_TSC_ADJUST), r.m.cpu.state.msr.tsc_offset);
  const uint64_t off = r.m.cpu.state.msr.tsc_offset;
  const uint64_t adj = *r.rd(Msr::kIA32_TSC_ADJUST);
  ASSERT_TRUE(r.wr(Msr::kIA32_TSC_ADJUST, adj + 5000));
  EXPECT_EQ(r.m.cpu.state.msr.tsc_offset, off + 5000);
  EXPECT_EQ(*r.rd(Msr::kIA32_TSC_ADJUST), adj + 5000);

  Rig plain;  // the max model has no TSC_ADJUST
  EXPECT_FALSE(plain.rd(Msr::kIA32_TSC_ADJUST));
  EXPECT_FALSE(plain.wr(Msr::kIA32_TSC_ADJUST, 0));
}

TEST(Msr, ApicBaseReservedBitsAndBsp) {
  Rig r;
  const uint64_t reset = *r.rd(Msr::kIA32_APIC_BASE);
  EXPECT_EQ(reset, 0xfee00000ull | arch::apic_base::kEnable | arch::apic_base::kBsp);
  for (uint64_t bad : {uint64_t(1) << 0, uint64_t(1) << 7, uint64_t(1) << 9, uint64_t(1) << 40, uint64_t(1) << 63, arch::apic_base::kExtd})
    EXPECT_FALSE(r.wr(Msr::kIA32_APIC_BASE, 0xfee00000ull | arch::apic_base::kEnable | bad)) << std::hex << bad;
  EXPECT_EQ(*r.rd(Msr::kIA32_APIC_BASE), reset);
  // Moving the base and clearing BSP: the base moves, BSP stays.
  ASSERT_TRUE(r.wr(Msr::kIA32_APIC_BASE, (1ull << 39) | 0xfec00000ull | arch::apic_base::kEnable));
  EXPECT_EQ(*r.rd(Msr::kIA32_APIC_BASE), (1ull << 39) | 0xfec00000ull | arch::apic_base::kEnable | arch::apic_base::kBsp);
  r.m.cpu.state.msr.apic_base = 0xfee00000ull | arch::apic_base::kEnable;  // an AP
  ASSERT_TRUE(r.wr(Msr::kIA32_APIC_BASE, 0xfee00000ull | arch::apic_base::kEnable | arch::apic_base::kBsp));
  EXPECT_FALSE(*r.rd(Msr::kIA32_APIC_BASE) & arch::apic_base::kBsp);
}

TEST(Msr, ApicBaseX2apicTransitions) {
  using namespace arch::apic_base;
  Rig r(with(Feature::kX2apic));
  const uint64_t b = 0xfee00000ull;
  EXPECT_FALSE(r.wr(Msr::kIA32_APIC_BASE, b | kExtd));            // EXTD without EN is invalid
  ASSERT_TRUE(r.wr(Msr::kIA32_APIC_BASE, b | kEnable | kExtd));   // xAPIC -> x2APIC
  EXPECT_FALSE(r.wr(Msr::kIA32_APIC_BASE, b | kEnable));          // x2APIC -> xAPIC
  ASSERT_TRUE(r.wr(Msr::kIA32_APIC_BASE, b));                     // x2APIC -> disabled
  EXPECT_FALSE(r.wr(Msr::kIA32_APIC_BASE, b | kEnable | kExtd));  // disabled -> x2APIC
  ASSERT_TRUE(r.wr(Msr::kIA32_APIC_BASE, b | kEnable));           // disabled -> xAPIC
  EXPECT_EQ(*r.rd(Msr::kIA32_APIC_BASE) & ~kBsp, b | kEnable);
}

TEST(Msr, FeatureControlLocks) {
  using namespace arch::feature_control;
  Rig r;
  EXPECT_EQ(*r.rd(Msr::kIA32_FEATURE_CONTROL), 0u);
  EXPECT_FALSE(r.wr(Msr::kIA32_FEATURE_CONTROL, kVmxOutsideSmx));  // the max model has no VMX
  EXPECT_FALSE(r.wr(Msr::kIA32_FEATURE_CONTROL, 1ull << 20));
  ASSERT_TRUE(r.wr(Msr::kIA32_FEATURE_CONTROL, kLock));
  EXPECT_FALSE(r.wr(Msr::kIA32_FEATURE_CONTROL, 0));  // locked until reset
  EXPECT_EQ(*r.rd(Msr::kIA32_FEATURE_CONTROL), kLock);

  Rig v(with(Feature::kVmx));
  EXPECT_FALSE(v.wr(Msr::kIA32_FEATURE_CONTROL, kVmxInsideSmx));  // no SMX
  ASSERT_TRUE(v.wr(Msr::kIA32_FEATURE_CONTROL, kVmxOutsideSmx | kLock));
  EXPECT_FALSE(v.wr(Msr::kIA32_FEATURE_CONTROL, kVmxOutsideSmx | kLock));
}

TEST(Msr, SignatureAndPlatformId) {
  Rig r;
  ASSERT_TRUE(r.wr(Msr::kIA32_BIOS_SIGN_ID, 0));
  EXPECT_EQ(*r.rd(Msr::kIA32_BIOS_SIGN_ID), 0u);
  EXPECT_EQ(*r.rd(Msr::kIA32_PLATFORM_ID), 0u);
  EXPECT_FALSE(r.wr(Msr::kIA32_PLATFORM_ID, 0));  // read-only
}

TEST(Msr, MtrrCapIsReadOnly) {
  Rig r;
  EXPECT_EQ(*r.rd(Msr::kIA32_MTRRCAP), 8u | (1u << 8) | (1u << 10));
  EXPECT_FALSE(r.wr(Msr::kIA32_MTRRCAP, 0x508));
}

TEST(Msr, VariableMtrrs) {
  Rig r;
  for (uint32_t n = 0; n < 8; ++n) {
    SCOPED_TRACE(n);
    const uint32_t base = 0x200 + 2 * n, mask = base + 1;
    for (uint64_t type : {0, 1, 4, 5, 6}) EXPECT_TRUE(r.wr(base, 0x12345000ull | type));
    for (uint64_t type : {2, 3, 7, 8, 0xff}) EXPECT_FALSE(r.wr(base, 0x12345000ull | type));
    EXPECT_FALSE(r.wr(base, 0x12345000ull | (1u << 8) | 6));  // 11:8 reserved
    EXPECT_FALSE(r.wr(base, (1ull << 40) | 6));               // above MAXPHYADDR
    ASSERT_TRUE(r.wr(base, 0xfffff000ull | 6));
    EXPECT_EQ(*r.rd(base), 0xfffff000ull | 6);
    EXPECT_TRUE(r.wr(mask, 0xff0000000ull | (1u << 11)));
    EXPECT_FALSE(r.wr(mask, 1));
    EXPECT_FALSE(r.wr(mask, 1u << 10));
    EXPECT_FALSE(r.wr(mask, 1ull << 40));
    EXPECT_EQ(*r.rd(mask), 0xff0000000ull | (1u << 11));
  }
  EXPECT_FALSE(r.rd(0x210));
  EXPECT_EQ(r.m.cpu.state.msr.mtrr_var[15], 0xff0000000ull | (1u << 11));  // PHYSMASK7
}

TEST(Msr, FixedRangeMtrrs) {
  Rig r;
  const uint32_t kFixed[] = {0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f};
  for (unsigned k = 0; k < 11; ++k) {
    SCOPED_TRACE(kFixed[k]);
    const uint64_t good = k % 2 ? 0x0600050401000406ull : 0x0506040100060504ull;
    ASSERT_TRUE(r.wr(kFixed[k], good));
    EXPECT_EQ(*r.rd(kFixed[k]), good);
    EXPECT_EQ(r.m.cpu.state.msr.mtrr_fixed[k], good);
    EXPECT_FALSE(r.wr(kFixed[k], (good & ~(0xffull << 56)) | (2ull << 56)));  // one byte holds type 2
    EXPECT_FALSE(r.wr(kFixed[k], 0x0707070707070707ull));                     // UC- is for PAT only
    EXPECT_EQ(*r.rd(kFixed[k]), good);
  }
  for (uint32_t i : {0x251u, 0x257u, 0x25au, 0x267u, 0x270u}) EXPECT_FALSE(r.rd(i)) << std::hex << i;
}

TEST(Msr, MtrrDefType) {
  Rig r;
  EXPECT_TRUE(r.wr(Msr::kIA32_MTRR_DEF_TYPE, 0xc06));
  EXPECT_EQ(*r.rd(Msr::kIA32_MTRR_DEF_TYPE), 0xc06u);
  EXPECT_TRUE(r.wr(Msr::kIA32_MTRR_DEF_TYPE, 0x400));
  for (uint64_t bad : {0x106ull, 0x206ull, 0x1006ull, 1ull << 32, 0x2ull, 0x7ull})
    EXPECT_FALSE(r.wr(Msr::kIA32_MTRR_DEF_TYPE, bad)) << std::hex << bad;
}

TEST(Msr, MtrrsDependOnTheFeature) {
  Rig r(with(Feature::kMtrr, false));
  EXPECT_FALSE(r.rd(Msr::kIA32_MTRRCAP));
  EXPECT_FALSE(r.rd(Msr::kIA32_MTRR_DEF_TYPE));
  EXPECT_FALSE(r.wr(0x200, 6));
}

TEST(Msr, PatEntries) {
  Rig r;
  EXPECT_EQ(*r.rd(Msr::kIA32_PAT), 0x0007040600070406ull);
  ASSERT_TRUE(r.wr(Msr::kIA32_PAT, 0x0706050401000706ull));
  EXPECT_EQ(*r.rd(Msr::kIA32_PAT), 0x0706050401000706ull);
  // One entry at a time holds a reserved type (2, 3) or sets a reserved bit (7:3).
  for (unsigned entry = 0; entry < 8; ++entry) {
    for (uint64_t bad : {0x2ull, 0x3ull, 0x8ull, 0x0full, 0x86ull}) {
      const uint64_t v = (0x0007040600070406ull & ~(0xffull << (8 * entry))) | (bad << (8 * entry));
      EXPECT_FALSE(r.wr(Msr::kIA32_PAT, v)) << std::hex << v;
    }
  }
  EXPECT_EQ(*r.rd(Msr::kIA32_PAT), 0x0706050401000706ull);
}

TEST(Msr, SysenterMsrs) {
  Rig r;
  ASSERT_TRUE(r.wr(Msr::kIA32_SYSENTER_CS, 0x10));
  EXPECT_EQ(*r.rd(Msr::kIA32_SYSENTER_CS), 0x10u);
  for (Msr m : {Msr::kIA32_SYSENTER_ESP, Msr::kIA32_SYSENTER_EIP}) {
    EXPECT_TRUE(r.wr(m, 0xffff800000001000ull));
    EXPECT_EQ(*r.rd(m), 0xffff800000001000ull);
    EXPECT_FALSE(r.wr(m, 0x0000800000000000ull));
    EXPECT_EQ(*r.rd(m), 0xffff800000001000ull);
  }
}

TEST(Msr, MachineCheckGlobalRegisters) {
  Rig r;
  EXPECT_EQ(*r.rd(Msr::kIA32_MCG_CAP), 0u);
  EXPECT_FALSE(r.wr(Msr::kIA32_MCG_CAP, 0));
  EXPECT_TRUE(r.wr(Msr::kIA32_MCG_STATUS, 7));
  EXPECT_EQ(*r.rd(Msr::kIA32_MCG_STATUS), 7u);
  EXPECT_FALSE(r.wr(Msr::kIA32_MCG_STATUS, 8));  // LMCE_S: no LMCE
  EXPECT_FALSE(r.wr(Msr::kIA32_MCG_STATUS, 1ull << 40));
}

TEST(Msr, MiscEnable) {
  using namespace cpu::misc_enable;
  Rig r;
  const uint64_t v = *r.rd(Msr::kIA32_MISC_ENABLE);
  EXPECT_EQ(v & (kFastStrings | kBtsUnavailable | kPebsUnavailable | kPerfMonAvailable),
            kFastStrings | kBtsUnavailable | kPebsUnavailable);
  EXPECT_FALSE(r.wr(Msr::kIA32_MISC_ENABLE, v & ~kBtsUnavailable));
  EXPECT_FALSE(r.wr(Msr::kIA32_MISC_ENABLE, v & ~kPebsUnavailable));
  ASSERT_TRUE(r.wr(Msr::kIA32_MISC_ENABLE, v | kPerfMonAvailable | kLimitCpuidMaxval));
  EXPECT_EQ(*r.rd(Msr::kIA32_MISC_ENABLE), v | kLimitCpuidMaxval);  // PerfMon stays 0
  ASSERT_TRUE(r.wr(Msr::kIA32_MISC_ENABLE, v & ~kFastStrings));
  EXPECT_EQ(*r.rd(Msr::kIA32_MISC_ENABLE), v & ~kFastStrings);
}

TEST(Msr, DebugctlAcceptsOnlyLbrAndBtfAndDropsThem) {
  Rig r;
  for (uint64_t ok : {0ull, 1ull, 2ull, 3ull}) {
    EXPECT_TRUE(r.wr(Msr::kIA32_DEBUGCTL, ok));
    EXPECT_EQ(*r.rd(Msr::kIA32_DEBUGCTL), 0u);
  }
  for (uint64_t bad : {1ull << 2, 1ull << 6, 1ull << 14, 1ull << 32})
    EXPECT_FALSE(r.wr(Msr::kIA32_DEBUGCTL, bad)) << std::hex << bad;
}

TEST(Msr, EferGoesThroughSetEfer) {
  using namespace arch::efer;
  Rig r;
  const uint64_t e = *r.rd(Msr::kIA32_EFER);
  EXPECT_EQ(e, kLME | kLMA | kNXE | kSCE);
  ASSERT_TRUE(r.wr(Msr::kIA32_EFER, kLME | kSCE));  // NXE off; LMA is kept by the processor
  EXPECT_EQ(*r.rd(Msr::kIA32_EFER), kLME | kLMA | kSCE);
  EXPECT_FALSE(r.wr(Msr::kIA32_EFER, kSCE | kNXE));     // LME may not change with paging on
  EXPECT_FALSE(r.wr(Msr::kIA32_EFER, e | (1ull << 1)));  // reserved
  EXPECT_FALSE(r.wr(Msr::kIA32_EFER, e | kSVME));       // no SVM on the model
  EXPECT_EQ(*r.rd(Msr::kIA32_EFER), kLME | kLMA | kSCE);
}

TEST(Msr, SyscallMsrs) {
  Rig r;
  EXPECT_TRUE(r.wr(Msr::kIA32_STAR, ~0ull));
  EXPECT_EQ(*r.rd(Msr::kIA32_STAR), ~0ull);
  for (Msr m : {Msr::kIA32_LSTAR, Msr::kIA32_CSTAR}) {
    EXPECT_TRUE(r.wr(m, 0xffffffff81000000ull));
    EXPECT_EQ(*r.rd(m), 0xffffffff81000000ull);
    EXPECT_FALSE(r.wr(m, 0xfff0000000000000ull));
  }
  EXPECT_TRUE(r.wr(Msr::kIA32_FMASK, 0xffffffffull));
  EXPECT_EQ(*r.rd(Msr::kIA32_FMASK), 0xffffffffull);
  EXPECT_FALSE(r.wr(Msr::kIA32_FMASK, 1ull << 32));
}

TEST(Msr, SegmentBaseMsrs) {
  Rig r;
  ASSERT_TRUE(r.wr(Msr::kIA32_GS_BASE, 0xffff888000000000ull));
  EXPECT_EQ(r.m.cpu.state.seg[unsigned(arch::SegReg::kGS)].base, 0xffff888000000000ull);
  EXPECT_EQ(r.m.cpu.seg_cache(arch::SegReg::kGS).base, 0xffff888000000000ull);
  ASSERT_TRUE(r.wr(Msr::kIA32_KERNEL_GS_BASE, 0x7fff0000ull));
  EXPECT_EQ(*r.rd(Msr::kIA32_KERNEL_GS_BASE), 0x7fff0000ull);
  EXPECT_EQ(*r.rd(Msr::kIA32_GS_BASE), 0xffff888000000000ull);
  for (Msr m : {Msr::kIA32_FS_BASE, Msr::kIA32_GS_BASE, Msr::kIA32_KERNEL_GS_BASE})
    EXPECT_FALSE(r.wr(m, 0x0000800000000000ull));
  EXPECT_EQ(*r.rd(Msr::kIA32_FS_BASE), 0u);
}

TEST(Msr, TscAux) {
  Rig r;
  EXPECT_TRUE(r.wr(Msr::kIA32_TSC_AUX, 0xffffffffull));
  EXPECT_EQ(*r.rd(Msr::kIA32_TSC_AUX), 0xffffffffull);
  EXPECT_FALSE(r.wr(Msr::kIA32_TSC_AUX, 1ull << 32));

  cpu::CpuModel none = cpu::CpuModel::max();
  none.set(Feature::kRdtscp, false);
  none.set(Feature::kRdpid, false);
  Rig n(none);
  EXPECT_FALSE(n.rd(Msr::kIA32_TSC_AUX));
}

TEST(Msr, Xss) {
  Rig r;  // no XSAVES: no IA32_XSS
  EXPECT_FALSE(r.rd(Msr::kIA32_XSS));
  Rig x(with(Feature::kXsaves));
  EXPECT_TRUE(x.wr(Msr::kIA32_XSS, 0));
  EXPECT_FALSE(x.wr(Msr::kIA32_XSS, 1ull << 8));  // no supervisor state component is supported
}

TEST(Msr, FeatureGatesOnTheQemu64Model) {
  Rig r(cpu::CpuModel::qemu64());
  EXPECT_TRUE(r.rd(Msr::kIA32_SYSENTER_CS));
  EXPECT_TRUE(r.rd(Msr::kIA32_PAT));
  EXPECT_FALSE(r.rd(Msr::kIA32_TSC_AUX));  // no RDTSCP/RDPID
  EXPECT_FALSE(r.rd(Msr::kIA32_TSC_ADJUST));
}

// ---- hooks ----------------------------------------------------------------------------------------

// An x2APIC-like range handler: answers 0x802 (the APIC ID), passes the rest on.
class FakeX2apic : public cpu::MsrHandler {
 public:
  MsrResult read(cpu::Cpu&, uint32_t index, uint64_t& v) override {
    if (index != 0x802) return MsrResult::kUnhandled;
    v = 7;
    return MsrResult::kOk;
  }
  MsrResult write(cpu::Cpu&, uint32_t index, uint64_t v) override {
    if (index == 0x802) return MsrResult::kGp;  // read-only
    if (index != 0x808) return MsrResult::kUnhandled;
    tpr = v;
    return MsrResult::kOk;
  }
  uint64_t tpr = 0;
};

// Wraps an architectural MSR: applies the architectural rules, then observes the result.
class ApicBaseObserver : public cpu::MsrHandler {
 public:
  MsrResult read(cpu::Cpu& c, uint32_t index, uint64_t& v) override { return cpu::arch_read_msr(c, index, v); }
  MsrResult write(cpu::Cpu& c, uint32_t index, uint64_t v) override {
    const MsrResult r = cpu::arch_write_msr(c, index, v);
    if (r == MsrResult::kOk) ++moves;
    return r;
  }
  int moves = 0;
};

TEST(Msr, HooksAreConsultedBeforeTheArchitecturalFile) {
  Rig r;
  FakeX2apic x2apic;
  ApicBaseObserver observer;
  ASSERT_TRUE(r.m.cpu.msr_hooks.add(0x800, 0x8ff, &x2apic));
  ASSERT_TRUE(r.m.cpu.msr_hooks.add(idx(Msr::kIA32_APIC_BASE), idx(Msr::kIA32_APIC_BASE), &observer));
  EXPECT_EQ(*r.rd(0x802), 7u);
  EXPECT_FALSE(r.wr(0x802, 1));
  EXPECT_TRUE(r.wr(0x808, 0x20));
  EXPECT_EQ(x2apic.tpr, 0x20u);
  EXPECT_FALSE(r.rd(0x803));  // passed on, and unknown to the architectural file
  EXPECT_TRUE(r.wr(Msr::kIA32_APIC_BASE, 0xfed00000ull | arch::apic_base::kEnable));
  EXPECT_FALSE(r.wr(Msr::kIA32_APIC_BASE, 1));  // the architectural rules still apply
  EXPECT_EQ(observer.moves, 1);

  // RDMSR goes through the hooks too.
  r.m.load_code(layout::kCode, "rdmsr\n hlt", 64);
  r.m.reg(cpu::kRcx) = 0x802;
  ASSERT_EQ(r.m.run(), RunExit::kHalted);
  EXPECT_EQ(r.m.reg(cpu::kRax), 7u);

  r.m.cpu.msr_hooks.remove(&x2apic);
  EXPECT_EQ(r.m.cpu.msr_hooks.size(), 1u);
  EXPECT_FALSE(r.rd(0x802));
}

TEST(Msr, HookTableIsBounded) {
  Rig r;
  FakeX2apic h;
  for (unsigned k = 0; k < cpu::MsrHooks::kMaxRanges; ++k) EXPECT_TRUE(r.m.cpu.msr_hooks.add(k, k, &h));
  EXPECT_FALSE(r.m.cpu.msr_hooks.add(0x900, 0x900, &h));
  EXPECT_FALSE(Rig().m.cpu.msr_hooks.add(5, 4, &h));  // empty range
}

}  // namespace
}  // namespace nestvm::test
