// The 8254 on a fake host TSC: counting in modes 0, 2, 3 and 4, latches and read-back, BCD,
// access modes, counter 2's gate and OUT on port 0x61, and counter 0's IRQ0 through the PIC.
#include "unit/hv/irqchip/irqchip_fixture.h"

namespace nestvm::test {
namespace {

class PitTest : public IrqChipTest {
 protected:
  void out(uint16_t port, uint8_t v) { vm.io().pio_write(port, 1, v); }
  uint8_t in(uint16_t port) { return uint8_t(vm.io().pio_read(port, 1)); }
  static uint64_t ticks_to_tsc(uint64_t ticks) {
    return uint64_t(((unsigned __int128)ticks * hv::tsc_hz() + hv::Pit::kHz - 1) / hv::Pit::kHz);
  }
  void advance_ticks(uint64_t ticks) { g_fake_tsc += ticks_to_tsc(ticks); }
  void load(unsigned channel, uint16_t count) {
    out(uint16_t(0x40 + channel), uint8_t(count));
    out(uint16_t(0x40 + channel), uint8_t(count >> 8));
  }
  uint16_t latched(unsigned channel) {
    out(0x43, uint8_t(channel << 6));  // counter latch
    const uint8_t lo = in(uint16_t(0x40 + channel));
    return uint16_t(lo | (in(uint16_t(0x40 + channel)) << 8));
  }
  uint8_t status(unsigned channel) {
    out(0x43, uint8_t(0xe0 | (2u << channel)));  // read-back: status only
    return in(uint16_t(0x40 + channel));
  }
  void init_pic() {
    for (auto [port, v] : std::initializer_list<std::pair<uint16_t, uint8_t>>{
             {0x20, 0x11}, {0x21, 0x30}, {0x21, 0x04}, {0x21, 0x01}, {0xa0, 0x11}, {0xa1, 0x38}, {0xa1, 0x02},
             {0xa1, 0x01}, {0x21, 0xfe}, {0xa1, 0xff}})
      out(port, v);
  }
  void expire() { chip.expire_timers(0, fake_tsc()); }
};

TEST_F(PitTest, Mode2CountsDownAndReloads) {
  out(0x43, 0x34);  // counter 0, LSB then MSB, mode 2, binary
  load(0, 1000);
  advance_ticks(300);
  EXPECT_EQ(latched(0), 700);
  advance_ticks(800);
  EXPECT_EQ(latched(0), 900);
  // Unlatched word reads go LSB, MSB.
  const uint8_t lo = in(0x40), hi = in(0x40);
  EXPECT_EQ(lo | (hi << 8), 900);
}

TEST_F(PitTest, LatchHoldsTheCountUntilRead) {
  out(0x43, 0x34);
  load(0, 5000);
  advance_ticks(1000);
  out(0x43, 0x00);
  advance_ticks(1000);
  out(0x43, 0x00);  // a second latch before the read is ignored
  EXPECT_EQ(in(0x40), 4000 & 0xff);
  EXPECT_EQ(in(0x40), 4000 >> 8);
  EXPECT_EQ(latched(0), 3000);
}

TEST_F(PitTest, ReadBackLatchesStatusThenCount) {
  out(0x43, 0x34);
  EXPECT_EQ(status(0), 0xf4);  // OUT high, null count, word, mode 2
  load(0, 2000);
  advance_ticks(500);
  out(0x43, 0xc2);  // read-back: count and status of counter 0
  EXPECT_EQ(in(0x40), 0xb4);  // OUT high, count loaded
  EXPECT_EQ(in(0x40), 1500 & 0xff);
  EXPECT_EQ(in(0x40), 1500 >> 8);
}

TEST_F(PitTest, Mode0OutRisesAtTerminalCountAndIrq0FiresOnce) {
  init_pic();
  out(0x43, 0x30);
  EXPECT_EQ(status(0) & 0x80, 0x00);  // mode 0: OUT low from the control word
  const uint64_t t0 = fake_tsc();
  load(0, 500);
  EXPECT_EQ(chip.next_deadline(0), t0 + ticks_to_tsc(500));
  EXPECT_EQ(chip.next_deadline(1), ~0ull);  // the PIT is vCPU 0's to service
  advance_ticks(499);
  expire();
  EXPECT_FALSE(chip.pic().intr());
  EXPECT_EQ(status(0) & 0x80, 0x00);
  advance_ticks(1);
  expire();
  EXPECT_EQ(status(0) & 0x80, 0x80);
  EXPECT_TRUE(chip.pic().intr());
  EXPECT_EQ(chip.acknowledge_interrupt(0), 0x30);
  out(0x20, 0x20);
  EXPECT_EQ(chip.next_deadline(0), ~0ull);
  advance_ticks(70000);
  expire();
  EXPECT_FALSE(chip.pic().intr());
}

TEST_F(PitTest, Mode2InterruptsEveryPeriodWithoutReplayingMissedOnes) {
  init_pic();
  out(0x43, 0x34);
  const uint64_t t0 = fake_tsc();
  load(0, 1193);  // 1 ms
  advance_ticks(1193);
  expire();
  EXPECT_EQ(chip.acknowledge_interrupt(0), 0x30);
  out(0x20, 0x20);
  EXPECT_EQ(chip.next_deadline(0), t0 + ticks_to_tsc(2 * 1193));
  advance_ticks(5 * 1193 + 100);  // five periods later
  expire();
  EXPECT_EQ(chip.acknowledge_interrupt(0), 0x30);
  out(0x20, 0x20);
  EXPECT_FALSE(chip.pic().intr());
  EXPECT_EQ(chip.next_deadline(0), t0 + ticks_to_tsc(7 * 1193));
  // A new control word stops counter 0 until its count is written.
  out(0x43, 0x34);
  EXPECT_EQ(chip.next_deadline(0), ~0ull);
}

TEST_F(PitTest, Mode2PeriodHasAFloor) {
  out(0x43, 0x34);
  const uint64_t t0 = fake_tsc();
  load(0, 2);
  const uint64_t floor_ticks = (hv::Pit::kMinPeriodNs * hv::Pit::kHz + 999999999) / 1000000000;
  EXPECT_EQ(chip.next_deadline(0), t0 + ticks_to_tsc(floor_ticks));
}

TEST_F(PitTest, Mode3CountsByTwoAndOutIsASquareWave) {
  out(0x43, 0x36);
  load(0, 1000);
  advance_ticks(100);
  EXPECT_EQ(latched(0), 800);
  EXPECT_EQ(status(0) & 0x80, 0x80);  // first half: high
  advance_ticks(600);
  EXPECT_EQ(status(0) & 0x80, 0x00);  // second half: low
  advance_ticks(300);
  EXPECT_EQ(status(0) & 0x80, 0x80);  // the next period
}

TEST_F(PitTest, Mode4StrobesOnce) {
  init_pic();
  out(0x43, 0x38);
  load(0, 100);
  EXPECT_EQ(status(0) & 0x80, 0x80);
  advance_ticks(100);
  EXPECT_EQ(status(0) & 0x80, 0x00);  // the strobe at terminal count
  expire();
  EXPECT_TRUE(chip.pic().intr());
  EXPECT_EQ(chip.next_deadline(0), ~0ull);
  advance_ticks(1);
  EXPECT_EQ(status(0) & 0x80, 0x80);
}

TEST_F(PitTest, BcdCounting) {
  out(0x43, 0x31);  // counter 0, word, mode 0, BCD
  load(0, 0x1000);  // 1000 decimal
  advance_ticks(1);
  EXPECT_EQ(latched(0), 0x0999);
  advance_ticks(999);
  EXPECT_EQ(latched(0), 0x0000);
  advance_ticks(1);
  EXPECT_EQ(latched(0), 0x9999);  // wraps at 10000
}

TEST_F(PitTest, ByteAccessModes) {
  out(0x43, 0x90);  // counter 2, LSB only, mode 0
  out(0x42, 0x50);
  EXPECT_EQ(in(0x42), 0x50);
  EXPECT_EQ(in(0x42), 0x50);
  out(0x43, 0xa0);  // MSB only
  out(0x42, 0x02);
  EXPECT_EQ(in(0x42), 0x02);
  out(0x43, 0x80);  // latch counter 2 (MSB only: one byte)
  EXPECT_EQ(in(0x42), 0x02);
}

TEST_F(PitTest, Counter2GateAndOutOnPortB) {
  out(0x61, 0x00);
  out(0x43, 0xb0);  // counter 2, word, mode 0: what Linux's PIT calibration does
  load(2, 100);
  advance_ticks(50);
  EXPECT_EQ(latched(2), 100);  // gate low: no counting
  out(0x61, 0x01);
  advance_ticks(60);
  EXPECT_EQ(latched(2), 40);
  EXPECT_EQ(in(0x61) & 0x21, 0x01);  // gate high, OUT2 low
  out(0x61, 0x00);
  advance_ticks(100);
  EXPECT_EQ(latched(2), 40);  // paused
  out(0x61, 0x03);            // gate and speaker data
  advance_ticks(40);
  EXPECT_EQ(in(0x61) & 0x23, 0x23);  // OUT2 high at terminal count
  // Mode 2 restarts on the gate's rising edge.
  out(0x43, 0xb4);
  load(2, 300);
  advance_ticks(100);
  EXPECT_EQ(latched(2), 200);
  out(0x61, 0x00);
  out(0x61, 0x01);
  advance_ticks(10);
  EXPECT_EQ(latched(2), 290);
}

TEST_F(PitTest, RefreshBitToggles) {
  // Toggling every 15.085 us: four samples 7.5 us apart cannot all agree.
  unsigned ones = 0;
  for (int i = 0; i < 4; ++i) {
    ones += (in(0x61) >> 4) & 1;
    advance_ns(7500);
  }
  EXPECT_GT(ones, 0u);
  EXPECT_LT(ones, 4u);
}

}  // namespace
}  // namespace nestvm::test
