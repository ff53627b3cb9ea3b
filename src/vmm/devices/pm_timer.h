// The ACPI fixed-hardware registers, as QEMU's hw/acpi/core.c: the power-management timer
// (ACPI 6.4, 4.8.3.3: a free-running counter at 3.579545 MHz, 24 bits wide as in QEMU, so the
// FADT leaves TMR_VAL_EXT clear) and the PM1 event and control blocks (4.8.3.1-2) with the
// sleep control that powers the machine off on S5.
#pragma once
#include <chrono>
#include <cstdint>
#include <mutex>

#include "hv/io_bus.h"

namespace nestvm::hv {
class Vm;
}

namespace nestvm::vmm {

namespace acpi_pm {
// QEMU's PIIX4/ICH9 layout at PMBASE 0x600.
inline constexpr uint16_t kPm1aEvt = 0x600, kPm1aCnt = 0x604, kPmTmr = 0x608;
inline constexpr uint64_t kTimerHz = 3579545;
inline constexpr uint32_t kTimerMask = 0xffffff;
// PM1 status/enable bits (ACPI 6.4 Tables 4.16-4.17) and control bits (Table 4.18).
inline constexpr uint16_t kTmrSts = 0x0001, kBmSts = 0x0010, kGblSts = 0x0020, kPwrbtnSts = 0x0100,
                          kSlpbtnSts = 0x0200, kRtcSts = 0x0400, kWakSts = 0x8000;
inline constexpr uint16_t kTmrEn = 0x0001, kGblEn = 0x0020, kPwrbtnEn = 0x0100, kSlpbtnEn = 0x0200, kRtcEn = 0x0400;
inline constexpr uint16_t kSciEn = 0x0001, kBmRld = 0x0002, kGblRls = 0x0004, kSlpTyp = 0x1c00, kSlpEn = 0x2000;
inline constexpr unsigned kSciIrq = 9;
}  // namespace acpi_pm

class PmTimer : public hv::PioDevice {
 public:
  PmTimer(hv::Vm& vm, uint16_t port = acpi_pm::kPmTmr);
  // The counter now (24 bits) and in full (for the timer-carry status).
  uint32_t count() const { return uint32_t(ticks()) & acpi_pm::kTimerMask; }
  uint64_t ticks() const;

  // Only dword reads are valid (QEMU's acpi_pm_tmr_ops); other accesses read 0.
  uint32_t pio_read(uint16_t port, unsigned size) override;
  void pio_write(uint16_t port, unsigned size, uint32_t value) override {}

 private:
  uint16_t port_;
  std::chrono::steady_clock::time_point start_;
};

// PM1a_EVT_BLK (status, enable) and PM1a_CNT_BLK. SCI (IRQ 9) follows status & enable for the
// timer, power button, RTC and global-lock sources, as acpi_update_sci. TMR_STS is set when
// bit 23 of the counter has toggled since it was last cleared; the SCI for it is seen at the
// next PM1 access (no host timer wakes the guest for it). SMI_CMD is 0 in the FADT (no legacy
// mode), so SCI_EN reads 1 from reset.
class AcpiPm1 : public hv::PioDevice {
 public:
  AcpiPm1(hv::Vm& vm, const PmTimer& timer, uint16_t evt = acpi_pm::kPm1aEvt, uint16_t cnt = acpi_pm::kPm1aCnt,
          unsigned sci_irq = acpi_pm::kSciIrq);

  uint32_t pio_read(uint16_t port, unsigned size) override;
  void pio_write(uint16_t port, unsigned size, uint32_t value) override;

 private:
  uint16_t status();
  void update_sci();
  void write_cnt(uint16_t value);

  hv::Vm& vm_;
  const PmTimer& timer_;
  uint16_t evt_, cnt_port_;
  unsigned sci_irq_;
  std::mutex mu_;
  uint16_t sts_ = 0, en_ = 0, cnt_ = acpi_pm::kSciEn;
  uint64_t tmr_cleared_ticks_ = 0;  // counter value when TMR_STS was last cleared
  bool sci_level_ = false;
};

}  // namespace nestvm::vmm
