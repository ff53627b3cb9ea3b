// The guest page-table walker against hand-built tables in each paging mode and each fault case
// of SDM §4.6-4.7, and against the core's own walk (cpu/paging.cpp) on random tables.
#include "hv/mmu/guest_walk.h"

#include <gtest/gtest.h>

#include <random>

#include "arch/cr.h"
#include "arch/exception.h"
#include "arch/paging.h"
#include "hv/mmu/mmu_role.h"

namespace nestvm::test {
namespace {

using namespace arch;
using cpu::PagingMode;
using hv::GuestAccess;
using hv::GuestPagingState;

constexpr uint64_t P = pte::kP, RW = pte::kRW, US = pte::kUS, PS = pte::kPS, A = pte::kA, D = pte::kD,
                   G = pte::kG, XD = pte::kXD;

class GuestWalkTest : public ::testing::Test {
 protected:
  GuestWalkTest() : host_(64ull << 20), mem_(host_) { mem_.add_slot(0, 32ull << 20); }
  template <typename T> void poke(uint64_t gpa, T v) { ASSERT_TRUE(mem_.write(gpa, &v, sizeof v)); }
  template <typename T> T peek(uint64_t gpa) {
    T v{};
    EXPECT_TRUE(mem_.read(gpa, &v, sizeof v));
    return v;
  }
  hv::GuestWalk walk(const GuestPagingState& s, uint64_t la, GuestAccess a = {}) { return hv::walk_guest(mem_, s, la, a); }

  static GuestPagingState state(PagingMode m, uint64_t cr3) {
    GuestPagingState s;
    s.mode = m;
    s.cr3 = cr3;
    s.wp = true;
    return s;
  }
  static GuestAccess write() { GuestAccess a; a.write = true; return a; }
  static GuestAccess user(bool w = false) { GuestAccess a; a.user = true; a.write = w; return a; }
  static GuestAccess fetch(bool u = false) { GuestAccess a; a.fetch = true; a.user = u; return a; }

  hv::HostMemory host_;
  hv::GuestMemory mem_;
};

// ---- 32-bit paging (SDM §4.3) ------------------------------------------------------------------

TEST_F(GuestWalkTest, Bit32FourKilobytePageSetsAccessedThenDirty) {
  const uint64_t la = 0x00c03123;  // PDE 3, PTE 3
  poke<uint32_t>(0x10000 + 3 * 4, 0x11000 | P | RW | US);
  poke<uint32_t>(0x11000 + 3 * 4, 0x345000 | P | RW | US);
  const auto s = state(PagingMode::k32Bit, 0x10000);
  auto w = walk(s, la);
  ASSERT_FALSE(w.fault);
  EXPECT_EQ(w.gpa, 0x345123u);
  EXPECT_EQ(w.gfn, 0x345u);
  EXPECT_EQ(w.level, 1);
  EXPECT_EQ(w.top_level, 2);
  EXPECT_EQ(w.table_gfn[2], 0x10u);
  EXPECT_EQ(w.table_gfn[1], 0x11u);
  EXPECT_EQ(w.pte_gpa[1], 0x1100cu);
  EXPECT_EQ(w.pte_access, hv::acc::kAll);
  EXPECT_FALSE(w.dirty);
  EXPECT_EQ(peek<uint32_t>(0x1000c), 0x11000u | P | RW | US | A);
  EXPECT_EQ(peek<uint32_t>(0x1100c), 0x345000u | P | RW | US | A);
  w = walk(s, la, write());
  ASSERT_FALSE(w.fault);
  EXPECT_TRUE(w.dirty);
  EXPECT_EQ(peek<uint32_t>(0x1100c), 0x345000u | P | RW | US | A | D);
  EXPECT_EQ(peek<uint32_t>(0x1000c), 0x11000u | P | RW | US | A);  // D only in the leaf
}

TEST_F(GuestWalkTest, Bit32LargePagesNeedPseAndCarryPse36Bits) {
  // PDE 1 with PS: 4 MiB page at 0x1_0080_0000 (PA[39:32] = 1 in bits 20:13).
  poke<uint32_t>(0x10000 + 4, 0x00800000 | (1u << 13) | P | RW | PS | G);
  auto s = state(PagingMode::k32Bit, 0x10000);
  s.pse = true;
  s.pge = true;
  auto w = walk(s, 0x00512345);
  ASSERT_FALSE(w.fault);
  EXPECT_EQ(w.level, 2);
  EXPECT_EQ(w.gpa, 0x100912345ull);
  EXPECT_TRUE(w.global);
  // Bit 21 is reserved in a 4 MiB PDE.
  poke<uint32_t>(0x10000 + 4, 0x00800000 | (1u << 21) | P | RW | PS);
  w = walk(s, 0x00512345);
  ASSERT_TRUE(w.fault);
  EXPECT_EQ(w.error_code, pfec::kPresent | pfec::kReserved);
  // Without CR4.PSE the PS bit is ignored: the PDE points to a page table at 0x00a00000.
  s.pse = false;
  poke<uint32_t>(0x10000 + 4, 0x00a00000 | P | RW | PS);
  poke<uint32_t>(0x00a00000 + 0x112 * 4, 0x777000 | P);
  w = walk(s, 0x00512345);
  ASSERT_FALSE(w.fault);
  EXPECT_EQ(w.level, 1);
  EXPECT_EQ(w.gpa, 0x777345u);
}

TEST_F(GuestWalkTest, Bit32NotPresentAndProtectionFaultsReportTheErrorCode) {
  auto s = state(PagingMode::k32Bit, 0x10000);
  // PDE not present: P = 0, with W and U as the access was.
  auto w = walk(s, 0x00400000, user(true));
  ASSERT_TRUE(w.fault);
  EXPECT_EQ(w.error_code, pfec::kWrite | pfec::kUser);
  // PTE not present.
  poke<uint32_t>(0x10000, 0x11000 | P | RW | US);
  w = walk(s, 0x5000);
  ASSERT_TRUE(w.fault);
  EXPECT_EQ(w.error_code, 0u);
  // A read-only supervisor page.
  poke<uint32_t>(0x11000 + 5 * 4, 0x200000 | P);
  EXPECT_FALSE(walk(s, 0x5000).fault);
  w = walk(s, 0x5000, write());
  ASSERT_TRUE(w.fault);
  EXPECT_EQ(w.error_code, pfec::kPresent | pfec::kWrite);
  w = walk(s, 0x5000, user());
  ASSERT_TRUE(w.fault);
  EXPECT_EQ(w.error_code, pfec::kPresent | pfec::kUser);
  // CR0.WP = 0 lets supervisor writes through, never user ones.
  s.wp = false;
  EXPECT_FALSE(walk(s, 0x5000, write()).fault);
  poke<uint32_t>(0x11000 + 5 * 4, 0x200000 | P | US);
  w = walk(s, 0x5000, user(true));
  ASSERT_TRUE(w.fault);
  EXPECT_EQ(w.error_code, pfec::kPresent | pfec::kWrite | pfec::kUser);
  // A fault sets no accessed flag.
  poke<uint32_t>(0x11000 + 6 * 4, 0x201000 | P);
  (void)walk(s, 0x6000, user());
  EXPECT_EQ(peek<uint32_t>(0x11000 + 6 * 4), 0x201000u | P);
}

TEST_F(GuestWalkTest, SmepAndSmapRestrictSupervisorAccessesToUserPages) {
  auto s = state(PagingMode::k32Bit, 0x10000);
  poke<uint32_t>(0x10000, 0x11000 | P | RW | US);
  poke<uint32_t>(0x11000 + 4, 0x300000 | P | RW | US);
  EXPECT_FALSE(walk(s, 0x1000, fetch()).fault);
  s.smep = true;
  auto w = walk(s, 0x1000, fetch());
  ASSERT_TRUE(w.fault);
  EXPECT_EQ(w.error_code, pfec::kPresent | pfec::kFetch);  // I/D reported with SMEP on
  EXPECT_FALSE(walk(s, 0x1000, fetch(true)).fault);       // user fetches are fine
  s.smap = true;
  w = walk(s, 0x1000);
  ASSERT_TRUE(w.fault);
  EXPECT_EQ(w.error_code, pfec::kPresent);
  w = walk(s, 0x1000, write());
  ASSERT_TRUE(w.fault);
  EXPECT_EQ(w.error_code, pfec::kPresent | pfec::kWrite);
  GuestAccess ac;
  ac.smap_exempt = true;
  EXPECT_FALSE(walk(s, 0x1000, ac).fault);
}

// ---- PAE paging (SDM §4.4) ---------------------------------------------------------------------

TEST_F(GuestWalkTest, PaeUsesThePdpteRegistersAndHonoursXd) {
  auto s = state(PagingMode::kPae, 0x10020);
  s.pdptes = {0, 0x12000 | P, 0, 0};
  poke<uint64_t>(0x12000 + 2 * 8, 0x13000 | P | RW);
  poke<uint64_t>(0x13000 + 7 * 8, 0x456000 | P | RW | XD);
  const uint64_t la = (1ull << 30) | (2ull << 21) | (7ull << 12) | 0x10;
  // XD without EFER.NXE is a reserved bit.
  auto w = walk(s, la);
  ASSERT_TRUE(w.fault);
  EXPECT_EQ(w.error_code, pfec::kPresent | pfec::kReserved);
  s.nxe = true;
  w = walk(s, la, write());
  ASSERT_FALSE(w.fault);
  EXPECT_EQ(w.gpa, 0x456010u);
  EXPECT_EQ(w.top_level, 3);
  EXPECT_EQ(w.table_gfn[3], 0x10u);
  EXPECT_EQ(w.table_gfn[2], 0x12u);
  EXPECT_EQ(w.pte_access, hv::acc::kWrite);
  EXPECT_EQ(peek<uint64_t>(0x13000 + 7 * 8), 0x456000u | P | RW | XD | A | D);
  w = walk(s, la, fetch());
  ASSERT_TRUE(w.fault);
  EXPECT_EQ(w.error_code, pfec::kPresent | pfec::kFetch);
  // A PDPTE register that is not present faults with P = 0 whatever memory holds.
  w = walk(s, la & ~(1ull << 30));
  ASSERT_TRUE(w.fault);
  EXPECT_EQ(w.error_code, 0u);
}

TEST_F(GuestWalkTest, PaeTwoMegabytePagesAndReservedAddressBits) {
  auto s = state(PagingMode::kPae, 0x10000);
  s.pdptes = {0x12000 | P, 0, 0, 0};
  poke<uint64_t>(0x12000 + 3 * 8, 0x00e00000 | P | RW | US | PS);
  auto w = walk(s, (3ull << 21) | 0x12345, user());
  ASSERT_FALSE(w.fault);
  EXPECT_EQ(w.level, 2);
  EXPECT_EQ(w.gpa, 0x00e12345u);
  // Bits 20:13 of a 2 MiB PDE are reserved, and so are address bits at or above MAXPHYADDR.
  poke<uint64_t>(0x12000 + 3 * 8, 0x00e00000 | (1u << 13) | P | RW | US | PS);
  EXPECT_EQ(walk(s, 3ull << 21).error_code, pfec::kPresent | pfec::kReserved);
  poke<uint64_t>(0x12000 + 3 * 8, 0x00e00000 | (1ull << 45) | P | RW | US | PS);
  EXPECT_EQ(walk(s, 3ull << 21, user(true)).error_code, pfec::kPresent | pfec::kReserved | pfec::kWrite | pfec::kUser);
}

// ---- 4-level paging (SDM §4.5) -----------------------------------------------------------------

TEST_F(GuestWalkTest, FourLevelPagesOfEverySize) {
  auto s = state(PagingMode::k4Level, 0x10000);
  s.nxe = true;
  poke<uint64_t>(0x10000 + 1 * 8, 0x11000 | P | RW | US);  // PML4E 1
  poke<uint64_t>(0x11000 + 2 * 8, 0x40000000 | P | RW | PS);  // 1 GiB page
  poke<uint64_t>(0x11000 + 3 * 8, 0x12000 | P | RW | US);
  poke<uint64_t>(0x12000 + 4 * 8, 0x00400000 | P | US | PS);  // 2 MiB page, read-only
  poke<uint64_t>(0x12000 + 5 * 8, 0x13000 | P | RW | US);
  poke<uint64_t>(0x13000 + 6 * 8, 0x555000 | P | RW | US);
  const uint64_t base = 1ull << 39;
  auto w = walk(s, base | (2ull << 30) | 0x123456);
  ASSERT_FALSE(w.fault);
  EXPECT_EQ(w.level, 3);
  EXPECT_EQ(w.gpa, 0x40123456u);
  w = walk(s, base | (3ull << 30) | (4ull << 21) | 0x1234, user());
  ASSERT_FALSE(w.fault);
  EXPECT_EQ(w.level, 2);
  EXPECT_EQ(w.gpa, 0x00401234u);
  EXPECT_EQ(w.pt_access[3], hv::acc::kAll);
  EXPECT_EQ(w.pte_access, hv::acc::kUser | hv::acc::kExec);
  w = walk(s, base | (3ull << 30) | (5ull << 21) | (6ull << 12) | 8, user(true));
  ASSERT_FALSE(w.fault);
  EXPECT_EQ(w.gpa, 0x555008u);
  EXPECT_EQ(w.table_gfn[4], 0x10u);
  EXPECT_EQ(w.table_gfn[1], 0x13u);
  EXPECT_EQ(peek<uint64_t>(0x13000 + 6 * 8), 0x555000u | P | RW | US | A | D);
  // A supervisor page reached from user mode; a user write to the read-only 2 MiB page.
  EXPECT_EQ(walk(s, base | (2ull << 30), user()).error_code, pfec::kPresent | pfec::kUser);
  EXPECT_EQ(walk(s, base | (3ull << 30) | (4ull << 21), user(true)).error_code,
            pfec::kPresent | pfec::kUser | pfec::kWrite);
  // Without 1-GByte pages, PS in a PDPTE is reserved.
  s.pdpe1gb = false;
  EXPECT_EQ(walk(s, base | (2ull << 30)).error_code, pfec::kPresent | pfec::kReserved);
}

TEST_F(GuestWalkTest, FourLevelNotPresentAtEachLevelAndReservedPml4Ps) {
  auto s = state(PagingMode::k4Level, 0x10000);
  EXPECT_EQ(walk(s, 0, write()).error_code, pfec::kWrite);  // PML4E
  poke<uint64_t>(0x10000, 0x11000 | P | RW);
  EXPECT_TRUE(walk(s, 0).fault);  // PDPTE
  poke<uint64_t>(0x11000, 0x12000 | P | RW);
  EXPECT_TRUE(walk(s, 0).fault);  // PDE
  poke<uint64_t>(0x12000, 0x13000 | P | RW);
  EXPECT_TRUE(walk(s, 0).fault);  // PTE
  poke<uint64_t>(0x13000, 0x14000 | P | RW);
  EXPECT_FALSE(walk(s, 0).fault);
  poke<uint64_t>(0x10000, 0x11000 | P | RW | PS);
  EXPECT_EQ(walk(s, 0).error_code, pfec::kPresent | pfec::kReserved);
}

TEST_F(GuestWalkTest, WalkWithoutAccessedDirtyUpdateLeavesMemoryAlone) {
  auto s = state(PagingMode::k4Level, 0x10000);
  poke<uint64_t>(0x10000, 0x11000 | P | RW);
  poke<uint64_t>(0x11000, 0x12000 | P | RW);
  poke<uint64_t>(0x12000, 0x13000 | P | RW);
  poke<uint64_t>(0x13000, 0x14000 | P | RW);
  const auto w = hv::walk_guest(mem_, s, 0x10, write(), false);
  ASSERT_FALSE(w.fault);
  EXPECT_EQ(peek<uint64_t>(0x13000), 0x14000u | P | RW);
  EXPECT_EQ(peek<uint64_t>(0x10000), 0x11000u | P | RW);
}

// ---- against the core's walk ------------------------------------------------------------------

// Random tables in the same bytes for both walkers: each table's first four entries are random
// (mostly present, sometimes large, sometimes with a reserved bit), pointing into a pool of table
// pages; linear addresses use indexes 0-3 at every level.
class WalkDifferential : public GuestWalkTest {
 protected:
  static constexpr uint64_t kPool = 0x100000, kPoolPages = 24;
  // The core keeps a reference to its model: it lives as long as the core.
  WalkDifferential() : ram_(32ull << 20), model_(cpu::CpuModel::max()), core_(ram_, model_) {}

  void build(std::mt19937_64& rng, bool wide) {
    for (uint64_t p = 0; p < kPoolPages; ++p) {
      for (unsigned i = 0; i < 4; ++i) {
        uint64_t e = (rng() & 7) ? P : 0;
        e |= rng() & (RW | US | A | D | G | pte::kPWT | pte::kPCD);
        if ((rng() & 3) == 0) e |= PS;
        const uint64_t target = (rng() & 1) ? kPool + (rng() % kPoolPages) * 0x1000 : (rng() & 0xfffe00000ull);
        e |= target & (wide ? 0xffffffffff000ull : 0xfffff000ull);
        if (wide && (rng() & 1)) e |= XD;
        if ((rng() % 10) == 0) e |= 1ull << (wide ? 13 + rng() % 40 : 13 + rng() % 9);
        if (wide) write_both<uint64_t>(kPool + p * 0x1000 + i * 8, e);
        else write_both<uint32_t>(kPool + p * 0x1000 + i * 4, uint32_t(e));
      }
    }
  }
  template <typename T> void write_both(uint64_t pa, T v) {
    poke<T>(pa, v);
    ram_.write(pa, &v, sizeof v);
  }
  void compare(const GuestPagingState& s, uint64_t cr0, uint64_t cr4, uint64_t efer, std::mt19937_64& rng, int n) {
    core_.state.cr0 = cr0;
    core_.state.cr3 = s.cr3;
    core_.state.cr4 = cr4;
    core_.state.msr.efer = efer;
    core_.state.pdpte = s.pdptes;
    core_.refresh_mode();
    ASSERT_EQ(core_.paging_mode(), s.mode);
    for (int k = 0; k < n; ++k) {
      uint64_t la = rng() & 0xfff;
      const unsigned levels = s.mode == PagingMode::k4Level ? 4 : s.mode == PagingMode::kPae ? 3 : 2;
      for (unsigned l = 1; l <= levels; ++l) {
        const unsigned shift = s.mode == PagingMode::k32Bit ? (l == 1 ? 12 : 22) : 12 + 9 * (l - 1);
        la |= (rng() & 3) << shift;
      }
      if (s.mode == PagingMode::k4Level && (la >> 47) & 1) la |= 0xffff000000000000ull;
      GuestAccess a;
      const int kind = int(rng() % 3);
      a.write = kind == 1;
      a.fetch = kind == 2;
      a.user = rng() & 1;
      a.smap_exempt = !a.user && (rng() & 1);
      const cpu::MmuIdx idx = a.user ? cpu::kMmuUser : a.smap_exempt ? cpu::kMmuSupervisorAc : cpu::kMmuSupervisor;
      cpu::Translation t;
      const cpu::Status st = core_.walk(la, cpu::AccessKind(kind), idx, t);
      const auto w = walk(s, la, a);
      SCOPED_TRACE(testing::Message() << std::hex << "la " << la << " kind " << kind << " user " << a.user);
      if (st == cpu::Status::kNext) {
        ASSERT_FALSE(w.fault) << "error " << w.error_code;
        EXPECT_EQ(w.gpa, t.pa);
        EXPECT_EQ(w.global, t.global);
        EXPECT_EQ(bool(w.pte_access & hv::acc::kUser), t.user);
        EXPECT_EQ(bool(w.pte_access & hv::acc::kWrite), t.writable);
      } else {
        ASSERT_EQ(st, cpu::Status::kFault);
        ASSERT_TRUE(w.fault) << "gpa " << w.gpa;
        EXPECT_EQ(w.error_code, core_.pending_event().error);
        core_.clear_pending_event();
      }
      // Both set the same accessed and dirty flags.
      ASSERT_EQ(0, std::memcmp(ram_.data() + kPool, host_.frame(mem_.backing(kPool)), 4096));
      for (uint64_t p = 0; p < kPoolPages; ++p) {
        uint8_t buf[64];
        ASSERT_TRUE(mem_.read(kPool + p * 0x1000, buf, sizeof buf));
        ASSERT_EQ(0, std::memcmp(ram_.data() + kPool + p * 0x1000, buf, sizeof buf)) << "table page " << p;
      }
    }
  }
  cpu::FlatRam ram_;
  cpu::CpuModel model_;
  cpu::Cpu core_;
};

TEST_F(WalkDifferential, AgreesWithTheCoreInEveryMode) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 40; ++round) {
    const int mode = round % 3;
    build(rng, mode != 0);
    GuestPagingState s;
    s.wp = rng() & 1;
    s.smep = rng() & 1;
    s.smap = rng() & 1;
    s.nxe = mode != 0 && (rng() & 1);
    s.pse = rng() & 1;
    s.pge = rng() & 1;
    uint64_t cr0 = cr0::kPE | cr0::kPG | (s.wp ? cr0::kWP : 0);
    uint64_t cr4 = (s.smep ? cr4::kSMEP : 0) | (s.smap ? cr4::kSMAP : 0) | (s.pse ? cr4::kPSE : 0) |
                   (s.pge ? cr4::kPGE : 0);
    uint64_t efer = s.nxe ? efer::kNXE : 0;
    s.cr3 = kPool + (rng() % kPoolPages) * 0x1000;
    if (mode == 0) {
      s.mode = PagingMode::k32Bit;
    } else if (mode == 1) {
      s.mode = PagingMode::kPae;
      cr4 |= cr4::kPAE;
      // PDPTE registers: present ones without reserved bits (MOV to CR3 would have refused them).
      for (auto& p : s.pdptes) p = (rng() & 3) ? (kPool + (rng() % kPoolPages) * 0x1000) | P : 0;
    } else {
      s.mode = PagingMode::k4Level;
      cr4 |= cr4::kPAE;
      efer |= efer::kLME | efer::kLMA;
    }
    compare(s, cr0, cr4, efer, rng, 200);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace nestvm::test
