// The 8259A pair: Linux's initialization and probe, priorities and nesting, EOI commands, the
// cascade, spurious IRQ7/IRQ15, ELCR level triggering, auto-EOI, rotation, poll and special
// mask mode, and the INTA cycle as vCPU 0's LINT0 (ExtINT) sees it.
#include "unit/hv/irqchip/irqchip_fixture.h"

namespace nestvm::test {
namespace {

class PicTest : public IrqChipTest {
 protected:
  void out(uint16_t port, uint8_t v) { vm.io().pio_write(port, 1, v); }
  uint8_t in(uint16_t port) { return uint8_t(vm.io().pio_read(port, 1)); }
  // Linux's init_8259A (arch/x86/kernel/i8259.c), without auto-EOI unless asked.
  void init_like_linux(bool auto_eoi = false) {
    out(0x21, 0xff);
    out(0x20, 0x11);  // ICW1: edge, cascade, ICW4 follows
    out(0x21, 0x30);  // ICW2: IRQ0-7 at 0x30
    out(0x21, 0x04);  // ICW3: slave on IRQ2
    out(0x21, auto_eoi ? 0x03 : 0x01);  // ICW4: 8086 mode
    out(0xa0, 0x11);
    out(0xa1, 0x38);
    out(0xa1, 0x02);
    out(0xa1, 0x01);
    out(0x21, 0x00);
    out(0xa1, 0x00);
  }
  uint8_t isr(uint16_t cmd) {
    out(cmd, 0x0b);  // OCW3: read ISR
    const uint8_t v = in(cmd);
    out(cmd, 0x0a);  // back to IRR
    return v;
  }
  void pulse(unsigned irq) {
    chip.set_irq(irq, true);
    chip.set_irq(irq, false);
  }
};

TEST_F(PicTest, LinuxProbeReadsTheMaskBack) {
  out(0xa1, 0xff);
  out(0x21, 0xa5);
  EXPECT_EQ(in(0x21), 0xa5);
  EXPECT_EQ(in(0xa1), 0xff);
}

TEST_F(PicTest, Irq0AfterLinuxInitIsVector0x30UntilSpecificEoi) {
  init_like_linux();
  EXPECT_FALSE(chip.pic().intr());
  pulse(0);
  EXPECT_TRUE(chip.pic().intr());
  EXPECT_EQ(in(0x20), 0x01);  // IRR
  EXPECT_TRUE(chip.has_interrupt(0));   // the BSP's LINT0 is ExtINT
  EXPECT_FALSE(chip.has_interrupt(1));  // the AP's is masked
  EXPECT_EQ(chip.acknowledge_interrupt(0), 0x30);
  EXPECT_EQ(isr(0x20), 0x01);
  EXPECT_EQ(in(0x20), 0x00);
  EXPECT_FALSE(chip.pic().intr());
  out(0x20, 0x60);  // specific EOI, level 0 (Linux's mask_and_ack_8259A)
  EXPECT_EQ(isr(0x20), 0x00);
}

TEST_F(PicTest, MaskedRequestsWaitInTheIrr) {
  init_like_linux();
  out(0x21, 0x02);
  pulse(1);
  EXPECT_EQ(in(0x20), 0x02);
  EXPECT_FALSE(chip.pic().intr());
  out(0x21, 0x00);
  EXPECT_TRUE(chip.pic().intr());
  EXPECT_EQ(chip.pic().acknowledge(), 0x31);
}

TEST_F(PicTest, FullyNestedPriority) {
  init_like_linux();
  pulse(3);
  pulse(1);
  EXPECT_EQ(chip.pic().acknowledge(), 0x31);
  EXPECT_FALSE(chip.pic().intr());  // IRQ3 is below IRQ1 in service
  pulse(0);
  EXPECT_EQ(chip.pic().acknowledge(), 0x30);  // IRQ0 nests
  out(0x20, 0x20);                            // non-specific EOI: IRQ0
  EXPECT_EQ(isr(0x20), 0x02);
  out(0x20, 0x20);
  EXPECT_EQ(chip.pic().acknowledge(), 0x33);
}

TEST_F(PicTest, SlaveInterruptsThroughTheCascade) {
  init_like_linux();
  pulse(10);
  EXPECT_TRUE(chip.pic().intr());
  EXPECT_EQ(chip.pic().acknowledge(), 0x3a);
  EXPECT_EQ(isr(0x20), 0x04);
  EXPECT_EQ(isr(0xa0), 0x04);
  out(0xa0, 0x62);  // Linux: specific EOI to the slave, then to the master's IRQ2
  out(0x20, 0x62);
  EXPECT_EQ(isr(0x20), 0x00);
  EXPECT_EQ(isr(0xa0), 0x00);
  chip.set_irq(2, true);  // GSI 2 is the cascade: no device drives it
  EXPECT_FALSE(chip.pic().intr());
}

TEST_F(PicTest, SpuriousIrq7AndIrq15) {
  init_like_linux();
  EXPECT_EQ(chip.pic().acknowledge(), 0x37);  // nothing requested
  EXPECT_EQ(isr(0x20), 0x00);                 // not in service
  // A slave request that vanishes before the INTA: IRQ15 of the slave, the master's IRQ2 in
  // service.
  pulse(12);
  out(0xa1, 0x10);
  EXPECT_EQ(chip.pic().acknowledge(), 0x3f);
  EXPECT_EQ(isr(0x20), 0x04);
  EXPECT_EQ(isr(0xa0), 0x00);
}

TEST_F(PicTest, ElcrMakesIrqsLevelTriggered) {
  init_like_linux();
  out(0x4d0, 0xff);
  EXPECT_EQ(in(0x4d0), 0xf8);  // IRQ0-2 are edge only
  out(0x4d1, 0xff);
  EXPECT_EQ(in(0x4d1), 0xde);  // IRQ8 and IRQ13 too
  chip.set_irq(9, true);
  EXPECT_EQ(chip.pic().acknowledge(), 0x39);
  EXPECT_EQ(in(0xa0), 0x02);  // a level request stays in the IRR while asserted
  out(0xa0, 0x20);
  out(0x20, 0x20);
  EXPECT_TRUE(chip.pic().intr());  // still asserted: requested again
  chip.set_irq(9, false);
  EXPECT_EQ(in(0xa0), 0x00);
  // The master latched the cascade's edge: its INTA finds nothing on the slave (IRQ15).
  EXPECT_TRUE(chip.pic().intr());
  EXPECT_EQ(chip.pic().acknowledge(), 0x3f);
  out(0x20, 0x20);
  EXPECT_FALSE(chip.pic().intr());
}

TEST_F(PicTest, EdgeNeedsANewRisingEdge) {
  init_like_linux();
  chip.set_irq(4, true);
  EXPECT_EQ(chip.pic().acknowledge(), 0x34);
  out(0x20, 0x20);
  chip.set_irq(4, true);  // held high: no new edge
  EXPECT_FALSE(chip.pic().intr());
  chip.set_irq(4, false);
  chip.set_irq(4, true);
  EXPECT_TRUE(chip.pic().intr());
}

TEST_F(PicTest, AutoEoiLeavesNothingInService) {
  init_like_linux(true);
  pulse(5);
  EXPECT_EQ(chip.pic().acknowledge(), 0x35);
  EXPECT_EQ(isr(0x20), 0x00);
  pulse(6);
  EXPECT_TRUE(chip.pic().intr());  // no EOI needed
}

TEST_F(PicTest, RotationCommands) {
  init_like_linux();
  // Set priority: IRQ4 lowest, so IRQ5 is the highest.
  out(0x20, 0xc4);
  pulse(1);
  pulse(6);
  EXPECT_EQ(chip.pic().acknowledge(), 0x36);
  // Rotate on non-specific EOI: IRQ6 retired and made the lowest; IRQ7 is now the highest.
  out(0x20, 0xa0);
  EXPECT_EQ(isr(0x20), 0x00);
  pulse(7);
  EXPECT_EQ(chip.pic().acknowledge(), 0x37);
  out(0x20, 0x67);
  EXPECT_EQ(chip.pic().acknowledge(), 0x31);
  // Rotate on specific EOI of IRQ1: IRQ2 becomes the highest.
  out(0x20, 0xe1);
  pulse(0);
  pulse(3);
  EXPECT_EQ(chip.pic().acknowledge(), 0x33);
}

TEST_F(PicTest, PollCommandAcknowledges) {
  init_like_linux();
  out(0x21, 0xff);  // masked requests are not polled
  pulse(3);
  out(0x20, 0x0c);  // OCW3: poll
  EXPECT_EQ(in(0x20), 0x00);
  out(0x21, 0x00);
  out(0x20, 0x0c);
  EXPECT_EQ(in(0x20), 0x83);
  EXPECT_EQ(isr(0x20), 0x08);
  EXPECT_EQ(in(0x20), 0x00);  // the poll mode lasted one read: IRR again
}

TEST_F(PicTest, SpecialMaskModeLetsLowerLevelsIn) {
  init_like_linux();
  pulse(3);
  EXPECT_EQ(chip.pic().acknowledge(), 0x33);
  pulse(5);
  EXPECT_FALSE(chip.pic().intr());  // blocked by IRQ3 in service
  out(0x21, 0x08);                  // mask IRQ3
  out(0x20, 0x68);                  // OCW3: set special mask mode
  EXPECT_TRUE(chip.pic().intr());
  EXPECT_EQ(chip.pic().acknowledge(), 0x35);
  out(0x20, 0x48);  // reset special mask mode
}

TEST_F(PicTest, Icw1ResetsMaskAndServiceState) {
  init_like_linux();
  out(0x21, 0x58);
  pulse(1);
  EXPECT_EQ(chip.pic().acknowledge(), 0x31);
  out(0x20, 0x11);
  EXPECT_EQ(in(0x21), 0x00);  // IMR cleared
  out(0x21, 0x40);            // ICW2
  out(0x21, 0x04);
  out(0x21, 0x01);
  EXPECT_EQ(isr(0x20), 0x00);
  pulse(1);
  EXPECT_EQ(chip.pic().acknowledge(), 0x41);
}

}  // namespace
}  // namespace nestvm::test
