// The MC146818 through ports 0x70/0x71: time formats from a given clock, the guest setting the
// clock, update-in-progress, the flags and interrupts of register C, the memory-size bytes and
// the NVRAM.
#include "vmm/devices/cmos_rtc.h"

#include <atomic>

#include "unit/vmm/devices/device_test.h"

namespace nestvm::test {
namespace {

using namespace vmm::rtc;
using std::chrono::milliseconds;

constexpr int64_t kSec = 1000000000;
constexpr int64_t kLeapDay = 1709214356;  // 2024-02-29 13:45:56 UTC, a Thursday

class CmosRtcTest : public DeviceTest {
 protected:
  CmosRtcTest() : rtc(vm) {
    rtc.set_time_source([this] { return now.load(); });
  }
  uint8_t rd(uint8_t index) {
    out(kIndexPort, index);
    return uint8_t(in(kDataPort));
  }
  void wr(uint8_t index, uint8_t v) {
    out(kIndexPort, index);
    out(kDataPort, v);
  }
  void set_now(int64_t ns) {
    now = ns;
  }

  std::atomic<int64_t> now{kLeapDay * kSec + kSec / 4};
  vmm::CmosRtc rtc;
};

TEST_F(CmosRtcTest, ResetRegisters) {
  EXPECT_EQ(rd(kRegA), 0x26);
  EXPECT_EQ(rd(kRegB), reg_b::k24H);
  EXPECT_EQ(rd(kRegC), 0);
  EXPECT_EQ(rd(kRegD), reg_d::kVRT);
  EXPECT_EQ(in(kIndexPort), 0xffu) << "the index port reads 0xff";
}

TEST_F(CmosRtcTest, BcdTwentyFourHour) {
  EXPECT_EQ(rd(kSeconds), 0x56);
  EXPECT_EQ(rd(kMinutes), 0x45);
  EXPECT_EQ(rd(kHours), 0x13);
  EXPECT_EQ(rd(kDayOfWeek), 5) << "Thursday, with Sunday = 1";
  EXPECT_EQ(rd(kDayOfMonth), 0x29);
  EXPECT_EQ(rd(kMonth), 0x02);
  EXPECT_EQ(rd(kYear), 0x24);
  EXPECT_EQ(rd(kCentury), 0x20);
  EXPECT_EQ(rd(kIbmPs2Century), 0x20);
  set_now(kLeapDay * kSec + 4 * kSec);
  EXPECT_EQ(rd(kSeconds), 0x00) << "the clock follows its time source";
  EXPECT_EQ(rd(kMinutes), 0x46);
}

TEST_F(CmosRtcTest, BinaryAndTwelveHourFormats) {
  wr(kRegB, reg_b::k24H | reg_b::kDM);
  EXPECT_EQ(rd(kSeconds), 56);
  EXPECT_EQ(rd(kHours), 13);
  EXPECT_EQ(rd(kYear), 24);
  EXPECT_EQ(rd(kCentury), 20);
  wr(kRegB, 0);  // BCD, 12-hour
  EXPECT_EQ(rd(kHours), 0x81) << "1 PM";
  set_now(int64_t(1709166600) * kSec);  // 00:30
  EXPECT_EQ(rd(kHours), 0x12) << "half past midnight is 12 AM";
  set_now(int64_t(1709208000) * kSec);  // 12:00
  EXPECT_EQ(rd(kHours), 0x92) << "noon is 12 PM";
  wr(kRegB, reg_b::kDM);
  EXPECT_EQ(rd(kHours), 0x8c) << "binary 12 PM";
}

TEST_F(CmosRtcTest, GuestSetsTheClockWhileSetIsHeld) {
  wr(kRegB, reg_b::kSET | reg_b::k24H);
  EXPECT_EQ(rd(kSeconds), 0x56) << "SET freezes the registers at the current time";
  wr(kSeconds, 0x59);
  wr(kMinutes, 0x59);
  wr(kHours, 0x23);
  wr(kDayOfMonth, 0x31);
  wr(kMonth, 0x12);
  wr(kYear, 0x99);
  wr(kCentury, 0x19);
  set_now(now + 10 * kSec);
  EXPECT_EQ(rd(kSeconds), 0x59) << "the clock does not run while SET";
  wr(kRegB, reg_b::k24H);
  EXPECT_EQ(rd(kSeconds), 0x59);
  EXPECT_EQ(rd(kYear), 0x99);
  set_now(now + kSec);  // one second later: the year 2000
  EXPECT_EQ(rd(kSeconds), 0x00);
  EXPECT_EQ(rd(kHours), 0x00);
  EXPECT_EQ(rd(kDayOfMonth), 0x01);
  EXPECT_EQ(rd(kMonth), 0x01);
  EXPECT_EQ(rd(kYear), 0x00);
  EXPECT_EQ(rd(kCentury), 0x20);
  EXPECT_EQ(rd(kDayOfWeek), 7) << "2000-01-01 was a Saturday";
}

TEST_F(CmosRtcTest, WritingOneFieldWhileRunningMovesTheClock) {
  wr(kMinutes, 0x10);
  EXPECT_EQ(rd(kMinutes), 0x10);
  EXPECT_EQ(rd(kHours), 0x13);
  EXPECT_EQ(rd(kSeconds), 0x56);
  set_now(now + 60 * kSec);
  EXPECT_EQ(rd(kMinutes), 0x11);
}

TEST_F(CmosRtcTest, UpdateInProgressJustBeforeEachSecond) {
  set_now(kLeapDay * kSec + kSec - 100000);  // 100 us before the update
  EXPECT_TRUE(rd(kRegA) & reg_a::kUIP);
  set_now(kLeapDay * kSec + kSec / 2);
  EXPECT_FALSE(rd(kRegA) & reg_a::kUIP);
  wr(kRegA, 0xa6);  // UIP is read-only
  EXPECT_EQ(rd(kRegA), 0x26);
}

TEST_F(CmosRtcTest, DividerResetStopsTheClockAndRestartsHalfASecondLater) {
  wr(kRegA, 0x66);  // divider chain reset
  set_now(now + 5 * kSec);
  EXPECT_EQ(rd(kSeconds), 0x56);
  EXPECT_FALSE(rd(kRegA) & reg_a::kUIP);
  wr(kRegA, 0x26);
  set_now(now + kSec / 2 - 1000);
  EXPECT_EQ(rd(kSeconds), 0x56);
  set_now(now + 2000);
  EXPECT_EQ(rd(kSeconds), 0x57) << "the first update comes 500 ms after the divider restarts";
}

TEST_F(CmosRtcTest, UpdateAndAlarmFlagsAndTheirInterrupt) {
  wr(kRegA, 0x20);  // no periodic rate: PF is set at that rate even with PIE clear (data sheet)
  EXPECT_EQ(rd(kRegC), 0);
  set_now(now + kSec);
  EXPECT_EQ(rd(kRegC), reg_c::kUF) << "a second passed: update ended, no interrupt enabled";
  EXPECT_EQ(rd(kRegC), 0) << "reading C clears it";
  wr(kSecondsAlarm, 0x59);
  wr(kMinutesAlarm, 0xc0);  // don't care
  wr(kHoursAlarm, 0xff);
  wr(kRegB, reg_b::k24H | reg_b::kAIE);
  EXPECT_FALSE(irq.level(kIrq));
  set_now(now + kSec);  // :58
  EXPECT_EQ(rd(kRegC), reg_c::kUF);
  set_now(now + kSec);  // :59 matches
  ASSERT_TRUE(irq.wait_level(kIrq, true, milliseconds(3000))) << "the alarm raises IRQ 8";
  EXPECT_EQ(rd(kRegC), reg_c::kIRQF | reg_c::kAF | reg_c::kUF);
  EXPECT_FALSE(irq.level(kIrq)) << "reading C lowers IRQ 8";
}

TEST_F(CmosRtcTest, EnablingAnInterruptWithItsFlagSetInterruptsAtOnce) {
  set_now(now + kSec);
  wr(kRegB, reg_b::k24H | reg_b::kUIE);
  // Register B's write looks at C's flags; the update happened before it.
  EXPECT_TRUE(irq.wait_level(kIrq, true, milliseconds(3000)));
  EXPECT_EQ(rd(kRegC) & (reg_c::kIRQF | reg_c::kUF), reg_c::kIRQF | reg_c::kUF);
  wr(kRegB, reg_b::k24H | reg_b::kSET | reg_b::kUIE);
  EXPECT_EQ(rd(kRegB), reg_b::k24H | reg_b::kSET) << "SET clears UIE";
}

TEST_F(CmosRtcTest, NmiMaskBitIsNotPartOfTheIndex) {
  out(kIndexPort, 0x80 | 0x15);
  EXPECT_TRUE(rtc.nmi_masked());
  EXPECT_EQ(in(kDataPort), rd(0x15));
  EXPECT_FALSE(rtc.nmi_masked());
}

TEST_F(CmosRtcTest, NvramHoldsBytes) {
  for (uint8_t v : {0x00, 0xff, 0xa5}) {
    wr(0x7e, v);
    EXPECT_EQ(rd(0x7e), v);
  }
  wr(kRegD, 0);
  EXPECT_EQ(rd(kRegD), reg_d::kVRT) << "D is read-only";
}

TEST_F(CmosRtcTest, MemorySizeBytesAsPcCmosInit) {
  // 16 MiB of RAM from the fixture's memory slot.
  EXPECT_EQ(rd(0x15) | rd(0x16) << 8, 640);
  EXPECT_EQ(rd(0x17) | rd(0x18) << 8, 15 * 1024);
  EXPECT_EQ(rd(0x30) | rd(0x31) << 8, 15 * 1024);
  EXPECT_EQ(rd(0x34) | rd(0x35) << 8, 0);
  EXPECT_EQ(rd(0x5b) | rd(0x5c) << 8 | rd(0x5d) << 16, 0);
  EXPECT_EQ(rd(0x5f), 0) << "one CPU";
  rtc.set_memory_layout(3ull << 30, 5ull << 30);
  EXPECT_EQ(rd(0x17) | rd(0x18) << 8, 0xffff) << "extended memory saturates";
  EXPECT_EQ(rd(0x34) | rd(0x35) << 8, ((3ull << 30) - (16 << 20)) / 65536);
  EXPECT_EQ(rd(0x5b) | rd(0x5c) << 8 | rd(0x5d) << 16, (5ull << 30) / 65536);
}

TEST(CmosRtcLayout, WithoutSlotsUsesQemusSplit) {
  hv::Vm vm(small_vm_config(4, 4ull << 30));
  vmm::CmosRtc rtc(vm);
  EXPECT_EQ(rtc.nvram(0x5b) | rtc.nvram(0x5c) << 8 | rtc.nvram(0x5d) << 16, (1ull << 30) / 65536)
      << "4 GiB: 3 GiB low, 1 GiB above 4 GiB";
  EXPECT_EQ(rtc.nvram(0x5f), 3);
}

TEST(CmosRtcHostClock, PeriodicInterruptsAtTheProgrammedRate) {
  hv::Vm vm(small_vm_config());
  FakeIrqChip irq;
  vm.set_irqchip(&irq);
  vmm::CmosRtc rtc(vm);
  const auto rd = [&](uint8_t i) {
    vm.io().pio_write(kIndexPort, 1, i);
    return uint8_t(vm.io().pio_read(kDataPort, 1));
  };
  // The host's UTC time, to within a few seconds.
  const int64_t host = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
  const unsigned minute = unsigned(host / 60 % 60);
  const uint8_t m = rd(kMinutes);
  const unsigned rtc_minute = (m >> 4) * 10 + (m & 15);
  EXPECT_TRUE(rtc_minute == minute || rtc_minute == (minute + 1) % 60) << rtc_minute << " vs " << minute;

  vm.io().pio_write(kIndexPort, 1, kRegB);
  vm.io().pio_write(kDataPort, 1, reg_b::k24H | reg_b::kPIE);  // rate 6: 1024 Hz
  unsigned ticks = 0;
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < milliseconds(100)) {
    if (!irq.wait_level(kIrq, true, milliseconds(1000))) break;
    const uint8_t c = rd(kRegC);
    ASSERT_EQ(c & (reg_c::kIRQF | reg_c::kPF), reg_c::kIRQF | reg_c::kPF);
    ++ticks;
  }
  // ~102 in 100 ms; a loaded host loses some, never gains.
  EXPECT_GE(ticks, 20u);
  EXPECT_LE(ticks, 110u);
}

}  // namespace
}  // namespace nestvm::test
