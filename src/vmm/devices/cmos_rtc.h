// The MC146818 real-time clock and CMOS RAM, as QEMU's hw/rtc/mc146818rtc.c: index port 0x70
// (bit 7 masks NMIs), data port 0x71; the time of day from the host clock (UTC, as QEMU's
// default -rtc base=utc) in BCD or binary and 12- or 24-hour format as register B says,
// registers A-D with update-in-progress, the guest setting the clock (SET), periodic, alarm
// and update-ended interrupts on IRQ 8, and the NVRAM with the memory-size bytes QEMU's
// pc_cmos_init fills.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "hv/io_bus.h"

namespace nestvm::hv {
class Vm;
}

namespace nestvm::vmm {

// Register indices and bits (MC146818A data sheet; QEMU's mc146818rtc_regs.h).
namespace rtc {
inline constexpr uint16_t kIndexPort = 0x70;
inline constexpr uint16_t kDataPort = 0x71;
inline constexpr unsigned kIrq = 8;
inline constexpr uint8_t kSeconds = 0x00, kSecondsAlarm = 0x01, kMinutes = 0x02, kMinutesAlarm = 0x03,
                         kHours = 0x04, kHoursAlarm = 0x05, kDayOfWeek = 0x06, kDayOfMonth = 0x07, kMonth = 0x08,
                         kYear = 0x09, kRegA = 0x0a, kRegB = 0x0b, kRegC = 0x0c, kRegD = 0x0d, kCentury = 0x32,
                         kIbmPs2Century = 0x37;
namespace reg_a {
inline constexpr uint8_t kUIP = 0x80, kDV = 0x70, kRS = 0x0f;
}
namespace reg_b {
inline constexpr uint8_t kSET = 0x80, kPIE = 0x40, kAIE = 0x20, kUIE = 0x10, kSQWE = 0x08, kDM = 0x04,
                         k24H = 0x02, kDSE = 0x01;
}
namespace reg_c {
inline constexpr uint8_t kIRQF = 0x80, kPF = 0x40, kAF = 0x20, kUF = 0x10;
}
namespace reg_d {
inline constexpr uint8_t kVRT = 0x80;
}
}  // namespace rtc

class CmosRtc : public hv::PioDevice {
 public:
  // Nanoseconds since the Unix epoch, UTC.
  using TimeSource = std::function<int64_t()>;

  explicit CmosRtc(hv::Vm& vm);
  ~CmosRtc() override;
  CmosRtc(const CmosRtc&) = delete;
  CmosRtc& operator=(const CmosRtc&) = delete;

  uint32_t pio_read(uint16_t port, unsigned size) override;
  void pio_write(uint16_t port, unsigned size, uint32_t value) override;

  // The memory-size bytes (0x15-0x18, 0x30/0x31, 0x34/0x35, 0x5b-0x5d). The constructor fills
  // them from the VM's memory slots, or from QEMU's pc split of the RAM size if none exist yet.
  void set_memory_layout(uint64_t below_4g, uint64_t above_4g);
  // NVRAM outside the clock registers (the machine's setup).
  void set_nvram(uint8_t index, uint8_t value);
  uint8_t nvram(uint8_t index);
  bool nmi_masked();
  // Replaces the host clock; the clock then reads the source's time (tests).
  void set_time_source(TimeSource source);

 private:
  int64_t host_ns() const;
  bool running() const;
  int64_t guest_ns() const;  // the clock's time while running
  uint8_t to_reg(unsigned v) const;
  unsigned from_reg(uint8_t r) const;
  void encode_time();        // the clock's time into the time registers
  void decode_time(int64_t fraction_ns);  // the time registers become the clock's time
  uint8_t read_data();
  void write_data(uint8_t v);
  void write_reg_a(uint8_t v);
  void write_reg_b(uint8_t v);
  void advance(int64_t now_guest_ns);  // sets the flags of events that happened
  bool alarm_matches(int64_t second) const;
  void update_irq_line();
  int64_t next_event_ns() const;
  void timer_loop();

  hv::Vm& vm_;
  std::mutex mu_;
  uint8_t cmos_[128] = {};
  uint8_t index_ = 0;
  bool nmi_masked_ = false;
  TimeSource time_source_;
  int64_t offset_ns_ = 0;      // guest time = host time + offset while running
  int64_t last_event_ns_ = 0;  // guest time up to which events were accounted
  bool irq_level_ = false;

  // Delivers periodic, alarm and update interrupts when enabled.
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread timer_;
};

}  // namespace nestvm::vmm
