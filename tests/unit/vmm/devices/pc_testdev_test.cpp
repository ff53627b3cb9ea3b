// pc-testdev through its ports and memory: the scratch register at 0xe0 and 0xe8 with QEMU's
// access splitting, the interrupt-line ports, and the 64 KiB scratch MMIO.
#include "vmm/devices/pc_testdev.h"

#include "unit/vmm/devices/device_test.h"

namespace nestvm::test {
namespace {

using vmm::PcTestDev;

class PcTestDevTest : public DeviceTest {
 protected:
  PcTestDev dev{vm};
};

TEST_F(PcTestDevTest, ScratchRegisterAtAnyAlignedWidth) {
  out(0xe0, 0x12345678, 4);
  EXPECT_EQ(in(0xe0, 4), 0x12345678u);
  EXPECT_EQ(in(0xe1, 1), 0x56u);
  EXPECT_EQ(in(0xe2, 2), 0x1234u);
  out(0xe3, 0xab, 1);
  EXPECT_EQ(in(0xe0, 4), 0xab345678u);
  out(0xe2, 0xcdef, 2);
  EXPECT_EQ(in(0xe0, 4), 0xcdef5678u);
  // The byte-implemented window at 0xe8 is the same register.
  EXPECT_EQ(in(0xe8, 4), 0xcdef5678u);
  out(0xe9, 0x00, 1);
  EXPECT_EQ(in(0xe0, 4), 0xcdef0078u);
}

TEST_F(PcTestDevTest, UnalignedAccessesSplitAsQemusMemoryCore) {
  out(0xe0, 0x11223344, 4);
  // A word at 0xe1 is two byte accesses: bytes 1 and 2.
  EXPECT_EQ(in(0xe1, 2), 0x2233u);
  out(0xe1, 0xaabb, 2);
  EXPECT_EQ(in(0xe0, 4), 0x11aabb44u);
  // A dword at 0xe2 is a word here and a word at the flush-page port, which reads 0.
  EXPECT_EQ(in(0xe2, 4), 0x000011aau);
}

TEST_F(PcTestDevTest, FlushPageReadsZero) {
  out(0xe4, 0x1000, 4);
  EXPECT_EQ(in(0xe4, 4), 0u);
}

TEST_F(PcTestDevTest, IrqLinePortsDriveTheLines) {
  out(0x2000 + 14, 1);
  EXPECT_TRUE(irq.level(14));
  out(0x2000 + 14, 0);
  EXPECT_FALSE(irq.level(14));
  out(0x2000 + 17, 0x80);
  EXPECT_TRUE(irq.level(17)) << "any nonzero byte raises; GSIs above 15 too";
  // The region is byte-wide: a word write sets two lines.
  out(0x2000 + 4, 0x0001, 2);
  EXPECT_TRUE(irq.level(4));
  EXPECT_FALSE(irq.level(5));
  EXPECT_EQ(in(0x2000 + 17), 0u) << "reads 0";
}

TEST_F(PcTestDevTest, IomemIsScratchMemory) {
  mmio_out(PcTestDev::kIomem + 0x100, 0x1122334455667788ull, 8);
  EXPECT_EQ(mmio_in(PcTestDev::kIomem + 0x100, 8), 0x1122334455667788ull);
  EXPECT_EQ(mmio_in(PcTestDev::kIomem + 0x104, 4), 0x11223344u);
  EXPECT_EQ(mmio_in(PcTestDev::kIomem + 0x101, 1), 0x77u);
  mmio_out(PcTestDev::kIomem + 0xffff, 0x5a, 1);
  EXPECT_EQ(mmio_in(PcTestDev::kIomem + 0xffff, 1), 0x5au);
}

}  // namespace
}  // namespace nestvm::test
