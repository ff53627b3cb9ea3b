// The TDP MMU (EPT01) against its own tables, walked here as the silicon walks them: what an EPT
// violation builds (a direct map of guest-physical to the frame backing it, write-back, RWX),
// what it leaves to device emulation, zapping of ranges and of everything (leaves, the tables
// under them, one remote TLB flush), the reverse map from host frame to leaf, concurrent faults,
// and host memory running out. TdpMmu::audit checks the rmap and counters after every test.
#include "hv/mmu/tdp_mmu.h"

#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "hv/guest_memory.h"
#include "hv/host_memory.h"
#include "hv/stats.h"

namespace nestvm::test {
namespace {

using Fault = hv::TdpMmu::Fault;

constexpr uint64_t kAddrMask = 0x000ffffffffff000ull;

class TdpMmuTest : public ::testing::Test {
 protected:
  explicit TdpMmuTest(uint64_t host_bytes = 128ull << 20)
      : host_(host_bytes), mem_(host_), mmu_(host_, mem_, stats_, [this] { ++flushes_; }) {
    mem_.add_slot(0, 64ull << 20);
  }
  ~TdpMmuTest() override {
    std::string why;
    EXPECT_TRUE(mmu_.audit(&why)) << why;
  }

  // The EPT01 leaf for gpa (0 if a level on the way is not present), walked from the EPTP.
  uint64_t leaf(uint64_t gpa, unsigned* levels_present = nullptr) {
    uint64_t table = mmu_.eptp() & kAddrMask;
    unsigned n = 0;
    for (int level = 3; level >= 0; --level) {
      const uint64_t e = reinterpret_cast<const uint64_t*>(host_.frame(table))[(gpa >> (12 + 9 * level)) & 511];
      if (!(e & 7)) break;
      ++n;
      if (level == 0) {
        if (levels_present) *levels_present = n;
        return e;
      }
      EXPECT_EQ(e & (1u << 7), 0u) << "EPT01 maps 4 KiB pages only";
      table = e & kAddrMask;
    }
    if (levels_present) *levels_present = n;
    return 0;
  }

  hv::HostMemory host_;
  hv::GuestMemory mem_;
  hv::MmuStats stats_;
  unsigned flushes_ = 0;
  hv::TdpMmu mmu_;
};

TEST_F(TdpMmuTest, EptpIsWriteBackFourLevelWithoutAccessedDirty) {
  const uint64_t eptp = mmu_.eptp();
  EXPECT_EQ(eptp & 7, 6u);          // memory type WB (SDM 25.6.11)
  EXPECT_EQ((eptp >> 3) & 7, 3u);   // page-walk length 4, minus 1
  EXPECT_EQ(eptp & (1u << 6), 0u);  // A/D flags off
  EXPECT_EQ(mmu_.mapped_pages(), 0u);
  EXPECT_EQ(mmu_.table_pages(), 1u);
  EXPECT_EQ(leaf(0), 0u);
}

TEST_F(TdpMmuTest, AViolationMapsItsPageToTheFrameBackingIt) {
  EXPECT_EQ(mem_.backed_pages(), 0u) << "RAM is backed lazily";
  ASSERT_EQ(mmu_.handle_ept_violation(0x123456), Fault::kFixed);
  const uint64_t e = leaf(0x123456);
  EXPECT_EQ(e & 7, 7u) << "read, write, execute";
  EXPECT_EQ((e >> 3) & 7, 6u) << "write-back";
  EXPECT_EQ(e & kAddrMask, mem_.backing(0x123000, false));
  EXPECT_NE(e & kAddrMask, 0u);
  EXPECT_EQ(mem_.backed_pages(), 1u);
  EXPECT_EQ(mmu_.mapped_pages(), 1u);
  EXPECT_EQ(mmu_.table_pages(), 4u) << "root, PDPT, PD, PT";
  EXPECT_EQ(stats_.ept_violations.load(), 1u);
  // Only that page: its neighbours fault in on their own.
  EXPECT_EQ(leaf(0x124000), 0u);
  EXPECT_EQ(leaf(0x122000), 0u);
  // A second violation on a mapped page (another vCPU raced to it) changes nothing.
  ASSERT_EQ(mmu_.handle_ept_violation(0x123000), Fault::kFixed);
  EXPECT_EQ(leaf(0x123000), e);
  EXPECT_EQ(mmu_.mapped_pages(), 1u);
  EXPECT_EQ(flushes_, 0u) << "mapping never needs a flush";
}

TEST_F(TdpMmuTest, WhatTheGuestWroteIsWhatTheLeafMaps) {
  const uint64_t v = 0x0123456789abcdefull;
  ASSERT_TRUE(mem_.write(0x200008, &v, 8));
  ASSERT_EQ(mmu_.handle_ept_violation(0x200008), Fault::kFixed);
  uint64_t seen = 0;
  std::memcpy(&seen, host_.frame(leaf(0x200000) & kAddrMask) + 8, 8);
  EXPECT_EQ(seen, v);
}

TEST_F(TdpMmuTest, AddressesOutsideRamAreLeftToDeviceEmulation) {
  for (uint64_t gpa : {0xfee00000ull, 0xfec00000ull, 64ull << 20, 1ull << 40}) {
    EXPECT_EQ(mmu_.handle_ept_violation(gpa), Fault::kMmio) << std::hex << gpa;
    EXPECT_EQ(leaf(gpa), 0u);
  }
  EXPECT_EQ(mmu_.mapped_pages(), 0u);
  EXPECT_EQ(mem_.backed_pages(), 0u);
}

TEST_F(TdpMmuTest, ZappingARangeDropsItsLeavesAndTablesWithOneFlush) {
  // 3 MiB from 2 MiB: one whole page table (2-4 MiB) and half of the next.
  for (uint64_t gpa = 2ull << 20; gpa < (5ull << 20); gpa += 4096) ASSERT_EQ(mmu_.handle_ept_violation(gpa), Fault::kFixed);
  ASSERT_EQ(mmu_.handle_ept_violation(0x1000), Fault::kFixed);
  EXPECT_EQ(mmu_.mapped_pages(), 769u);
  const uint64_t tables = mmu_.table_pages();
  EXPECT_EQ(tables, 6u) << "root, PDPT, PD and three page tables";
  const uint64_t frame = mem_.backing(3ull << 20, false);

  mmu_.zap_gfn_range((2ull << 20) >> 12, (4ull << 20) >> 12);
  EXPECT_EQ(flushes_, 1u);
  EXPECT_EQ(mmu_.mapped_pages(), 257u);
  EXPECT_EQ(mmu_.table_pages(), tables - 1) << "the page table wholly inside the range went too";
  unsigned present = 0;
  EXPECT_EQ(leaf(3ull << 20, &present), 0u);
  EXPECT_EQ(present, 2u) << "PML4E and PDPTE present, the PDE gone";
  EXPECT_NE(leaf(4ull << 20), 0u) << "outside the range";
  EXPECT_NE(leaf(0x1000), 0u);

  // The guest's memory stays: faulting back maps the same frame.
  ASSERT_EQ(mmu_.handle_ept_violation(3ull << 20), Fault::kFixed);
  EXPECT_EQ(leaf(3ull << 20) & kAddrMask, frame);
}

TEST_F(TdpMmuTest, ZappingPartOfATableKeepsTheTable) {
  for (uint64_t gpa = 0; gpa < 16 * 4096; gpa += 4096) ASSERT_EQ(mmu_.handle_ept_violation(gpa), Fault::kFixed);
  mmu_.zap_gfn_range(4, 8);
  EXPECT_EQ(mmu_.mapped_pages(), 12u);
  EXPECT_EQ(mmu_.table_pages(), 4u);
  for (uint64_t gfn = 0; gfn < 16; ++gfn) EXPECT_EQ(leaf(gfn << 12) != 0, gfn < 4 || gfn >= 8) << gfn;
}

TEST_F(TdpMmuTest, ZapAllKeepsOnlyTheRoot) {
  const uint64_t eptp = mmu_.eptp();
  for (uint64_t gpa : {0x0ull, 0x5000ull, 0x3fff000ull, 0x3000000ull}) {
    ASSERT_EQ(mmu_.handle_ept_violation(gpa), Fault::kFixed);
  }
  mmu_.zap_all();
  EXPECT_EQ(mmu_.eptp(), eptp);
  EXPECT_EQ(mmu_.mapped_pages(), 0u);
  EXPECT_EQ(mmu_.table_pages(), 1u);
  EXPECT_EQ(flushes_, 1u);
  EXPECT_EQ(leaf(0x5000), 0u);
}

TEST_F(TdpMmuTest, TheReverseMapNamesTheLeafOfEachFrame) {
  ASSERT_EQ(mmu_.handle_ept_violation(0x7000), Fault::kFixed);
  ASSERT_EQ(mmu_.handle_ept_violation(0x8000), Fault::kFixed);
  const uint64_t hpa = mem_.backing(0x7000, false);
  const std::vector<uint64_t> leaves = mmu_.leaves_mapping(hpa);
  ASSERT_EQ(leaves.size(), 1u);
  // The leaf's host-physical address holds the entry the walk found.
  uint64_t e = 0;
  std::memcpy(&e, host_.frame(leaves[0]) + (leaves[0] & 0xfff), 8);
  EXPECT_EQ(e, leaf(0x7000));
  EXPECT_TRUE(mmu_.leaves_mapping(mem_.backing(0x9000, true)).empty()) << "backed but never mapped";
  mmu_.zap_gfn_range(7, 8);
  EXPECT_TRUE(mmu_.leaves_mapping(hpa).empty());
  EXPECT_EQ(mmu_.leaves_mapping(mem_.backing(0x8000, false)).size(), 1u);
}

TEST_F(TdpMmuTest, ConcurrentViolationsMapEachPageOnce) {
  std::vector<std::thread> vcpus;
  for (unsigned t = 0; t < 4; ++t)
    vcpus.emplace_back([this, t] {
      // Every thread walks the same 512 pages, each from a different start.
      for (unsigned i = 0; i < 512; ++i) {
        const uint64_t gpa = (uint64_t((i + 128 * t) % 512) << 12) + (1ull << 21);
        EXPECT_EQ(mmu_.handle_ept_violation(gpa), Fault::kFixed);
      }
    });
  for (auto& v : vcpus) v.join();
  EXPECT_EQ(mmu_.mapped_pages(), 512u);
  EXPECT_EQ(mem_.backed_pages(), 512u);
  std::set<uint64_t> frames;
  for (unsigned i = 0; i < 512; ++i) frames.insert(leaf((uint64_t(i) << 12) + (1ull << 21)) & kAddrMask);
  EXPECT_EQ(frames.size(), 512u) << "every page its own frame";
}

class TdpMmuSmallHostTest : public TdpMmuTest {
 protected:
  TdpMmuSmallHostTest() : TdpMmuTest(64 * 4096) {}
};

TEST_F(TdpMmuSmallHostTest, HostMemoryRunningOutIsAnAnswerNotACrash) {
  Fault last = Fault::kFixed;
  unsigned mapped = 0;
  for (uint64_t gpa = 0; gpa < (1ull << 20) && last == Fault::kFixed; gpa += 4096) {
    last = mmu_.handle_ept_violation(gpa);
    if (last == Fault::kFixed) ++mapped;
  }
  EXPECT_EQ(last, Fault::kOutOfMemory);
  EXPECT_GT(mapped, 40u);
  EXPECT_EQ(mmu_.mapped_pages(), mapped);
}

}  // namespace
}  // namespace nestvm::test
