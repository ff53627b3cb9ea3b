// The shadow MMU against hand-built guest page tables: what a #PF builds (the intersection of
// L1's rights with L0's, dirty tracking, large guest pages split into 4 KiB leaves), what it
// reflects to L1 (not-present, protection and reserved-bit faults with their error codes),
// write-protection of guest page tables with emulated writes zapping exactly the entries they
// changed, and the reverse maps staying exact through all of it (ShadowMmu::audit).
#include "hv/mmu/shadow_mmu.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "arch/exception.h"
#include "arch/paging.h"

namespace nestvm::test {
namespace {

using namespace arch;
using cpu::PagingMode;
using Kind = hv::ShadowMmu::Fault::Kind;

constexpr uint64_t P = pte::kP, RW = pte::kRW, US = pte::kUS, PS = pte::kPS, A = pte::kA, D = pte::kD,
                   XD = pte::kXD;
constexpr uint64_t kAddr = 0x000ffffffffff000ull;
constexpr uint32_t kW = pfec::kWrite, kU = pfec::kUser, kF = pfec::kFetch, kP = pfec::kPresent,
                   kRsvd = pfec::kReserved;

class ShadowMmuTest : public ::testing::Test {
 protected:
  ShadowMmuTest()
      : host_(128ull << 20),
        mem_(host_),
        mmu_(host_, mem_, stats_, 1, [this] { ++flushes_; }, [this] { ++reloads_; }) {
    mem_.add_slot(0, 64ull << 20);
  }
  ~ShadowMmuTest() override { expect_consistent(); }

  template <typename T> void poke(uint64_t gpa, T v) { ASSERT_TRUE(mem_.write(gpa, &v, sizeof v)); }
  template <typename T> T peek(uint64_t gpa) {
    T v{};
    EXPECT_TRUE(mem_.read(gpa, &v, sizeof v));
    return v;
  }
  void expect_consistent() {
    std::string why;
    EXPECT_TRUE(mmu_.audit(&why)) << why;
  }

  void set_paging(PagingMode m, uint64_t cr3 = 0, bool nxe = true, bool wp = true, bool pse = true) {
    hv::GuestPagingState s;
    s.mode = m;
    s.cr3 = cr3;
    s.nxe = nxe;
    s.wp = wp;
    s.pse = pse;
    if (m == PagingMode::kPae)
      for (int i = 0; i < 4; ++i) s.pdptes[i] = peek<uint64_t>((cr3 & ~0x1full) + 8 * i);
    mmu_.set_guest_paging(0, s);
    root_ = mmu_.load_root(0);
    ASSERT_NE(root_, 0u);
  }
  hv::ShadowMmu::Fault fault(uint64_t la, uint32_t code) { return mmu_.page_fault(0, la, code, false); }

  // The shadow leaf the silicon would use for la (0 when the walk stops at a non-present entry).
  uint64_t entry(uint64_t hpa) { return *reinterpret_cast<uint64_t*>(host_.frame(hpa) + (hpa & 0xfff)); }
  uint64_t spte(uint64_t la) {
    int level = 2;
    uint64_t table;
    if (mmu_.guest_paging(0).mode == PagingMode::k4Level) {
      level = 4;
      table = root_;
    } else {
      const uint64_t pdpte = entry(root_ + 8 * ((la >> 30) & 3));
      if (!(pdpte & P)) return 0;
      table = pdpte & kAddr;
    }
    for (;; --level) {
      const uint64_t e = entry(table + 8 * ((la >> (12 + 9 * (level - 1))) & 0x1ff));
      if (!(e & P)) return 0;
      if (level == 1) return e;
      table = e & kAddr;
    }
  }
  uint64_t hpa_of(uint64_t gpa) { return mem_.backing(gpa, false); }

  // 4-level tables: PML4 0x10000, PDPT 0x11000, PD 0x12000, PT 0x13000 for la 0..2 MiB (with
  // `pde` rights on the way down); the leaf for la is PTE (la >> 12) & 511.
  void four_level(uint64_t upper = P | RW | US) {
    poke<uint64_t>(0x10000, 0x11000 | upper);
    poke<uint64_t>(0x11000, 0x12000 | upper);
    poke<uint64_t>(0x12000, 0x13000 | upper);
    set_paging(PagingMode::k4Level, 0x10000);
  }
  void pte(uint64_t la, uint64_t v) { poke<uint64_t>(0x13000 + 8 * ((la >> 12) & 511), v); }

  hv::HostMemory host_;
  hv::GuestMemory mem_;
  hv::MmuStats stats_;
  unsigned flushes_ = 0, reloads_ = 0;
  hv::ShadowMmu mmu_;
  uint64_t root_ = 0;
};

// ---- mapping -----------------------------------------------------------------------------------

TEST_F(ShadowMmuTest, NonpagingMapsLinearToGuestPhysical) {
  set_paging(PagingMode::kNone);
  EXPECT_EQ(fault(0x123456, kW).kind, Kind::kFixed);
  const uint64_t e = spte(0x123456);
  ASSERT_TRUE(e & P);
  EXPECT_EQ(e & kAddr, hpa_of(0x123000));
  EXPECT_EQ(e & (RW | US | XD), RW | US);  // every right: L1 has no paging to restrict it
  // Above 3 GiB (the fourth PAE root) as well; the same fault again is spurious.
  EXPECT_EQ(fault(0xc0001000, 0).kind, Kind::kMmio);  // not RAM: a device's
  EXPECT_EQ(fault(0x123456, kW).kind, Kind::kSpurious);
  EXPECT_EQ(stats_.shadow_faults_fixed.load(), 1u);
}

TEST_F(ShadowMmuTest, LeafRightsAreTheIntersectionOfEveryLevel) {
  four_level(P | RW);  // upper levels: supervisor only
  pte(0x1000, 0x200000 | P | RW | US | D | A);
  pte(0x2000, 0x201000 | P | US | XD | A);
  EXPECT_EQ(fault(0x1000, kW).kind, Kind::kFixed);
  EXPECT_EQ(spte(0x1000) & (RW | US | XD), RW);            // U/S cleared above
  EXPECT_EQ(spte(0x1000) & kAddr, hpa_of(0x200000));
  EXPECT_EQ(fault(0x2000, 0).kind, Kind::kFixed);
  EXPECT_EQ(spte(0x2000) & (RW | US | XD), XD);            // read-only, not executable
  // A user access to them is L1's fault: present, user, and write or fetch as it was.
  EXPECT_EQ(fault(0x1000, kU).kind, Kind::kInject);
  EXPECT_EQ(fault(0x1000, kU).error_code, kP | kU);
  const auto f = fault(0x2000, kF);
  EXPECT_EQ(f.kind, Kind::kInject);
  EXPECT_EQ(f.error_code, kP | kF);
}

TEST_F(ShadowMmuTest, CleanPagesStayReadOnlyUntilTheFirstWriteSetsDirty) {
  four_level();
  pte(0x5000, 0x300000 | P | RW | US);
  EXPECT_EQ(fault(0x5000, 0).kind, Kind::kFixed);
  EXPECT_EQ(peek<uint64_t>(0x13000 + 5 * 8), 0x300000 | P | RW | US | A);  // A, not D (SDM §4.8)
  EXPECT_FALSE(spte(0x5000) & RW);
  EXPECT_EQ(fault(0x5000, kW).kind, Kind::kFixed);
  EXPECT_EQ(peek<uint64_t>(0x13000 + 5 * 8), 0x300000 | P | RW | US | A | D);
  EXPECT_TRUE(spte(0x5000) & RW);
  EXPECT_TRUE(spte(0x5000) & D);
  EXPECT_EQ(peek<uint64_t>(0x12000) & (A | D), A);  // D only in the leaf
}

TEST_F(ShadowMmuTest, SupervisorWriteWithWpClearMakesASupervisorOnlyWritablePage) {
  poke<uint64_t>(0x10000, 0x11000 | P | RW | US);
  poke<uint64_t>(0x11000, 0x12000 | P | RW | US);
  poke<uint64_t>(0x12000, 0x13000 | P | RW | US);
  pte(0x7000, 0x310000 | P | US | A | D);
  set_paging(PagingMode::k4Level, 0x10000, true, /*wp=*/false);
  EXPECT_EQ(fault(0x7000, kW).kind, Kind::kFixed);
  EXPECT_EQ(spte(0x7000) & (RW | US), RW);  // KVM's cr0.wp=0 trick: writable, not user
  EXPECT_EQ(fault(0x7000, kU).kind, Kind::kFixed);  // a user read flips it back
  EXPECT_EQ(spte(0x7000) & (RW | US), US);
}

// ---- faults reflected to L1 --------------------------------------------------------------------

TEST_F(ShadowMmuTest, NotPresentAndReservedBitsAreL1sFaults) {
  four_level();
  auto f = fault(0x9000, kW | kU);
  EXPECT_EQ(f.kind, Kind::kInject);
  EXPECT_EQ(f.error_code, kW | kU);
  pte(0x9000, 0x320000 | P | RW | US | (1ull << 45));  // above MAXPHYADDR (40)
  f = fault(0x9000, 0);
  EXPECT_EQ(f.kind, Kind::kInject);
  EXPECT_EQ(f.error_code, kP | kRsvd);
  // PS in a PML4E is reserved; reached from another PML4 slot.
  poke<uint64_t>(0x10008, 0x11000 | P | RW | PS);
  f = fault(0x8000000000ull, kF);
  EXPECT_EQ(f.kind, Kind::kInject);
  EXPECT_EQ(f.error_code, kP | kRsvd | kF);
  EXPECT_EQ(spte(0x9000), 0u);
  EXPECT_EQ(stats_.guest_page_faults.load(), 3u);
}

TEST_F(ShadowMmuTest, XdIsReservedWithoutNxe) {
  poke<uint64_t>(0x10000, 0x11000 | P | RW | US);
  poke<uint64_t>(0x11000, 0x12000 | P | RW | US);
  poke<uint64_t>(0x12000, 0x13000 | P | RW | US);
  pte(0x4000, 0x330000 | P | RW | XD);
  set_paging(PagingMode::k4Level, 0x10000, /*nxe=*/false);
  const auto f = fault(0x4000, 0);
  EXPECT_EQ(f.kind, Kind::kInject);
  EXPECT_EQ(f.error_code, kP | kRsvd);
}

// ---- large guest pages -------------------------------------------------------------------------

TEST_F(ShadowMmuTest, TwoMegabytePageIsSplitIntoOneDirectTable) {
  poke<uint64_t>(0x10000, 0x11000 | P | RW | US);
  poke<uint64_t>(0x11000, 0x12000 | P | RW | US);
  poke<uint64_t>(0x12000 + 8, 0x800000 | P | RW | PS | D | A);  // la 2 MiB -> 8 MiB, large
  set_paging(PagingMode::k4Level, 0x10000);
  const uint64_t before = mmu_.page_count();
  EXPECT_EQ(fault(0x200000 + 0x3000, kW).kind, Kind::kFixed);
  const uint64_t after_first = mmu_.page_count();
  EXPECT_EQ(fault(0x200000 + 0x1ff000, 0).kind, Kind::kFixed);
  EXPECT_EQ(mmu_.page_count(), after_first);  // the same direct level-1 page
  EXPECT_GT(after_first, before);
  EXPECT_EQ(spte(0x203000) & kAddr, hpa_of(0x803000));
  EXPECT_EQ(spte(0x3ff000) & kAddr, hpa_of(0x9ff000));
  EXPECT_TRUE(spte(0x203000) & RW);
  // A large page's frames are no guest page tables: nothing is write-protected by them.
  EXPECT_FALSE(mmu_.is_write_tracked(0x803));
}

TEST_F(ShadowMmuTest, OneGigabytePageMapsItsFrames) {
  poke<uint64_t>(0x10000, 0x11000 | P | RW | US);
  poke<uint64_t>(0x11000, 0x0 | P | RW | PS | A | D);  // la 0..1 GiB -> 0..1 GiB
  set_paging(PagingMode::k4Level, 0x10000);
  EXPECT_EQ(fault(0x2345678, kW).kind, Kind::kFixed);
  EXPECT_EQ(spte(0x2345678) & kAddr, hpa_of(0x2345000));
}

TEST_F(ShadowMmuTest, Bit32FourMegabytePageIsTwoShadowTables) {
  // Page directory at 0x20000: PDE 1 -> 4 MiB page at 0x1000000; PDE 0x300 -> page table 0x21000.
  poke<uint32_t>(0x20000 + 4, 0x1000000 | P | RW | PS | A | D);
  poke<uint32_t>(0x20000 + 0x300 * 4, 0x21000 | P | RW);
  poke<uint32_t>(0x21000 + 5 * 4, 0x340000 | P | RW | A | D);
  set_paging(PagingMode::k32Bit, 0x20000);
  EXPECT_EQ(fault(0x400000 + 0x1000, kW).kind, Kind::kFixed);
  const uint64_t one = mmu_.page_count();
  EXPECT_EQ(fault(0x600000 + 0x2000, kW).kind, Kind::kFixed);  // the other 2 MiB half
  EXPECT_EQ(mmu_.page_count(), one + 1);
  EXPECT_EQ(spte(0x401000) & kAddr, hpa_of(0x1001000));
  EXPECT_EQ(spte(0x602000) & kAddr, hpa_of(0x1202000));
  // Quadrant 3 of the page directory (la 3 GiB and up) through a 4-byte page table.
  EXPECT_EQ(fault(0xc0005000, 0).kind, Kind::kFixed);
  EXPECT_EQ(spte(0xc0005000) & kAddr, hpa_of(0x340000));
  EXPECT_TRUE(mmu_.is_write_tracked(0x20));
  EXPECT_TRUE(mmu_.is_write_tracked(0x21));
}

TEST_F(ShadowMmuTest, PaeNotPresentPdpteIsL1sFault) {
  poke<uint64_t>(0x30000, 0x31000 | P);  // PDPTE 0 only
  poke<uint64_t>(0x31000, 0x600000 | P | RW | PS | A);
  set_paging(PagingMode::kPae, 0x30000, /*nxe=*/false);
  EXPECT_EQ(fault(0x1000, 0).kind, Kind::kFixed);
  EXPECT_EQ(spte(0x1000) & kAddr, hpa_of(0x601000));
  EXPECT_FALSE(spte(0x1000) & RW);  // not dirty yet
  const auto f = fault(0x40001000, kW);
  EXPECT_EQ(f.kind, Kind::kInject);
  EXPECT_EQ(f.error_code, kW);
}

// ---- write-protection and zapping --------------------------------------------------------------

TEST_F(ShadowMmuTest, ShadowingAGuestTableWriteProtectsEveryMappingOfIt) {
  four_level();
  // la 0x1000 maps frame 0x40 writable; frame 0x40 is no page table yet.
  pte(0x1000, 0x40000 | P | RW | A | D);
  EXPECT_EQ(fault(0x1000, kW).kind, Kind::kFixed);
  EXPECT_TRUE(spte(0x1000) & RW);
  // Now L1 makes frame 0x40 a page table (PDE 1 -> 0x40000) and uses it.
  poke<uint64_t>(0x12000 + 8, 0x40000 | P | RW | US);
  poke<uint64_t>(0x40000 + 3 * 8, 0x350000 | P | RW | A | D);
  const unsigned flushes = flushes_;
  EXPECT_EQ(fault(0x200000 + 0x3000, 0).kind, Kind::kFixed);
  EXPECT_TRUE(mmu_.is_write_tracked(0x40));
  EXPECT_FALSE(spte(0x1000) & RW);  // its mapping lost R/W ...
  EXPECT_GT(flushes_, flushes);     // ... on every vCPU
  // The tables themselves: a write through a mapping of one is emulated.
  const auto f = fault(0x1000, kW);
  EXPECT_EQ(f.kind, Kind::kEmulateWrite);
  EXPECT_EQ(f.gfn, 0x40u);
  EXPECT_EQ(f.next_gfn, ~0ull);
  EXPECT_EQ(fault(0x1ff8, kW).next_gfn, ~0ull);  // the next page (0x2000 unmapped) is none
}

TEST_F(ShadowMmuTest, EmulatedWriteZapsExactlyTheEntriesItChanged) {
  four_level();
  pte(0x1000, 0x360000 | P | RW | A | D);
  pte(0x2000, 0x361000 | P | RW | A | D);
  EXPECT_EQ(fault(0x1000, kW).kind, Kind::kFixed);
  EXPECT_EQ(fault(0x2000, kW).kind, Kind::kFixed);
  // An emulated write to PTE 1 only.
  int ran = 0;
  mmu_.emulate_write(0x13, ~0ull, [&] {
    ++ran;
    poke<uint64_t>(0x13000 + 8, 0x362000 | P | RW);
    return 0;
  });
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(spte(0x1000), 0u);
  EXPECT_TRUE(spte(0x2000) & P);
  EXPECT_EQ(stats_.pte_writes_zapped.load(), 1u);
  expect_consistent();
  // The next access rebuilds from the new entry.
  EXPECT_EQ(fault(0x1000, 0).kind, Kind::kFixed);
  EXPECT_EQ(spte(0x1000) & kAddr, hpa_of(0x362000));
  // A write that changes nothing zaps nothing.
  mmu_.emulate_write(0x13, ~0ull, [&] { return 0; });
  EXPECT_EQ(stats_.pte_writes_zapped.load(), 1u);
  // Rewriting an upper-level entry takes the lower tables out of that path.
  mmu_.emulate_write(0x12, ~0ull, [&] {
    poke<uint64_t>(0x12000, 0x13000 | P | US);  // R/W off
    return 0;
  });
  EXPECT_EQ(spte(0x2000), 0u);
  EXPECT_EQ(fault(0x2000, kW).kind, Kind::kInject);
}

TEST_F(ShadowMmuTest, Bit32WriteZapsTheQuadrantThatShadowsIt) {
  poke<uint32_t>(0x20000, 0x21000 | P | RW);
  poke<uint32_t>(0x21000 + 0x201 * 4, 0x370000 | P | RW | A | D);  // la 0x201000: the upper half
  set_paging(PagingMode::k32Bit, 0x20000);
  EXPECT_EQ(fault(0x201000, kW).kind, Kind::kFixed);
  mmu_.emulate_write(0x21, ~0ull, [&] {
    poke<uint32_t>(0x21000 + 0x001 * 4, 0x371000 | P);  // the lower half: another quadrant
    return 0;
  });
  EXPECT_TRUE(spte(0x201000) & P);
  mmu_.emulate_write(0x21, ~0ull, [&] {
    poke<uint32_t>(0x21000 + 0x201 * 4, 0x372000 | P);
    return 0;
  });
  EXPECT_EQ(spte(0x201000), 0u);
}

TEST_F(ShadowMmuTest, RepeatedWritesWithoutUseEndTheProtection) {
  four_level();
  pte(0x1000, 0x380000 | P | RW | A | D);
  EXPECT_EQ(fault(0x1000, kW).kind, Kind::kFixed);
  ASSERT_TRUE(mmu_.is_write_tracked(0x13));
  for (uint64_t i = 0; i < 3; ++i)
    mmu_.emulate_write(0x13, ~0ull, [&] {
      poke<uint64_t>(0x13000 + 8 * (100 + i), (0x390000 + (i << 12)) | P);
      return 0;
    });
  EXPECT_FALSE(mmu_.is_write_tracked(0x13));  // KVM's write flooding: no page table any more
  EXPECT_EQ(spte(0x1000), 0u);
}

TEST_F(ShadowMmuTest, UnprotectAndZapAllLeaveNothingBehind) {
  four_level();
  pte(0x1000, 0x3a0000 | P | RW | A | D);
  EXPECT_EQ(fault(0x1000, kW).kind, Kind::kFixed);
  mmu_.unprotect(0x13);
  EXPECT_FALSE(mmu_.is_write_tracked(0x13));
  EXPECT_EQ(spte(0x1000), 0u);
  expect_consistent();
  EXPECT_EQ(fault(0x1000, kW).kind, Kind::kFixed);
  const unsigned reloads = reloads_;
  mmu_.zap_all();
  EXPECT_GT(reloads_, reloads);          // the root went too: vCPUs reload
  EXPECT_FALSE(mmu_.root_loaded(0));
  expect_consistent();
  root_ = mmu_.load_root(0);
  EXPECT_EQ(spte(0x1000), 0u);
  EXPECT_EQ(fault(0x1000, kW).kind, Kind::kFixed);
}

// Random guest tables, faults, emulated writes and paging changes: after every step each present
// shadow leaf maps its guest frame's backing, no guest page table is writable, and the reverse
// maps hold exactly the present leaves.
TEST_F(ShadowMmuTest, ReverseMapsStayExactUnderRandomWork) {
  std::mt19937_64 rng(7);
  // Four page tables at 0x13000.. covering la 0..8 MiB; their frames also appear as data pages.
  poke<uint64_t>(0x10000, 0x11000 | P | RW | US);
  poke<uint64_t>(0x11000, 0x12000 | P | RW | US);
  for (uint64_t t = 0; t < 4; ++t) poke<uint64_t>(0x12000 + 8 * t, (0x13000 + (t << 12)) | P | RW | US);
  auto random_pte = [&] {
    // Data frames in 0x400000..0x440000, or one of the tables themselves.
    const uint64_t frame = rng() % 8 == 0 ? 0x10 + rng() % 7 : 0x400 + rng() % 64;
    uint64_t v = (frame << 12) | P;
    if (rng() % 2) v |= RW;
    if (rng() % 2) v |= US;
    if (rng() % 2) v |= A | D;
    if (rng() % 5 == 0) v &= ~P;
    return v;
  };
  for (uint64_t i = 0; i < 4 * 512; i += 1 + rng() % 3) poke<uint64_t>(0x13000 + 8 * i, random_pte());
  set_paging(PagingMode::k4Level, 0x10000);
  for (int step = 0; step < 3000; ++step) {
    const uint64_t la = (rng() % (4 * 512)) << 12;
    switch (rng() % 8) {
      case 0: {
        const uint64_t gfn = 0x13 + rng() % 4;
        mmu_.emulate_write(gfn, ~0ull, [&] {
          poke<uint64_t>((gfn << 12) + 8 * (rng() % 512), random_pte());
          return 0;
        });
        break;
      }
      case 1:
        if (rng() % 50 == 0) {
          mmu_.zap_all();
        } else if (rng() % 10 == 0) {
          mmu_.unprotect(0x13 + rng() % 4);
        }
        break;
      default: {
        const uint32_t code = (rng() % 2 ? kW : 0) | (rng() % 3 == 0 ? kU : 0);
        const auto f = fault(la, code);
        if (f.kind == Kind::kRetry) root_ = mmu_.load_root(0);
        if (f.kind == Kind::kEmulateWrite) {
          EXPECT_TRUE(mmu_.is_write_tracked(f.gfn));
        }
        break;
      }
    }
    root_ = mmu_.load_root(0);
    std::string why;
    ASSERT_TRUE(mmu_.audit(&why)) << "step " << step << ": " << why;
  }
  EXPECT_GT(stats_.shadow_faults_fixed.load(), 100u);
  EXPECT_GT(stats_.pte_writes_zapped.load(), 0u);
  EXPECT_GT(stats_.write_protect_faults.load(), 0u);
}

// ---- the reverse map itself --------------------------------------------------------------------

TEST(RmapTest, AddRemoveAndCountPerFrame) {
  hv::Rmap r;
  r.add(5, 0x1008);
  EXPECT_EQ(r.count(5), 1u);
  r.add(5, 0x2010);
  r.add(5, 0x3018);
  r.add(6, 0x4000);
  EXPECT_EQ(r.count(5), 3u);
  EXPECT_EQ(r.size(), 4u);
  EXPECT_EQ(r.frames(), 2u);
  EXPECT_TRUE(r.contains(5, 0x2010));
  EXPECT_FALSE(r.contains(6, 0x2010));
  EXPECT_TRUE(r.remove(5, 0x1008));
  EXPECT_FALSE(r.remove(5, 0x1008));  // only once
  EXPECT_FALSE(r.remove(7, 0x1008));
  std::vector<uint64_t> seen;
  r.for_each(5, [&](uint64_t s) { seen.push_back(s); });
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<uint64_t>{0x2010, 0x3018}));
  EXPECT_TRUE(r.remove(5, 0x2010));
  EXPECT_TRUE(r.remove(5, 0x3018));
  EXPECT_EQ(r.count(5), 0u);
  EXPECT_EQ(r.frames(), 1u);
  EXPECT_EQ(r.size(), 1u);
}

}  // namespace
}  // namespace nestvm::test
