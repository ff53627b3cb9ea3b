// EPT02 construction on its own (hv/mmu/nested_ept.h): EPT12 written in L1 memory, violations
// from L2 resolved into composed 4 KiB leaves with the intersection of permissions, EPT12
// violations and misconfigurations with hardware's qualification, A/D flags, roots cached by
// EPTP, INVEPT and host-frame invalidation through the reverse map.
#include <gtest/gtest.h>

#include "arch/vmx.h"
#include "hv/guest_memory.h"
#include "hv/host_memory.h"
#include "hv/mmu/nested_ept.h"

namespace nestvm::test {
namespace {

using namespace arch;
using hv::NestedEpt;
namespace q = exit_qual::ept;

constexpr uint64_t kCap = ept_vpid_cap::kExecuteOnly | ept_vpid_cap::kPageWalk4 | ept_vpid_cap::kMemTypeWb |
                          ept_vpid_cap::kPde2M | ept_vpid_cap::kPdpte1G | ept_vpid_cap::kAccessedDirty;
constexpr uint64_t kPml4 = 0x10000, kPdpt = 0x11000, kPd = 0x12000, kPt = 0x13000;
constexpr uint64_t kWb = 6ull << 3;
constexpr uint64_t kEptp12 = kPml4 | eptp::kMemTypeWb | (3u << eptp::kWalkLengthShift);
// What the silicon reports for a data read/write/fetch of a linear address's translation.
constexpr uint64_t kReadQual = q::kRead | q::kGlaValid | q::kGlaTranslation;
constexpr uint64_t kWriteQual = q::kWrite | q::kGlaValid | q::kGlaTranslation;
constexpr uint64_t kFetchQual = q::kFetch | q::kGlaValid | q::kGlaTranslation;

class NestedEptTest : public ::testing::Test {
 protected:
  NestedEptTest() : host(64ull << 20), mem(host), ept(host, mem, stats, kCap, 39, [this](uint64_t e) { flushed.push_back(e); }) {
    mem.add_slot(0, 16ull << 20);
    w(kPml4, kPdpt | 7);
    w(kPdpt, kPd | 7);
    w(kPd, kPt | 7);
  }
  void w(uint64_t gpa, uint64_t v) { ASSERT_TRUE(mem.write(gpa, &v, 8)); }
  uint64_t r(uint64_t gpa) {
    uint64_t v = 0;
    EXPECT_TRUE(mem.read(gpa, &v, 8));
    return v;
  }
  // The EPT02 leaf for l2_gpa in the root of eptp02 (0 if none).
  uint64_t leaf02(uint64_t eptp02, uint64_t l2_gpa) {
    uint64_t t = eptp02 & ~0xfffull;
    for (int level = 4; level >= 1; --level) {
      const uint64_t e = reinterpret_cast<uint64_t*>(host.frame(t))[(l2_gpa >> (12 + 9 * (level - 1))) & 0x1ff];
      if (level == 1 || !(e & 7)) return level == 1 ? e : 0;
      t = e & 0x000ffffffffff000ull;
    }
    return 0;
  }

  hv::HostMemory host;
  hv::GuestMemory mem;
  hv::MmuStats stats;
  NestedEpt ept;
  std::vector<uint64_t> flushed;
};

TEST_F(NestedEptTest, ComposesLeafWithIntersectionOfPermissions) {
  w(kPt + 8 * 5, 0x400000 | ept::kRead | ept::kExec | kWb);  // L2 page 5 -> L1 0x400000, R-X
  const uint64_t eptp02 = ept.eptp02(kEptp12);
  ASSERT_NE(eptp02, 0u);
  const NestedEpt::Fault f = ept.handle_violation(kEptp12, 0x5123, kReadQual);
  ASSERT_EQ(f.kind, NestedEpt::Fault::Kind::kFixed);
  const uint64_t e = leaf02(eptp02, 0x5000);
  EXPECT_EQ(e & 7, ept::kRead | ept::kExec);
  EXPECT_EQ(e & 0x000ffffffffff000ull, mem.backing(0x400000));
  EXPECT_EQ(ept.mapped_pages(), 1u);
  EXPECT_EQ(ept.leaves_mapping(mem.backing(0x400000)).size(), 1u);
  EXPECT_EQ(stats.ept02_mapped_pages.load(), 1u);
}

TEST_F(NestedEptTest, NotPresentIsAViolationForL1) {
  const NestedEpt::Fault f = ept.handle_violation(kEptp12, 0x9000, kWriteQual);
  EXPECT_EQ(f.kind, NestedEpt::Fault::Kind::kViolation);
  EXPECT_EQ(f.qualification, kWriteQual);  // bits 5:3 zero: nothing allowed
}

TEST_F(NestedEptTest, WriteToReadExecutePageReportsWhatEpt12Allowed) {
  w(kPt + 8 * 7, 0x407000 | ept::kRead | ept::kExec | kWb);
  const NestedEpt::Fault f = ept.handle_violation(kEptp12, 0x7000, kWriteQual);
  EXPECT_EQ(f.kind, NestedEpt::Fault::Kind::kViolation);
  EXPECT_EQ(f.qualification, kWriteQual | q::kReadable | q::kExecutable);
}

TEST_F(NestedEptTest, FetchFromNonExecutablePage) {
  w(kPt + 8 * 7, 0x407000 | ept::kRead | ept::kWrite | kWb);
  const NestedEpt::Fault f = ept.handle_violation(kEptp12, 0x7000, kFetchQual);
  EXPECT_EQ(f.kind, NestedEpt::Fault::Kind::kViolation);
  EXPECT_EQ(f.qualification, kFetchQual | q::kReadable | q::kWritable);
}

TEST_F(NestedEptTest, MisconfigurationsForL1) {
  const uint64_t bad[] = {
      0x401000 | ept::kWrite | kWb,                 // write without read
      0x401000 | ept::kRwxMask | (2ull << 3),       // reserved memory type
      0x401000 | ept::kRwxMask | kWb | (1ull << 45),  // above MAXPHYADDR (39)
  };
  for (uint64_t e : bad) {
    w(kPt + 8 * 1, e);
    EXPECT_EQ(ept.handle_violation(kEptp12, 0x1000, kReadQual).kind, NestedEpt::Fault::Kind::kMisconfig) << std::hex << e;
  }
  // Bit 5 of a non-leaf entry is reserved; so is bit 7 of a PML4E.
  w(kPt + 8 * 1, 0x401000 | ept::kRwxMask | kWb);
  w(kPd, kPt | 7 | (1ull << 5));
  EXPECT_EQ(ept.handle_violation(kEptp12, 0x1000, kReadQual).kind, NestedEpt::Fault::Kind::kMisconfig);
  w(kPd, kPt | 7);
  w(kPml4, kPdpt | 7 | ept::kLargePage);
  EXPECT_EQ(ept.handle_violation(kEptp12, 0x1000, kReadQual).kind, NestedEpt::Fault::Kind::kMisconfig);
  w(kPml4, kPdpt | 7);
  EXPECT_EQ(ept.handle_violation(kEptp12, 0x1000, kReadQual).kind, NestedEpt::Fault::Kind::kFixed);
}

TEST_F(NestedEptTest, LargePagesOfEpt12BecomeSmallLeaves) {
  w(kPd + 8 * 1, 0x600000 | ept::kRwxMask | kWb | ept::kLargePage);  // L2 [2M, 4M) -> L1 6M
  const uint64_t eptp02 = ept.eptp02(kEptp12);
  ASSERT_EQ(ept.handle_violation(kEptp12, 0x234567, kWriteQual).kind, NestedEpt::Fault::Kind::kFixed);
  EXPECT_EQ(leaf02(eptp02, 0x234000) & 0x000ffffffffff000ull, mem.backing(0x634000));
}

TEST_F(NestedEptTest, AccessedAndDirtyFlagsWhenL1EnablesThem) {
  const uint64_t eptp_ad = kEptp12 | eptp::kAdEnable;
  w(kPt + 8 * 3, 0x403000 | ept::kRwxMask | kWb);
  const uint64_t eptp02 = ept.eptp02(eptp_ad);
  ASSERT_EQ(ept.handle_violation(eptp_ad, 0x3000, kReadQual).kind, NestedEpt::Fault::Kind::kFixed);
  EXPECT_TRUE(r(kPml4) & ept::kAccessed);
  EXPECT_TRUE(r(kPt + 8 * 3) & ept::kAccessed);
  EXPECT_FALSE(r(kPt + 8 * 3) & ept::kDirty);
  // Not dirty yet: EPT02 withholds write so that the first write comes back to set it.
  EXPECT_EQ(leaf02(eptp02, 0x3000) & 7, ept::kRead | ept::kExec);
  ASSERT_EQ(ept.handle_violation(eptp_ad, 0x3000, kWriteQual).kind, NestedEpt::Fault::Kind::kFixed);
  EXPECT_TRUE(r(kPt + 8 * 3) & ept::kDirty);
  EXPECT_EQ(leaf02(eptp02, 0x3000) & 7, ept::kRwxMask);
  EXPECT_FALSE(flushed.empty());  // the leaf gained write: the old one may be cached
  // Without A/D in the EPTP, nothing is set.
  w(kPt + 8 * 4, 0x404000 | ept::kRwxMask | kWb);
  w(kPt + 8 * 3, r(kPt + 8 * 3) & ~(ept::kAccessed | ept::kDirty));
  ASSERT_EQ(ept.handle_violation(kEptp12, 0x4000, kWriteQual).kind, NestedEpt::Fault::Kind::kFixed);
  EXPECT_FALSE(r(kPt + 8 * 4) & ept::kAccessed);
}

TEST_F(NestedEptTest, PagingStructureAccessIsAWriteWithAd) {
  // An L2 page-walk read the silicon reports as a read (EPT02 has A/D off) is a write for an
  // EPT12 with A/D on: on a read-only page it is a violation with bits 0 and 1 set.
  const uint64_t eptp_ad = kEptp12 | eptp::kAdEnable;
  w(kPt + 8 * 2, 0x402000 | ept::kRead | kWb);
  const NestedEpt::Fault f = ept.handle_violation(eptp_ad, 0x2000, q::kRead | q::kGlaValid);
  EXPECT_EQ(f.kind, NestedEpt::Fault::Kind::kViolation);
  EXPECT_EQ(f.qualification, q::kRead | q::kWrite | q::kGlaValid | q::kReadable);
}

TEST_F(NestedEptTest, RootsCachedByEptpAndDroppedByInvept) {
  w(kPt, 0x400000 | ept::kRwxMask | kWb);
  const uint64_t a = ept.eptp02(kEptp12);
  ASSERT_EQ(ept.handle_violation(kEptp12, 0x0, kReadQual).kind, NestedEpt::Fault::Kind::kFixed);
  // A second EPT12 (another L2) has a root of its own; the first survives the switch.
  const uint64_t other = 0x20000 | eptp::kMemTypeWb | (3u << eptp::kWalkLengthShift);
  const uint64_t b = ept.eptp02(other);
  EXPECT_NE(a, b);
  EXPECT_EQ(ept.roots(), 2u);
  EXPECT_EQ(ept.eptp02(kEptp12), a);
  EXPECT_NE(leaf02(a, 0), 0u);
  const uint64_t tables = stats.ept02_table_pages.load();
  ept.invalidate(kEptp12);  // single-context: only that EP4TA
  EXPECT_EQ(ept.roots(), 1u);
  EXPECT_EQ(ept.mapped_pages(), 0u);
  EXPECT_LT(stats.ept02_table_pages.load(), tables);
  EXPECT_FALSE(flushed.empty());
  ept.invalidate_all();
  EXPECT_EQ(ept.roots(), 0u);
  EXPECT_EQ(stats.ept02_roots.load(), 0u);
  EXPECT_EQ(stats.ept02_table_pages.load(), 0u);
}

TEST_F(NestedEptTest, HostFrameZappedInEveryRoot) {
  // Two EPT12s mapping the same L1 page: L0 taking its host frame back reaches both leaves.
  w(kPt, 0x400000 | ept::kRwxMask | kWb);
  const uint64_t other = kPml4 | eptp::kMemTypeWb | (3u << eptp::kWalkLengthShift) | eptp::kAdEnable;
  const uint64_t a = ept.eptp02(kEptp12), b = ept.eptp02(other);
  ASSERT_EQ(ept.handle_violation(kEptp12, 0, kReadQual).kind, NestedEpt::Fault::Kind::kFixed);
  ASSERT_EQ(ept.handle_violation(other, 0, kReadQual).kind, NestedEpt::Fault::Kind::kFixed);
  const uint64_t hpa = mem.backing(0x400000);
  EXPECT_EQ(ept.leaves_mapping(hpa).size(), 2u);
  ept.zap_host_frame(hpa);
  EXPECT_EQ(ept.leaves_mapping(hpa).size(), 0u);
  EXPECT_EQ(leaf02(a, 0), 0u);
  EXPECT_EQ(leaf02(b, 0), 0u);
  EXPECT_EQ(ept.mapped_pages(), 0u);
}

TEST_F(NestedEptTest, Ept12MappingDeviceMemory) {
  w(kPt + 8 * 6, 0xfee00000ull | ept::kRwxMask | kWb);  // not RAM in L1
  const NestedEpt::Fault f = ept.handle_violation(kEptp12, 0x6010, kReadQual);
  EXPECT_EQ(f.kind, NestedEpt::Fault::Kind::kMmio);
  EXPECT_EQ(f.l1_gpa, 0xfee00010u);
}

}  // namespace
}  // namespace nestvm::test
