// Page walks of every paging format: translations, page sizes, #PF error codes for each cause
// (SDM Vol. 3 §4.7), accessed/dirty updates (§4.8), NX, WP, U/S, SMEP, SMAP.
#include <gtest/gtest.h>

#include "arch/paging.h"
#include "test_machine.h"

namespace nestvm::test {
namespace {

using arch::SegReg;
using cpu::RunExit;
namespace pte = arch::pte;
namespace pfec = arch::pfec;

// A 4 KiB page table for the 2 MiB region at linear 0x40000000 (1 GiB), wired into the identity
// map that enter_long64 builds (PML4[0] -> PDPT[1] -> PD at kPml4 + 0x3000, entry 0).
constexpr uint64_t kRegion = 0x40000000;
constexpr uint64_t kPt = 0x30000;
constexpr uint64_t kPd1 = layout::kPml4 + 0x3000;

class Paging64 : public ::testing::Test {
 protected:
  void SetUp() override {
    m.enter_long64(layout::kCode);
    m.poke<uint64_t>(kPd1, kPt | pte::kP | pte::kRW | pte::kUS);
  }
  // Maps linear kRegion + n*4K to physical `pa` with `flags`.
  void map(unsigned n, uint64_t pa, uint64_t flags) { m.poke<uint64_t>(kPt + 8 * n, pa | flags); }
  uint64_t entry(unsigned n) { return m.peek<uint64_t>(kPt + 8 * n); }
  // Runs `code` at CPL 0 (or 3) and returns how it stopped.
  RunExit run(const std::string& code, bool user = false) {
    m.cpu.clear_pending_event();
    m.cpu.state.activity = cpu::Activity::kActive;
    m.cpu.state.rip = layout::kCode;
    m.load_code(layout::kCode, code + "\nhlt\n", 64);
    if (user) {
      m.load_seg(SegReg::kCS, sel::kUserCode64);
      m.load_seg(SegReg::kSS, sel::kUserData);
    }
    m.cpu.flush_tlb_all();
    m.cpu.refresh_mode();
    return m.run(100000);
  }
  void expect_pf(uint64_t la, uint32_t error) {
    ASSERT_TRUE(m.cpu.has_pending_event());
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kPF));
    EXPECT_EQ(m.cpu.pending_event().error, error);
    EXPECT_EQ(m.cpu.pending_fault_address(), la);
  }
  TestMachine m;
};

TEST_F(Paging64, TranslatesThroughA4KPageTable) {
  map(3, 0x500000, pte::kP | pte::kRW);
  m.poke<uint64_t>(0x500010, 0x1122334455667788ull);
  ASSERT_EQ(run("mov rax, [0x40003010]"), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x1122334455667788ull);
}

TEST_F(Paging64, NotPresentReadAndWrite) {
  EXPECT_EQ(run("mov rax, [0x40005008]"), RunExit::kException);
  expect_pf(kRegion + 0x5008, 0);
  EXPECT_EQ(m.cpu.state.rip, layout::kCode);
  EXPECT_EQ(run("mov qword ptr [0x40005008], 1"), RunExit::kException);
  expect_pf(kRegion + 0x5008, pfec::kWrite);
}

TEST_F(Paging64, WriteProtectAtCpl0FollowsCr0Wp) {
  map(1, 0x501000, pte::kP);
  EXPECT_EQ(run("mov qword ptr [0x40001000], 7"), RunExit::kException);
  expect_pf(kRegion + 0x1000, pfec::kPresent | pfec::kWrite);
  m.cpu.state.cr0 &= ~arch::cr0::kWP;  // supervisor writes ignore R/W (SDM §4.6)
  ASSERT_EQ(run("mov qword ptr [0x40001000], 7"), RunExit::kHalted);
  EXPECT_EQ(m.peek<uint64_t>(0x501000), 7u);
}

TEST_F(Paging64, UserAccessToSupervisorPage) {
  map(2, 0x502000, pte::kP | pte::kRW);  // U/S = 0 in the PTE
  EXPECT_EQ(run("mov rax, [0x40002000]", true), RunExit::kException);
  expect_pf(kRegion + 0x2000, pfec::kPresent | pfec::kUser);
  EXPECT_EQ(run("mov [0x40002000], rax", true), RunExit::kException);
  expect_pf(kRegion + 0x2000, pfec::kPresent | pfec::kUser | pfec::kWrite);
}

TEST_F(Paging64, UserWriteToReadOnlyUserPage) {
  map(2, 0x502000, pte::kP | pte::kUS);
  // At CPL 3 the closing HLT is #GP(0): reaching it means the read succeeded.
  ASSERT_EQ(run("mov rax, [0x40002000]", true), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 8);
  EXPECT_EQ(run("mov [0x40002000], rax", true), RunExit::kException);
  expect_pf(kRegion + 0x2000, pfec::kPresent | pfec::kUser | pfec::kWrite);
}

TEST_F(Paging64, ReservedBitsAreReportedWithRsvd) {
  map(4, 0x504000 | (1ull << 45), pte::kP | pte::kRW);  // above MAXPHYADDR (40)
  EXPECT_EQ(run("mov rax, [0x40004000]"), RunExit::kException);
  expect_pf(kRegion + 0x4000, pfec::kPresent | pfec::kReserved);
}

TEST_F(Paging64, ExecuteDisableFaultsOnFetchWithIdBit) {
  map(6, 0x506000, pte::kP | pte::kRW | pte::kXD);
  m.poke<uint8_t>(0x506000, 0xc3);  // ret
  EXPECT_EQ(run("mov rax, 0x40006000\ncall rax"), RunExit::kException);
  expect_pf(kRegion + 0x6000, pfec::kPresent | pfec::kFetch);
  EXPECT_EQ(m.cpu.state.rip, kRegion + 0x6000);
}

TEST_F(Paging64, XdIsReservedWithoutEferNxe) {
  map(6, 0x506000, pte::kP | pte::kRW | pte::kXD);
  m.cpu.state.msr.efer &= ~arch::efer::kNXE;
  EXPECT_EQ(run("mov rax, [0x40006000]"), RunExit::kException);
  expect_pf(kRegion + 0x6000, pfec::kPresent | pfec::kReserved);
}

TEST_F(Paging64, SmepBlocksSupervisorFetchFromUserPages) {
  map(7, 0x507000, pte::kP | pte::kRW | pte::kUS);
  m.poke<uint8_t>(0x507000, 0xc3);
  // The code's own 2 MiB page must be a supervisor page for SMEP to let it run.
  m.poke<uint64_t>(layout::kPml4 + 0x2000, 0x0 | pte::kP | pte::kRW | pte::kPS);
  m.cpu.state.cr4 |= arch::cr4::kSMEP;
  EXPECT_EQ(run("mov rax, 0x40007000\ncall rax"), RunExit::kException);
  expect_pf(kRegion + 0x7000, pfec::kPresent | pfec::kFetch);
}

TEST_F(Paging64, SmapBlocksSupervisorDataAccessUnlessAc) {
  map(8, 0x508000, pte::kP | pte::kRW | pte::kUS);
  m.cpu.state.cr4 |= arch::cr4::kSMAP;
  EXPECT_EQ(run("mov rax, [0x40008000]"), RunExit::kException);
  expect_pf(kRegion + 0x8000, pfec::kPresent);
  m.cpu.clear_pending_event();
  m.cpu.set_rflags(m.cpu.rflags() | arch::rflags::kAC);
  ASSERT_EQ(run("mov qword ptr [0x40008000], 9"), RunExit::kHalted);
  EXPECT_EQ(m.peek<uint64_t>(0x508000), 9u);
}

TEST_F(Paging64, SetsAccessedOnReadAndDirtyOnWrite) {
  map(9, 0x509000, pte::kP | pte::kRW);
  ASSERT_EQ(run("mov rax, [0x40009000]"), RunExit::kHalted);
  EXPECT_TRUE(entry(9) & pte::kA);
  EXPECT_FALSE(entry(9) & pte::kD);
  EXPECT_TRUE(m.peek<uint64_t>(kPd1) & pte::kA);
  ASSERT_EQ(run("mov rax, [0x40009000]\nmov [0x40009008], rax"), RunExit::kHalted);
  EXPECT_TRUE(entry(9) & pte::kD);
  EXPECT_FALSE(m.peek<uint64_t>(kPd1) & pte::kD);  // D exists only in the leaf
}

TEST_F(Paging64, FaultingAccessSetsNoAccessedBits) {
  map(10, 0x50a000, pte::kP);  // read-only
  m.poke<uint64_t>(kPd1, kPt | pte::kP | pte::kRW | pte::kUS);
  EXPECT_EQ(run("mov qword ptr [0x4000a000], 1"), RunExit::kException);
  EXPECT_FALSE(entry(10) & pte::kA);
}

TEST_F(Paging64, TwoMegabyteAndOneGigabytePages) {
  // PD1 entry 5: a 2 MiB page at physical 0x600000.
  m.poke<uint64_t>(kPd1 + 8 * 5, 0x600000 | pte::kP | pte::kRW | pte::kPS);
  m.poke<uint64_t>(0x600000 + 0x12345, 0xabcdull);
  ASSERT_EQ(run("mov eax, [0x40a12345]"), RunExit::kHalted);  // 0x40000000 + 5*2M + 0x12345
  EXPECT_EQ(m.reg(cpu::kRax), 0xabcdu);
  // PDPT entry 5 (linear 5 GiB): a 1 GiB page at physical 0.
  m.poke<uint64_t>(layout::kPml4 + 0x1000 + 8 * 5, 0 | pte::kP | pte::kRW | pte::kPS);
  m.poke<uint32_t>(0x345678, 0xfeedu);
  ASSERT_EQ(run("mov rbx, 0x140345678\nmov eax, [rbx]"), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0xfeedu);
}

TEST(Paging64NoGbPages, OneGigabytePageIsReservedWithoutPdpe1gb) {
  cpu::CpuModel model = cpu::CpuModel::max();
  model.set(cpu::Feature::kPdpe1gb, false);
  TestMachine m(64ull << 20, model);
  m.enter_long64(layout::kCode);
  m.poke<uint64_t>(layout::kPml4 + 0x1000 + 8 * 5, pte::kP | pte::kRW | pte::kPS);
  m.load_code(layout::kCode, "mov rbx, 0x140000000\nmov eax, [rbx]\nhlt", 64);
  EXPECT_EQ(m.run(1000), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().error, pfec::kPresent | pfec::kReserved);
}

TEST_F(Paging64, LargePageReservedBits) {
  m.poke<uint64_t>(kPd1 + 8 * 6, 0x600000 | (1ull << 13) | pte::kP | pte::kRW | pte::kPS);  // bit 13 reserved
  EXPECT_EQ(run("mov eax, [0x40c00000]"), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().error, pfec::kPresent | pfec::kReserved);
}

// 32-bit paging (CR4.PAE = 0), 4 KiB and 4 MiB pages.
TEST(Paging32, FourKilobyteAndFourMegabytePages) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  const uint64_t pd = 0x40000, pt = 0x41000;
  // PDE 0: identity 4 MiB page (code, stack, tables), PDE 1: page table for 4-8 MiB.
  m.poke<uint32_t>(pd, 0x0 | 0x83);
  m.poke<uint32_t>(pd + 4, pt | 0x3);
  m.poke<uint32_t>(pt + 4 * 2, 0x700000 | 0x3);  // linear 0x402000 -> 0x700000
  // PDE 3: 4 MiB page at physical 0x800000 mapped at linear 0xc00000 with PSE-36 bits 0.
  m.poke<uint32_t>(pd + 4 * 3, 0x800000 | 0x83);
  m.poke<uint32_t>(0x700044, 0x11111111u);
  m.poke<uint32_t>(0x812344, 0x22222222u);
  m.cpu.state.cr3 = pd;
  m.cpu.state.cr4 = arch::cr4::kPSE;
  m.cpu.state.cr0 |= arch::cr0::kPG;
  m.cpu.refresh_mode();
  m.load_code(layout::kCode, "mov eax, [0x402044]\nmov ebx, [0xc12344]\nhlt", 32);
  ASSERT_EQ(m.run(1000), RunExit::kHalted);
  EXPECT_EQ(uint32_t(m.reg(cpu::kRax)), 0x11111111u);
  EXPECT_EQ(uint32_t(m.reg(cpu::kRbx)), 0x22222222u);
  EXPECT_TRUE(m.peek<uint32_t>(pt + 8) & pte::kA);
}

TEST(Paging32, PsBitIsIgnoredWithoutCr4Pse) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  const uint64_t pd = 0x40000, pt = 0x41000;
  m.poke<uint32_t>(pd, pt | 0x83);  // PS set, but CR4.PSE = 0: points to a page table
  for (uint32_t i = 0; i < 1024; ++i) m.poke<uint32_t>(pt + 4 * i, (i << 12) | 0x3);
  m.cpu.state.cr3 = pd;
  m.cpu.state.cr4 = 0;
  m.cpu.state.cr0 |= arch::cr0::kPG;
  m.cpu.refresh_mode();
  m.poke<uint32_t>(0x5000, 0x33333333u);
  m.load_code(layout::kCode, "mov eax, [0x5000]\nhlt", 32);
  ASSERT_EQ(m.run(1000), RunExit::kHalted);
  EXPECT_EQ(uint32_t(m.reg(cpu::kRax)), 0x33333333u);
}

// PAE paging: PDPTEs are loaded with CR3 and checked there.
TEST(PagingPae, PdptesLoadWithCr3AndTranslate2MPages) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  const uint64_t pdpt = 0x40000, pd = 0x41000;
  m.poke<uint64_t>(pdpt, pd | pte::kP);
  m.poke<uint64_t>(pd, 0x0 | pte::kP | pte::kRW | pte::kPS);            // 0-2 MiB identity
  m.poke<uint64_t>(pd + 8, 0xa00000 | pte::kP | pte::kRW | pte::kPS);    // 2-4 MiB -> 10 MiB
  m.poke<uint32_t>(0xa00040, 0x44444444u);
  m.cpu.state.cr4 = arch::cr4::kPAE;
  ASSERT_EQ(m.cpu.set_cr3(pdpt), cpu::Status::kNext);
  m.cpu.state.cr0 |= arch::cr0::kPG;
  ASSERT_TRUE(m.cpu.load_pdptes(pdpt));
  m.cpu.refresh_mode();
  EXPECT_EQ(m.cpu.paging_mode(), cpu::PagingMode::kPae);
  m.load_code(layout::kCode, "mov eax, [0x200040]\nhlt", 32);
  ASSERT_EQ(m.run(1000), RunExit::kHalted) << int(m.cpu.pending_event().vector) << " " << m.cpu.pending_event().error
                                           << " at " << std::hex << m.cpu.state.rip;
  EXPECT_EQ(uint32_t(m.reg(cpu::kRax)), 0x44444444u);
  // A present PDPTE with a reserved bit makes MOV CR3 fail with #GP(0).
  m.poke<uint64_t>(pdpt + 8, pd | pte::kP | pte::kRW);  // bit 1 is reserved in a PDPTE
  EXPECT_EQ(m.cpu.set_cr3(pdpt), cpu::Status::kFault);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
}

}  // namespace
}  // namespace nestvm::test
