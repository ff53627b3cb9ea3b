// The LAPIC timer on a fake host TSC: one-shot, periodic, TSC-deadline, the divider, the
// current count, and the deadline the vCPU loop arms the preemption timer with.
#include "unit/hv/irqchip/irqchip_fixture.h"

namespace nestvm::test {
namespace {

using arch::ApicReg;

class LapicTimerTest : public IrqChipTest {
 protected:
  void SetUp() override { software_enable(1); }
  uint64_t deadline() { return chip.next_deadline(1); }
  void expire() { chip.expire_timers(1, fake_tsc()); }
};

TEST_F(LapicTimerTest, OneShotCountsDownThroughTheDivider) {
  apic_write(1, ApicReg::kTimerDivideConfig, 0x1);  // divide by 4
  apic_write(1, ApicReg::kLvtTimer, 0x31);
  EXPECT_EQ(deadline(), ~0ull);
  const uint64_t t0 = fake_tsc();
  apic_write(1, ApicReg::kTimerInitialCount, 250000);  // 1 ms at 1 GHz / 4
  EXPECT_EQ(deadline(), t0 + hv::ns_to_tsc(1000000));
  EXPECT_EQ(apic_read(1, ApicReg::kTimerInitialCount), 250000u);
  advance_ns(400000);
  const uint32_t count = apic_read(1, ApicReg::kTimerCurrentCount);
  EXPECT_NEAR(double(count), 150000.0, 10.0);
  expire();
  EXPECT_FALSE(irr_has(1, 0x31));
  advance_ns(600000);
  expire();
  EXPECT_TRUE(irr_has(1, 0x31));
  EXPECT_EQ(deadline(), ~0ull);
  EXPECT_EQ(apic_read(1, ApicReg::kTimerCurrentCount), 0u);
  // Zero stops a running count.
  apic_write(1, ApicReg::kTimerInitialCount, 1000);
  EXPECT_NE(deadline(), ~0ull);
  apic_write(1, ApicReg::kTimerInitialCount, 0);
  EXPECT_EQ(deadline(), ~0ull);
}

TEST_F(LapicTimerTest, MaskedTimerCountsButDoesNotInterrupt) {
  apic_write(1, ApicReg::kTimerDivideConfig, 0xb);  // divide by 1
  apic_write(1, ApicReg::kLvtTimer, 0x10032);
  apic_write(1, ApicReg::kTimerInitialCount, 5000);
  advance_ns(5000);
  expire();
  EXPECT_FALSE(irr_has(1, 0x32));
  EXPECT_EQ(deadline(), ~0ull);
}

TEST_F(LapicTimerTest, PeriodicReloadsOnItsGridAndDropsMissedPeriods) {
  apic_write(1, ApicReg::kTimerDivideConfig, 0xb);
  apic_write(1, ApicReg::kLvtTimer, 0x20033);
  const uint64_t t0 = fake_tsc();
  const uint64_t period = hv::ns_to_tsc(1000000);
  apic_write(1, ApicReg::kTimerInitialCount, 1000000);
  EXPECT_EQ(deadline(), t0 + period);
  advance_ns(1000000);
  expire();
  EXPECT_EQ(chip.acknowledge_interrupt(1), 0x33);
  EXPECT_EQ(deadline(), t0 + 2 * period);
  apic_write(1, ApicReg::kEoi, 0);
  advance_ns(3500000);  // three periods go by unseen
  expire();
  EXPECT_TRUE(irr_has(1, 0x33));
  EXPECT_EQ(deadline(), t0 + 5 * period);
  const uint32_t count = apic_read(1, ApicReg::kTimerCurrentCount);
  EXPECT_NEAR(double(count), 500000.0, 10.0);
  // Changing the mode disarms.
  apic_write(1, ApicReg::kLvtTimer, 0x33);
  EXPECT_EQ(deadline(), ~0ull);
  EXPECT_EQ(apic_read(1, ApicReg::kTimerInitialCount), 0u);
}

TEST_F(LapicTimerTest, PeriodicIsNeverFasterThanTheMinimumPeriod) {
  apic_write(1, ApicReg::kTimerDivideConfig, 0xb);
  apic_write(1, ApicReg::kLvtTimer, 0x20033);
  const uint64_t t0 = fake_tsc();
  apic_write(1, ApicReg::kTimerInitialCount, 10);
  EXPECT_EQ(deadline(), t0 + hv::ns_to_tsc(hv::Lapic::kMinPeriodNs));
}

TEST_F(LapicTimerTest, NewDividerScalesWhatIsLeft) {
  apic_write(1, ApicReg::kTimerDivideConfig, 0xb);  // by 1
  apic_write(1, ApicReg::kLvtTimer, 0x34);
  apic_write(1, ApicReg::kTimerInitialCount, 1000000);
  advance_ns(500000);
  apic_write(1, ApicReg::kTimerDivideConfig, 0x0);  // by 2: the 500000 left take 1 ms
  EXPECT_NEAR(double(deadline() - fake_tsc()), double(hv::ns_to_tsc(1000000)), double(hv::ns_to_tsc(10)));
  EXPECT_NEAR(double(apic_read(1, ApicReg::kTimerCurrentCount)), 500000.0, 10.0);
}

TEST_F(LapicTimerTest, TscDeadlineModeFiresAtTheGuestTsc) {
  uint64_t v = 0;
  // Outside TSC-deadline mode the MSR reads 0 and ignores writes.
  EXPECT_TRUE(chip.msr_write(1, 0x6e0, fake_tsc() + 100));
  EXPECT_TRUE(chip.msr_read(1, 0x6e0, v));
  EXPECT_EQ(v, 0u);
  EXPECT_EQ(deadline(), ~0ull);
  apic_write(1, ApicReg::kLvtTimer, 0x40035);
  EXPECT_EQ(apic_read(1, ApicReg::kLvtTimer), 0x40035u);
  // The guest's TSC runs ahead of the host's by L1's offset.
  vm.vcpu(1).core().state.msr.tsc_offset = 1000;
  const uint64_t guest_now = fake_tsc() + 1000;
  ASSERT_TRUE(chip.msr_write(1, 0x6e0, guest_now + 5000));
  EXPECT_TRUE(chip.msr_read(1, 0x6e0, v));
  EXPECT_EQ(v, guest_now + 5000);
  EXPECT_EQ(deadline(), fake_tsc() + 5000);
  apic_write(1, ApicReg::kTimerInitialCount, 100);  // ignored in this mode
  EXPECT_EQ(apic_read(1, ApicReg::kTimerInitialCount), 0u);
  EXPECT_EQ(apic_read(1, ApicReg::kTimerCurrentCount), 0u);
  g_fake_tsc += 4999;
  expire();
  EXPECT_FALSE(irr_has(1, 0x35));
  g_fake_tsc += 1;
  expire();
  EXPECT_TRUE(irr_has(1, 0x35));
  EXPECT_TRUE(chip.msr_read(1, 0x6e0, v));
  EXPECT_EQ(v, 0u);  // disarmed once it fired
  EXPECT_EQ(deadline(), ~0ull);
  // A deadline in the past fires at once; zero disarms.
  ASSERT_TRUE(chip.msr_write(1, 0x6e0, 1));
  EXPECT_EQ(deadline(), fake_tsc());
  ASSERT_TRUE(chip.msr_write(1, 0x6e0, 0));
  EXPECT_EQ(deadline(), ~0ull);
  // Leaving the mode disarms.
  ASSERT_TRUE(chip.msr_write(1, 0x6e0, fake_tsc() + 1000000));
  apic_write(1, ApicReg::kLvtTimer, 0x35);
  EXPECT_EQ(deadline(), ~0ull);
}

TEST_F(LapicTimerTest, X2apicTimerRegisters) {
  ASSERT_TRUE(enable_x2apic(1));
  ASSERT_TRUE(x2_write(1, ApicReg::kTimerDivideConfig, 0xb));
  ASSERT_TRUE(x2_write(1, ApicReg::kLvtTimer, 0x36));
  ASSERT_TRUE(x2_write(1, ApicReg::kTimerInitialCount, 2000));
  uint64_t v = 0;
  advance_ns(500);
  ASSERT_TRUE(x2_read(1, ApicReg::kTimerCurrentCount, v));
  EXPECT_NEAR(double(v), 1500.0, 5.0);
  EXPECT_FALSE(x2_write(1, ApicReg::kTimerCurrentCount, 5));
  advance_ns(1500);
  expire();
  EXPECT_TRUE(irr_has_x2(1, 0x36));
}

TEST_F(LapicTimerTest, InitResetStopsTheTimerAndKeepsTheMode) {
  ASSERT_TRUE(enable_x2apic(1));
  ASSERT_TRUE(x2_write(1, ApicReg::kLvtTimer, 0x36));
  ASSERT_TRUE(x2_write(1, ApicReg::kTimerInitialCount, 2000));
  chip.reset_vcpu(1, true);
  EXPECT_EQ(deadline(), ~0ull);
  EXPECT_TRUE(chip.lapic(1).x2apic_mode());
  uint64_t v = 0;
  ASSERT_TRUE(x2_read(1, ApicReg::kLvtTimer, v));
  EXPECT_EQ(v, 0x10000u);
  ASSERT_TRUE(x2_read(1, ApicReg::kSvr, v));
  EXPECT_EQ(v, 0xffu);
}

}  // namespace
}  // namespace nestvm::test
