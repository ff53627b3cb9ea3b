// The ACPI PM timer's rate and width, and the PM1 event and control registers: SCI_EN,
// write-1-to-clear status, and power-off through SLP_TYP/SLP_EN.
#include "vmm/devices/pm_timer.h"

#include <thread>

#include "unit/vmm/devices/device_test.h"

namespace nestvm::test {
namespace {

using namespace vmm::acpi_pm;

class PmTimerTest : public DeviceTest {
 protected:
  vmm::PmTimer timer{vm};
  vmm::AcpiPm1 pm1{vm, timer};
};

TEST_F(PmTimerTest, CountsAt3579545HzIn24Bits) {
  const uint32_t a = in(kPmTmr, 4);
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const uint32_t b = in(kPmTmr, 4);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const uint32_t ticks = (b - a) & kTimerMask;
  EXPECT_LT(a | b, 1u << 24) << "a 24-bit counter";
  EXPECT_GT(ticks, uint32_t(kTimerHz * secs * 0.8));
  EXPECT_LT(ticks, uint32_t(kTimerHz * secs * 1.2) + 1000);
  EXPECT_EQ(in(kPmTmr, 2), 0u) << "only dword reads are valid";
  out(kPmTmr, 0, 4);  // read-only: the count goes on from where it was
  EXPECT_LT((in(kPmTmr, 4) - b) & kTimerMask, uint32_t(kTimerHz));
}

TEST_F(PmTimerTest, Pm1ControlStartsInAcpiModeAndPowersOffOnS5) {
  EXPECT_EQ(in(kPm1aCnt, 2) & kSciEn, kSciEn) << "no SMI_CMD: always in ACPI mode";
  out(kPm1aCnt, kSciEn | (5 << 10), 2);  // a sleep type without SLP_EN does nothing
  EXPECT_FALSE(vm.stopping());
  EXPECT_EQ(in(kPm1aCnt, 2), kSciEn | (5u << 10));
  out(kPm1aCnt, kSciEn | (1 << 10) | kSlpEn, 2);  // S1 (not in the DSDT): no power-off
  EXPECT_FALSE(vm.stopping());
  EXPECT_EQ(in(kPm1aCnt, 2) & kSlpEn, 0u) << "SLP_EN is write-only";
  out(kPm1aCnt + 1, kSlpEn >> 8, 1);  // byte write to the high half: SLP_TYP 0 (S5) with SLP_EN
  EXPECT_TRUE(vm.stopping());
  EXPECT_EQ(vm.stop_reason(), hv::StopReason::kShutdown);
  EXPECT_EQ(vm.exit_code(), 0);
}

TEST_F(PmTimerTest, Pm1EnableHoldsBitsAndStatusClearsOnOne) {
  out(kPm1aEvt + 2, kPwrbtnEn | kRtcEn, 2);
  EXPECT_EQ(in(kPm1aEvt + 2, 2), uint32_t(kPwrbtnEn | kRtcEn));
  out(kPm1aEvt + 2, 0, 2);
  // TMR_STS sets once bit 23 of the counter toggles (every 2^23 ticks, ~2.3 s); writing it
  // back clears it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!(in(kPm1aEvt, 2) & kTmrSts) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(in(kPm1aEvt, 2) & kTmrSts);
  EXPECT_FALSE(irq.level(kSciIrq)) << "TMR_EN is clear";
  out(kPm1aEvt + 2, kTmrEn, 2);
  EXPECT_TRUE(irq.level(kSciIrq)) << "status and enable raise the SCI";
  out(kPm1aEvt, kTmrSts, 2);
  EXPECT_FALSE(in(kPm1aEvt, 2) & kTmrSts);
  EXPECT_FALSE(irq.level(kSciIrq));
}

}  // namespace
}  // namespace nestvm::test
