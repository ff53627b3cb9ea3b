#include "vmm/devices/pm_timer.h"

#include "hv/vm.h"
#include "vmm/devices/io_access.h"

namespace nestvm::vmm {

using namespace acpi_pm;

PmTimer::PmTimer(hv::Vm& vm, uint16_t port) : port_(port), start_(std::chrono::steady_clock::now()) {
  vm.io().add_pio(port, 4, this, "acpi-tmr");
}

uint64_t PmTimer::ticks() const {
  const auto ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count());
  return uint64_t((unsigned __int128)ns * kTimerHz / 1000000000u);
}

uint32_t PmTimer::pio_read(uint16_t port, unsigned size) {
  return port == port_ && size == 4 ? count() : 0;
}

AcpiPm1::AcpiPm1(hv::Vm& vm, const PmTimer& timer, uint16_t evt, uint16_t cnt, unsigned sci_irq)
    : vm_(vm), timer_(timer), evt_(evt), cnt_port_(cnt), sci_irq_(sci_irq) {
  tmr_cleared_ticks_ = timer.ticks();
  vm.io().add_pio(evt, 4, this, "acpi-evt");
  vm.io().add_pio(cnt, 2, this, "acpi-cnt");
}

// acpi_pm1_evt_get_sts: the timer carry is noticed when status is looked at.
uint16_t AcpiPm1::status() {
  if ((timer_.ticks() >> 23) != (tmr_cleared_ticks_ >> 23)) sts_ |= kTmrSts;
  return sts_;
}

void AcpiPm1::update_sci() {
  constexpr uint16_t kCommon = kRtcEn | kPwrbtnEn | kGblEn | kTmrEn;  // ACPI_BITMASK_PM1_COMMON_ENABLED
  const bool level = en_ & status() & kCommon;
  if (level == sci_level_) return;
  sci_level_ = level;
  if (hv::IrqChip* chip = vm_.irqchip()) chip->set_irq(sci_irq_, level);
}

// The blocks are word registers (QEMU: valid 1-2 bytes, implemented as words): a byte access
// reads or merges into its half.
uint32_t AcpiPm1::pio_read(uint16_t port, unsigned size) {
  std::lock_guard lock(mu_);
  uint32_t v = 0;
  const bool evt = port >= evt_ && port < evt_ + 4;
  const uint16_t base = evt ? evt_ : cnt_port_;
  const unsigned region = evt ? 4 : 2;
  for_each_aligned_piece(port - base, size, 2, [&](uint64_t at, unsigned n, unsigned shift) {
    uint32_t piece = uint32_t(size_mask(n));
    if (at < region) {
      const uint16_t word = evt ? (at < 2 ? status() : en_) : cnt_;
      piece = uint32_t((word >> (8 * (at & 1))) & size_mask(n));
    }
    v |= piece << shift;
  });
  update_sci();
  return v;
}

void AcpiPm1::pio_write(uint16_t port, unsigned size, uint32_t value) {
  std::lock_guard lock(mu_);
  const bool evt = port >= evt_ && port < evt_ + 4;
  const uint16_t base = evt ? evt_ : cnt_port_;
  const unsigned region = evt ? 4 : 2;
  for_each_aligned_piece(port - base, size, 2, [&](uint64_t at, unsigned n, unsigned shift) {
    if (at >= region) return;
    auto piece = uint16_t((value >> shift) & size_mask(n));
    if (!evt) {
      // A byte write to the high half keeps the low half (acpi_pm_cnt_write).
      write_cnt(at == 1 ? uint16_t((piece << 8) | (cnt_ & 0xff)) : n == 1 ? uint16_t((cnt_ & 0xff00) | piece) : piece);
      return;
    }
    if (at >= 2) {
      en_ = n == 2 ? piece : at == 2 ? uint16_t((en_ & 0xff00) | piece) : uint16_t((en_ & 0xff) | (piece << 8));
      return;
    }
    // Status bits are write-1-to-clear; clearing TMR_STS restarts the carry detection.
    const uint16_t clear = n == 2 ? piece : at == 0 ? piece : uint16_t(piece << 8);
    if (status() & clear & kTmrSts) tmr_cleared_ticks_ = timer_.ticks();
    sts_ &= uint16_t(~clear);
  });
  update_sci();
}

// acpi_pm1_cnt_write: SLP_EN is write-only; with it, SLP_TYP 0 (the DSDT's \_S5) powers off.
void AcpiPm1::write_cnt(uint16_t value) {
  cnt_ = uint16_t(value & ~kSlpEn);
  if (value & kSlpEn) {
    const unsigned type = (value & kSlpTyp) >> 10;
    if (type == 0) vm_.request_stop(hv::StopReason::kShutdown, 0, "the guest powered off (ACPI S5)");
  }
}

}  // namespace nestvm::vmm
