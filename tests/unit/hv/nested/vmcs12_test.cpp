// vmcs12's fixed, versioned layout in L1 memory and L0's cache of it.
#include <gtest/gtest.h>

#include <cstring>
#include <set>

#include "hv/guest_memory.h"
#include "hv/host_memory.h"
#include "hv/nested/vmcs12.h"

namespace nestvm::test {
namespace {

using namespace arch;
using hv::nested::Vmcs12;
namespace layout = hv::nested::vmcs12_layout;

TEST(Vmcs12, EveryFieldHasItsOwnSlotPastTheHeader) {
  ASSERT_LE(vmcs_fields().size(), Vmcs12::kMaxFields);
  std::set<unsigned> offsets;
  for (const VmcsFieldInfo& f : vmcs_fields()) {
    EXPECT_GE(f.offset, layout::kFieldsStart) << f.name;
    EXPECT_LE(f.offset + 8u, layout::kSize) << f.name;
    EXPECT_TRUE(offsets.insert(f.offset).second) << f.name;
  }
}

TEST(Vmcs12, PageLayoutIsHeaderThenFieldsAtTheirTableOffsets) {
  Vmcs12 v;
  v.abort = 7;
  v.launched = true;
  v.write(VmcsField::GUEST_RIP, 0x1122334455667788ull);
  v.write(VmcsField::VIRTUAL_PROCESSOR_ID, 0x12345);  // 16-bit: truncated
  uint8_t page[layout::kSize];
  v.to_page(page);
  uint32_t hdr[4];
  std::memcpy(hdr, page, 16);
  EXPECT_EQ(hdr[0], hv::nested::kVmcs12Revision);
  EXPECT_EQ(hdr[1], 7u);
  EXPECT_EQ(hdr[2], layout::kVersion);
  EXPECT_EQ(hdr[3], 1u);
  uint64_t rip = 0, vpid = 0;
  std::memcpy(&rip, page + vmcs_field_info(VmcsField::GUEST_RIP).offset, 8);
  std::memcpy(&vpid, page + vmcs_field_info(VmcsField::VIRTUAL_PROCESSOR_ID).offset, 8);
  EXPECT_EQ(rip, 0x1122334455667788ull);
  EXPECT_EQ(vpid, 0x2345u);

  Vmcs12 back;
  EXPECT_TRUE(back.from_page(page));
  EXPECT_TRUE(back.launched);
  EXPECT_EQ(back.abort, 7u);
  EXPECT_EQ(back.read(VmcsField::GUEST_RIP), rip);
  hdr[2] = layout::kVersion + 1;  // a layout this build does not know
  std::memcpy(page, hdr, 16);
  EXPECT_FALSE(back.from_page(page));
}

TEST(Vmcs12, DirtyFieldsTrackWritesAndLoads) {
  Vmcs12 v;
  EXPECT_FALSE(v.any_dirty());
  v.write(VmcsField::CR0_READ_SHADOW, 1);
  EXPECT_TRUE(v.dirty(VmcsField::CR0_READ_SHADOW));
  EXPECT_FALSE(v.dirty(VmcsField::CR4_READ_SHADOW));
  v.clear_dirty();
  EXPECT_FALSE(v.any_dirty());
  uint8_t page[layout::kSize];
  v.to_page(page);
  EXPECT_TRUE(v.from_page(page));
  EXPECT_TRUE(v.dirty(VmcsField::CR4_READ_SHADOW));  // everything after a load
}

TEST(Vmcs12, LoadAndStoreGoThroughGuestMemory) {
  hv::HostMemory host(16ull << 20);
  hv::GuestMemory mem(host);
  mem.add_slot(0, 1 << 20);
  Vmcs12 v;
  v.write(VmcsField::EPT_POINTER, 0x5e);
  ASSERT_TRUE(v.store(mem, 0x3000));
  Vmcs12 w;
  ASSERT_TRUE(w.load(mem, 0x3000));
  EXPECT_EQ(w.read(VmcsField::EPT_POINTER), 0x5eu);
  EXPECT_FALSE(w.store(mem, 2 << 20));  // not RAM
  EXPECT_FALSE(w.load(mem, 2 << 20));
}

}  // namespace
}  // namespace nestvm::test
