#include "hv/irqchip/ioapic.h"

#include "hv/irqchip/pc_irqchip.h"

namespace nestvm::hv {

namespace apic = arch::apic;
namespace io = arch::ioapic;

namespace {
// Redirection entry (82093AA §3.2.4): vector, delivery mode, destination mode, polarity,
// trigger mode and mask are software's; delivery status and remote IRR are the I/O APIC's;
// the destination is bits 63:56.
constexpr uint64_t kLowWritable = apic::kVectorMask | apic::kDeliveryModeMask | apic::kDestModeLogical |
                                  apic::kPolarityLow | apic::kLevelTriggered | apic::kMasked;
constexpr uint64_t kHighWritable = 0xff00000000000000ull;
}  // namespace

Ioapic::Ioapic(PcIrqChip& chip) : chip_(chip) { reset(); }

// Reset (82093AA §3.0): every entry masked, ID 0.
void Ioapic::reset() {
  std::lock_guard lock(mu_);
  ioregsel_ = 0;
  id_ = 0;
  lines_ = 0;
  redir_.fill(apic::kMasked);
}

uint64_t Ioapic::redirection(unsigned pin) {
  std::lock_guard lock(mu_);
  return redir_[pin];
}

uint32_t Ioapic::read_register(unsigned index) const {
  switch (index) {
    case io::kRegId:
    case io::kRegArbitration: return id_ << 24;
    case io::kRegVersion: return kVersion | ((io::kNumPins - 1) << 16);  // maximum redirection entry
    default: break;
  }
  const unsigned pin = (index - io::kRegRedirectionTable) / 2;
  if (index < io::kRegRedirectionTable || pin >= io::kNumPins) return ~0u;
  return index & 1 ? uint32_t(redir_[pin] >> 32) : uint32_t(redir_[pin]);
}

void Ioapic::write_register(unsigned index, uint32_t value) {
  if (index == io::kRegId) {
    id_ = (value >> 24) & 0xf;
    return;
  }
  const unsigned pin = (index - io::kRegRedirectionTable) / 2;
  if (index < io::kRegRedirectionTable || pin >= io::kNumPins) return;
  const uint64_t old = redir_[pin];
  uint64_t e = index & 1 ? (old & 0xffffffffull) | ((uint64_t(value) << 32) & kHighWritable)
                         : (old & ~0xffffffffull) | (value & kLowWritable) |
                               (old & (apic::kRemoteIrr | apic::kDeliveryStatus));
  // KVM: an entry made edge-triggered has no EOI to wait for.
  if (!(e & apic::kLevelTriggered)) e &= ~uint64_t(apic::kRemoteIrr);
  redir_[pin] = e;
  // A level-triggered pin unmasked while its line is asserted interrupts now.
  if ((e & apic::kLevelTriggered) && (lines_ & (1u << pin))) service(pin);
}

uint64_t Ioapic::mmio_read(uint64_t gpa, unsigned size) {
  std::lock_guard lock(mu_);
  uint64_t v = 0;
  switch (gpa & 0xff) {
    case io::kIoRegSel: v = ioregsel_; break;
    case io::kIoWin: v = read_register(ioregsel_); break;
    default: break;
  }
  return size >= 8 ? v : v & ((1ull << (8 * size)) - 1);
}

void Ioapic::mmio_write(uint64_t gpa, unsigned size, uint64_t value) {
  std::lock_guard lock(mu_);
  switch (gpa & 0xff) {
    case io::kIoRegSel: ioregsel_ = uint32_t(value & 0xff); break;
    case io::kIoWin:
      if (size == 4 || size == 8) write_register(ioregsel_, uint32_t(value));
      break;
    default: break;
  }
}

// KVM's ioapic_service: a masked pin sends nothing (an edge is lost, a level waits for the
// unmask); a level-triggered pin sends once per EOI (remote IRR), and only if some APIC took it.
void Ioapic::service(unsigned pin) {
  const uint64_t e = redir_[pin];
  const bool level = e & apic::kLevelTriggered;
  if ((e & apic::kMasked) || (level && (e & apic::kRemoteIrr))) return;
  ApicIrq irq;
  irq.vector = uint8_t(e & apic::kVectorMask);
  irq.mode = arch::ApicDeliveryMode((e & apic::kDeliveryModeMask) >> apic::kDeliveryModeShift);
  irq.logical = e & apic::kDestModeLogical;
  irq.level_triggered = level;
  irq.dest = uint32_t(e >> 56);
  const unsigned reached = chip_.deliver(nullptr, irq);
  if (level && reached) redir_[pin] |= apic::kRemoteIrr;
}

void Ioapic::set_irq(unsigned pin, bool level) {
  if (pin >= io::kNumPins) return;
  std::lock_guard lock(mu_);
  const uint32_t bit = 1u << pin;
  const bool was = lines_ & bit;
  if (!level) {
    lines_ &= ~bit;
    return;
  }
  lines_ |= bit;
  if ((redir_[pin] & apic::kLevelTriggered) || !was) service(pin);
}

void Ioapic::eoi(uint8_t vector) {
  std::lock_guard lock(mu_);
  for (unsigned pin = 0; pin < io::kNumPins; ++pin) {
    uint64_t& e = redir_[pin];
    if ((e & apic::kVectorMask) != vector || !(e & apic::kRemoteIrr)) continue;
    e &= ~uint64_t(apic::kRemoteIrr);
    // Still asserted: the device wants service again (KVM's kvm_ioapic_update_eoi).
    if ((e & apic::kLevelTriggered) && (lines_ & (1u << pin))) service(pin);
  }
}

}  // namespace nestvm::hv
