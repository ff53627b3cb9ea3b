// The I/O APIC: its register window, edge and level pins with remote IRR and EOI, masking,
// destinations, and the PC routing of ISA IRQs and GSIs through PcIrqChip::set_irq.
#include "unit/hv/irqchip/irqchip_fixture.h"

namespace nestvm::test {
namespace {

using arch::ApicReg;

class IoapicTest : public IrqChipTest {
 protected:
  void SetUp() override {
    software_enable(0);
    software_enable(1);
    vm.io().pio_write(0x21, 1, 0xff);  // the PIC masked, as an OS using the I/O APIC leaves it
    vm.io().pio_write(0xa1, 1, 0xff);
  }
  uint32_t reg_read(unsigned index) {
    vm.io().mmio_write(0xfec00000, 4, index);
    return uint32_t(vm.io().mmio_read(0xfec00010, 4));
  }
  void reg_write(unsigned index, uint32_t value) {
    vm.io().mmio_write(0xfec00000, 4, index);
    vm.io().mmio_write(0xfec00010, 4, value);
  }
  void route(unsigned pin, uint32_t low, uint8_t dest) {
    reg_write(0x11 + 2 * pin, uint32_t(dest) << 24);
    reg_write(0x10 + 2 * pin, low);
  }
};

constexpr uint32_t kLevel = 1u << 15, kMasked = 1u << 16, kLogical = 1u << 11, kRemoteIrr = 1u << 14;

TEST_F(IoapicTest, RegistersAfterReset) {
  EXPECT_EQ(reg_read(0x01), 0x00170011u);  // 24 entries, version 0x11
  EXPECT_EQ(reg_read(0x00), 0u);
  reg_write(0x00, 0x0a000000);
  EXPECT_EQ(reg_read(0x00), 0x0a000000u);
  EXPECT_EQ(reg_read(0x02), 0x0a000000u);
  for (unsigned pin = 0; pin < 24; ++pin) EXPECT_EQ(reg_read(0x10 + 2 * pin), kMasked) << pin;
  EXPECT_EQ(reg_read(0x10 + 2 * 24), 0xffffffffu);  // past the table
  // Software's bits stick; delivery status and remote IRR are the I/O APIC's; 55:32 reserved.
  route(5, 0x1ffff, 0);
  reg_write(0x11 + 10, 0xffffffff);
  EXPECT_EQ(reg_read(0x10 + 10), 0x1afffu);
  EXPECT_EQ(reg_read(0x11 + 10), 0xff000000u);
  EXPECT_EQ(vm.io().mmio_read(0xfec00000, 4), 0x1bu);  // IOREGSEL reads back
}

TEST_F(IoapicTest, EdgePinsSendOnRisingEdgesOnly) {
  route(4, 0x34, 1);
  chip.set_irq(4, true);
  EXPECT_TRUE(irr_has(1, 0x34));
  EXPECT_FALSE(irr_has(0, 0x34));
  EXPECT_FALSE(tmr_has(1, 0x34));
  EXPECT_EQ(chip.acknowledge_interrupt(1), 0x34);
  apic_write(1, ApicReg::kEoi, 0);
  chip.set_irq(4, true);  // still high: no new edge
  EXPECT_FALSE(irr_has(1, 0x34));
  chip.set_irq(4, false);
  chip.set_irq(4, true);
  EXPECT_TRUE(irr_has(1, 0x34));
}

TEST_F(IoapicTest, MaskedEdgeIsLost) {
  route(4, 0x34 | kMasked, 1);
  chip.set_irq(4, true);
  chip.set_irq(4, false);
  route(4, 0x34, 1);
  EXPECT_FALSE(irr_has(1, 0x34));
}

TEST_F(IoapicTest, LevelPinsWaitForTheEoiAndResendWhileAsserted) {
  route(10, 0x3a | kLevel, 0);
  chip.set_irq(10, true);
  EXPECT_TRUE(irr_has(0, 0x3a));
  EXPECT_TRUE(tmr_has(0, 0x3a));
  EXPECT_TRUE(reg_read(0x10 + 20) & kRemoteIrr);
  EXPECT_EQ(chip.acknowledge_interrupt(0), 0x3a);
  chip.set_irq(10, true);  // remote IRR holds it back
  EXPECT_FALSE(irr_has(0, 0x3a));
  apic_write(0, ApicReg::kEoi, 0);  // still asserted: sent again
  EXPECT_TRUE(irr_has(0, 0x3a));
  EXPECT_TRUE(reg_read(0x10 + 20) & kRemoteIrr);
  EXPECT_EQ(chip.acknowledge_interrupt(0), 0x3a);
  chip.set_irq(10, false);
  apic_write(0, ApicReg::kEoi, 0);
  EXPECT_FALSE(irr_has(0, 0x3a));
  EXPECT_FALSE(reg_read(0x10 + 20) & kRemoteIrr);
}

TEST_F(IoapicTest, UnmaskingAnAssertedLevelPinSends) {
  route(11, 0x3b | kLevel | kMasked, 1);
  chip.set_irq(11, true);
  EXPECT_FALSE(irr_has(1, 0x3b));
  route(11, 0x3b | kLevel, 1);
  EXPECT_TRUE(irr_has(1, 0x3b));
}

TEST_F(IoapicTest, NoTargetLeavesRemoteIrrClear) {
  route(12, 0x3c | kLevel, 7);
  chip.set_irq(12, true);
  EXPECT_FALSE(reg_read(0x10 + 24) & kRemoteIrr);
}

TEST_F(IoapicTest, LogicalAndLowestPriorityDestinations) {
  apic_write(0, ApicReg::kLdr, 0x01000000);
  apic_write(1, ApicReg::kLdr, 0x02000000);
  route(5, 0x35 | kLogical, 0x02);
  chip.set_irq(5, true);
  EXPECT_TRUE(irr_has(1, 0x35));
  EXPECT_FALSE(irr_has(0, 0x35));
  route(6, 0x36 | kLogical | (1u << 8), 0x03);  // lowest priority among both
  chip.set_irq(6, true);
  EXPECT_NE(irr_has(0, 0x36), irr_has(1, 0x36));
}

TEST_F(IoapicTest, NmiDeliveryMode) {
  route(7, 0x00 | (4u << 8), 1);
  chip.set_irq(7, true);
  EXPECT_TRUE(chip.has_nmi(1));
  EXPECT_FALSE(chip.has_nmi(0));
}

TEST_F(IoapicTest, IsaIrq0ReachesPin2AndGsisAboveFifteenOnlyTheIoapic) {
  route(2, 0x30, 0);
  route(0, 0x31, 0);
  chip.set_irq(0, true);
  EXPECT_TRUE(irr_has(0, 0x30));
  EXPECT_FALSE(irr_has(0, 0x31));
  chip.set_irq(0, false);
  route(20, 0x44 | kLevel, 1);
  chip.set_irq(20, true);
  EXPECT_TRUE(irr_has(1, 0x44));
  EXPECT_FALSE(chip.pic().intr());
}

}  // namespace
}  // namespace nestvm::test
