#include "hv/irqchip/lapic.h"

#include <algorithm>

#include "arch/msr_index.h"
#include "cpu/cpu_model.h"
#include "hv/irqchip/pc_irqchip.h"
#include "hv/vcpu.h"
#include "hv/vm.h"

namespace nestvm::hv {

using arch::ApicDeliveryMode;
using arch::ApicReg;
namespace apic = arch::apic;

namespace {

// Integrated APIC, six LVT entries (SDM Figure 11-7: version 0x1x, max LVT entry - 1 in 23:16);
// no directed-EOI support (bit 24), so SVR bit 12 is reserved.
constexpr uint32_t kVersion = 0x14 | (5u << 16);

constexpr unsigned reg(ApicReg r) { return unsigned(r); }
constexpr bool in_bank(unsigned offset, ApicReg first) { return offset >= reg(first) && offset < reg(first) + 0x80; }
constexpr unsigned bank_index(unsigned offset, ApicReg first) { return (offset - reg(first)) >> 4; }

int highest_bit(uint32_t w) { return 31 - __builtin_clz(w); }

constexpr uint32_t kIcrLowWritable = apic::kVectorMask | apic::kDeliveryModeMask | apic::kDestModeLogical |
                                     apic::kLevelAssert | apic::kLevelTriggered | apic::kShorthandMask;

}  // namespace

Lapic::Lapic(PcIrqChip& chip, Vcpu& vcpu)
    : chip_(chip),
      vcpu_(vcpu),
      bsp_(vcpu.index() == 0),
      has_x2apic_(chip.vm().model().has(cpu::Feature::kX2apic)),
      has_tsc_deadline_(chip.vm().model().has(cpu::Feature::kTscDeadline)),
      maxphyaddr_(chip.vm().model().maxphyaddr()) {
  reset(false);
}

void Lapic::set_default_id() {
  const uint32_t index = vcpu_.index();
  if (x2apic_mode()) {
    // SDM §11.12.10.2: the x2APIC LDR is derived from the ID: cluster in 31:16, one bit of 16.
    id_.store(index, std::memory_order_relaxed);
    ldr_.store(((index >> 4) << 16) | (1u << (index & 0xf)), std::memory_order_relaxed);
  } else {
    id_.store(index << 24, std::memory_order_relaxed);
  }
}

// SDM Table 10-1 (power-up and INIT), §11.4.7.1: every LVT masked, SVR 0xff (software
// disabled), DFR all ones, the rest zero. The BSP's LINT0 is left in ExtINT for the PIC as KVM
// and QEMU leave it (the virtual-wire set-up a BIOS would do; nestvm boots without one).
void Lapic::reset(bool init) {
  if (!init) {
    apic_base_.store(arch::apic_base::kDefaultBase | kBaseEnable | (bsp_ ? kBaseBsp : 0), std::memory_order_relaxed);
    vcpu_.core().state.msr.apic_base = apic_base();
  }
  cancel_timer();
  timer_ = Timer{};
  svr_.store(0xff, std::memory_order_relaxed);
  for (auto& l : lvt_) l.store(apic::kMasked, std::memory_order_relaxed);
  if (bsp_) lvt(ApicReg::kLvtLint0).store(uint32_t(ApicDeliveryMode::kExtInt) << apic::kDeliveryModeShift);
  for (auto& w : irr_) w.store(0, std::memory_order_relaxed);
  for (auto& w : tmr_) w.store(0, std::memory_order_relaxed);
  isr_.fill(0);
  nmi_pending_.store(false);
  errors_.store(0);
  esr_ = 0;
  tpr_ = 0;
  cr8_seen_ = vcpu_.core().state.cr8;
  icr_low_ = icr_high_ = 0;
  ldr_.store(0, std::memory_order_relaxed);
  dfr_.store(apic::kDfrFlat, std::memory_order_relaxed);
  set_default_id();
}

uint32_t Lapic::apic_id() const {
  const uint32_t id = id_.load(std::memory_order_relaxed);
  return x2apic_mode() ? id : id >> 24;
}

// SDM §11.4.4 and §11.12.5 ("x2APIC State Transitions"): bits 7:0, 9 and those above MAXPHYADDR
// are reserved, EXTD too without x2APIC; EXTD without EN is invalid; x2APIC mode is left only
// by disabling the APIC and entered only from xAPIC mode. BSP is the processor's.
bool Lapic::set_apic_base(uint64_t value) {
  uint64_t reserved = 0x2ffull | ~((1ull << maxphyaddr_) - 1);
  if (!has_x2apic_) reserved |= kBaseExtd;
  if (value & reserved) return false;
  const uint64_t old = apic_base();
  const bool en = value & kBaseEnable, extd = value & kBaseExtd;
  const bool old_en = old & kBaseEnable, old_extd = old & kBaseExtd;
  if (extd && !en) return false;
  if (old_en && old_extd && en && !extd) return false;
  if (!old_en && en && extd) return false;
  value = (value & ~kBaseBsp) | (old & kBaseBsp);
  apic_base_.store(value, std::memory_order_release);
  vcpu_.core().state.msr.apic_base = value;
  // SDM §11.4.3: a hardware-disabled APIC loses its state (it "may return to the state after
  // power-up"); re-enabled, it has its initial ID again, and x2APIC mode its derived LDR.
  if (old_en && !en) reset(true);
  if ((!old_en && en) || (!old_extd && extd)) set_default_id();
  return true;
}

bool Lapic::mmio_in_range(uint64_t gpa) const {
  const uint64_t base = apic_base();
  if ((base & (kBaseEnable | kBaseExtd)) != kBaseEnable) return false;
  return (gpa & ~0xfffull) == (base & ~0xfffull & ((1ull << maxphyaddr_) - 1));
}

// xAPIC registers are 32 bits wide at 16-byte strides; reads of 1, 2 or 4 bytes inside the
// first dword work (KVM's kvm_lapic_reg_read), writes must be aligned dwords (SDM §11.4.1).
uint64_t Lapic::mmio_read(uint64_t gpa, unsigned size) {
  const unsigned offset = unsigned(gpa & 0xfff);
  const unsigned within = offset & 0xf;
  if (within + size > 4) return 0;
  uint64_t v = 0;
  if (!read_reg(offset & ~0xfu, v)) {
    record_error(apic::kEsrIllegalRegisterAddress);
    return 0;
  }
  return (v >> (8 * within)) & (~0ull >> (64 - 8 * size));
}

void Lapic::mmio_write(uint64_t gpa, unsigned size, uint64_t value) {
  const unsigned offset = unsigned(gpa & 0xfff);
  if (size != 4 || (offset & 0xf)) return;
  if (!write_reg(offset, uint32_t(value))) record_error(apic::kEsrIllegalRegisterAddress);
}

bool Lapic::msr_read(uint32_t msr, uint64_t& value) {
  if (!x2apic_mode()) return false;
  return read_reg(arch::apic_msr_reg(msr), value);
}

bool Lapic::msr_write(uint32_t msr, uint64_t value) {
  if (!x2apic_mode()) return false;
  return write_reg(arch::apic_msr_reg(msr), value);
}

bool Lapic::read_reg(unsigned offset, uint64_t& value) {
  const bool x2 = x2apic_mode();
  switch (ApicReg(offset)) {
    case ApicReg::kId: value = id_.load(std::memory_order_relaxed); return true;
    case ApicReg::kVersion: value = kVersion; return true;
    case ApicReg::kTpr: sync_tpr(); value = tpr_; return true;
    case ApicReg::kApr: value = 0; return !x2;  // arbitration priority: P6 only
    case ApicReg::kPpr: sync_tpr(); value = ppr(); return true;
    case ApicReg::kEoi: value = 0; return !x2;  // write-only
    case ApicReg::kLdr: value = ldr_.load(std::memory_order_relaxed); return true;
    case ApicReg::kDfr: value = dfr_.load(std::memory_order_relaxed); return !x2;
    case ApicReg::kSvr: value = svr_.load(std::memory_order_relaxed); return true;
    case ApicReg::kEsr: value = esr_; return true;
    case ApicReg::kIcrLow:
      // The delivery-status bit reads 0: messages are delivered at the ICR write.
      value = x2 ? (uint64_t(icr_high_) << 32) | icr_low_ : icr_low_;
      return true;
    case ApicReg::kIcrHigh: value = icr_high_; return !x2;
    case ApicReg::kLvtTimer:
    case ApicReg::kLvtThermal:
    case ApicReg::kLvtPerf:
    case ApicReg::kLvtLint0:
    case ApicReg::kLvtLint1:
    case ApicReg::kLvtError: value = lvt(ApicReg(offset)).load(std::memory_order_relaxed); return true;
    case ApicReg::kTimerInitialCount: value = timer_.initial_count; return true;
    case ApicReg::kTimerCurrentCount: value = current_count(chip_.now()); return true;
    case ApicReg::kTimerDivideConfig: value = timer_.divide_config; return true;
    default: break;
  }
  if (in_bank(offset, ApicReg::kIsr)) {
    value = isr_[bank_index(offset, ApicReg::kIsr)];
    return true;
  }
  if (in_bank(offset, ApicReg::kTmr)) {
    value = tmr_[bank_index(offset, ApicReg::kTmr)].load(std::memory_order_relaxed);
    return true;
  }
  if (in_bank(offset, ApicReg::kIrr)) {
    value = irr_[bank_index(offset, ApicReg::kIrr)].load(std::memory_order_relaxed);
    return true;
  }
  return false;  // SELF IPI is write-only; RRD, the CMCI LVT and the gaps are not registers
}

// The bits software can set in an LVT entry (SDM Figure 11-8); delivery status and remote IRR
// are the APIC's.
uint32_t Lapic::lvt_writable(ApicReg r) const {
  switch (r) {
    case ApicReg::kLvtTimer:
      return apic::kVectorMask | apic::kMasked | (has_tsc_deadline_ ? apic::kTimerModeMask : 1u << apic::kTimerModeShift);
    case ApicReg::kLvtThermal:
    case ApicReg::kLvtPerf: return apic::kVectorMask | apic::kDeliveryModeMask | apic::kMasked;
    case ApicReg::kLvtLint0:
    case ApicReg::kLvtLint1:
      return apic::kVectorMask | apic::kDeliveryModeMask | apic::kPolarityLow | apic::kLevelTriggered | apic::kMasked;
    default: return apic::kVectorMask | apic::kMasked;  // error
  }
}

// Writes: the xAPIC ignores reserved bits and read-only registers; in x2APIC mode a non-zero
// reserved bit, a read-only register or a missing one is #GP (SDM §11.12.1.2, §11.12.1.3).
bool Lapic::write_reg(unsigned offset, uint64_t value) {
  const bool x2 = x2apic_mode();
  const ApicReg r = ApicReg(offset);
  if (x2 && r != ApicReg::kIcrLow && (value >> 32)) return false;
  const uint32_t v = uint32_t(value);
  auto checked = [x2, v](uint32_t writable) { return !(x2 && (v & ~writable)); };
  switch (r) {
    case ApicReg::kId:
      if (x2) return false;
      id_.store(v & 0xff000000u, std::memory_order_relaxed);
      return true;
    case ApicReg::kVersion:
    case ApicReg::kApr:
    case ApicReg::kPpr:
    case ApicReg::kTimerCurrentCount: return !x2;
    case ApicReg::kTpr:
      // The new TPR reaches CR8 at the next sync_tpr (see there).
      if (!checked(0xff)) return false;
      tpr_ = v & 0xff;
      return true;
    case ApicReg::kEoi:
      // SDM §11.12.1.2: a non-zero write to the x2APIC EOI register is #GP.
      if (x2 && v) return false;
      eoi();
      return true;
    case ApicReg::kLdr:
      if (x2) return false;
      ldr_.store(v & 0xff000000u, std::memory_order_relaxed);
      return true;
    case ApicReg::kDfr:
      if (x2) return false;
      dfr_.store(v | 0x0fffffffu, std::memory_order_relaxed);
      return true;
    case ApicReg::kSvr:
      if (!checked(0x3ff)) return false;
      set_svr(v & 0x3ff);
      return true;
    case ApicReg::kEsr:
      // SDM §11.5.3: a write moves the errors logged since the previous write into the ESR.
      if (x2 && v) return false;
      esr_ = errors_.exchange(0);
      return true;
    case ApicReg::kIcrLow:
      if (!checked(kIcrLowWritable)) return false;
      icr_low_ = v & kIcrLowWritable;
      if (x2) icr_high_ = uint32_t(value >> 32);
      send_ipi(icr_low_, x2 ? icr_high_ : icr_high_ >> 24);
      return true;
    case ApicReg::kIcrHigh:
      if (x2) return false;
      icr_high_ = v & 0xff000000u;
      return true;
    case ApicReg::kLvtTimer:
    case ApicReg::kLvtThermal:
    case ApicReg::kLvtPerf:
    case ApicReg::kLvtLint0:
    case ApicReg::kLvtLint1:
    case ApicReg::kLvtError: {
      const uint32_t writable = lvt_writable(r);
      const uint32_t read_only = apic::kDeliveryStatus | apic::kRemoteIrr;
      if (!checked(writable | read_only)) return false;
      set_lvt(r, v & writable);
      return true;
    }
    case ApicReg::kTimerInitialCount:
      // SDM §11.5.4.1: in TSC-deadline mode writes to the initial count are ignored.
      if (timer_mode() == apic::TimerMode::kTscDeadline) return true;
      timer_.initial_count = v;
      start_timer(chip_.now());
      return true;
    case ApicReg::kTimerDivideConfig:
      if (!checked(0xb)) return false;
      set_divide_config(v & 0xb);
      return true;
    case ApicReg::kSelfIpi:
      // SDM §11.12.11: x2APIC only; a fixed, edge-triggered IPI to this APIC.
      if (!x2 || (v & ~0xffu)) return false;
      send_ipi((v & 0xff) | (uint32_t(apic::Shorthand::kSelf) << apic::kShorthandShift), 0);
      return true;
    default: break;
  }
  if (in_bank(offset, ApicReg::kIsr) || in_bank(offset, ApicReg::kTmr) || in_bank(offset, ApicReg::kIrr))
    return !x2;
  return false;
}

void Lapic::set_svr(uint32_t value) {
  svr_.store(value, std::memory_order_relaxed);
  // SDM §11.4.7.2: software-disabling the APIC sets every LVT mask bit.
  if (!(value & apic::kSvrEnable))
    for (auto& l : lvt_) l.fetch_or(apic::kMasked, std::memory_order_relaxed);
}

void Lapic::set_lvt(ApicReg r, uint32_t value) {
  std::atomic<uint32_t>& entry = lvt(r);
  const uint32_t old = entry.load(std::memory_order_relaxed);
  // While software-disabled, mask bits cannot be cleared (SDM §11.4.7.2).
  if (!sw_enabled()) value |= apic::kMasked;
  if (r == ApicReg::kLvtLint0 || r == ApicReg::kLvtLint1) value |= old & apic::kRemoteIrr;
  entry.store(value, std::memory_order_relaxed);
  if (r == ApicReg::kLvtTimer && ((old ^ value) & apic::kTimerModeMask)) timer_mode_changed();
}

// SDM §11.8.6.1: CR8[3:0] is TPR[7:4]. The silicon keeps CR8 (MOV CR8 in 64-bit mode, with
// CR8-load exiting emulated by L0) and the APIC keeps the TPR; whichever changed since the last
// reconciliation wins. A TPR written through the APIC reaches CR8 here, not at the write: an
// xAPIC write runs inside L0's emulator, which writes its own CR8 back after the instruction.
void Lapic::sync_tpr() {
  uint64_t& cr8 = vcpu_.core().state.cr8;
  if (cr8 != cr8_seen_) tpr_ = uint32_t(cr8 & 0xf) << 4;
  else if ((tpr_ >> 4) != cr8) cr8 = tpr_ >> 4;
  cr8_seen_ = cr8;
}

// SDM §11.8.3.1: PPR = TPR if TPR[7:4] >= ISRV[7:4], else ISRV[7:4] << 4.
uint32_t Lapic::ppr() const {
  const int isrv = highest_isr();
  const uint32_t isr_class = isrv < 0 ? 0 : uint32_t(isrv) & 0xf0;
  return (tpr_ & 0xf0) >= isr_class ? tpr_ : isr_class;
}

int Lapic::highest_isr() const {
  for (int i = 7; i >= 0; --i)
    if (isr_[i]) return i * 32 + highest_bit(isr_[i]);
  return -1;
}

int Lapic::highest_irr() const {
  for (int i = 7; i >= 0; --i)
    if (uint32_t w = irr_[i].load(std::memory_order_acquire)) return i * 32 + highest_bit(w);
  return -1;
}

// SDM §11.8.3: the highest-priority request is delivered if its class is above the PPR's.
int Lapic::pending_vector() {
  if (!hw_enabled()) return -1;
  sync_tpr();
  const int v = highest_irr();
  if (v < 0) return -1;
  return (uint32_t(v) & 0xf0) > (ppr() & 0xf0) ? v : -1;
}

int Lapic::acknowledge() {
  const int v = pending_vector();
  if (v < 0) return -1;
  irr_[v >> 5].fetch_and(~(1u << (v & 31)), std::memory_order_acq_rel);
  isr_[v >> 5] |= 1u << (v & 31);
  return v;
}

// SDM §11.8.5: EOI retires the highest in-service vector; a level-triggered one (TMR set) is
// broadcast to the I/O APIC, which clears its remote IRR.
void Lapic::eoi() {
  const int v = highest_isr();
  if (v < 0) return;
  isr_[v >> 5] &= ~(1u << (v & 31));
  if (tmr_[v >> 5].load(std::memory_order_relaxed) & (1u << (v & 31))) chip_.eoi_level(uint8_t(v));
}

// SDM §11.6.1: the ICR's fields as a message; fixed and lowest-priority messages with vectors
// 0-15 are not sent (§11.5.3 "Send Illegal Vector").
void Lapic::send_ipi(uint32_t icr_low, uint32_t dest) {
  ApicIrq irq;
  irq.vector = uint8_t(icr_low & apic::kVectorMask);
  irq.mode = ApicDeliveryMode((icr_low & apic::kDeliveryModeMask) >> apic::kDeliveryModeShift);
  irq.logical = icr_low & apic::kDestModeLogical;
  irq.assert = icr_low & apic::kLevelAssert;
  irq.level_triggered = icr_low & apic::kLevelTriggered;
  irq.shorthand = apic::Shorthand((icr_low & apic::kShorthandMask) >> apic::kShorthandShift);
  irq.dest = dest;
  irq.x2apic_dest = x2apic_mode();
  if ((irq.mode == ApicDeliveryMode::kFixed || irq.mode == ApicDeliveryMode::kLowestPriority) && irq.vector < 16) {
    record_error(apic::kEsrSendIllegalVector);
    return;
  }
  chip_.deliver(this, irq);
}

// SDM §11.5.3: an error is logged and signalled through LVT Error. An error vector that is
// itself illegal logs once more and stops there.
void Lapic::record_error(uint32_t esr_bit) {
  errors_.fetch_or(esr_bit, std::memory_order_relaxed);
  if (in_error_.exchange(true)) return;
  local_deliver(ApicReg::kLvtError);
  in_error_.store(false);
}

// KVM's kvm_apic_local_deliver: an unmasked LVT entry of an enabled APIC interrupts its own
// processor. Only LINT0/1 have a trigger mode; the timer and error entries are fixed.
void Lapic::local_deliver(ApicReg r) {
  const uint32_t e = lvt(r).load(std::memory_order_relaxed);
  if (!hw_enabled() || (e & apic::kMasked)) return;
  ApicIrq irq;
  irq.vector = uint8_t(e & apic::kVectorMask);
  const bool has_mode = r != ApicReg::kLvtTimer && r != ApicReg::kLvtError;
  irq.mode = has_mode ? ApicDeliveryMode((e & apic::kDeliveryModeMask) >> apic::kDeliveryModeShift)
                      : ApicDeliveryMode::kFixed;
  irq.level_triggered = (r == ApicReg::kLvtLint0 || r == ApicReg::kLvtLint1) && (e & apic::kLevelTriggered);
  irq.shorthand = apic::Shorthand::kSelf;
  accept(irq);
}

bool Lapic::accepts_pic_interrupt() const {
  if (!hw_enabled()) return true;  // no APIC: INTR goes straight to the processor
  const uint32_t l = lvt(ApicReg::kLvtLint0).load(std::memory_order_relaxed);
  return !(l & apic::kMasked) &&
         ApicDeliveryMode((l & apic::kDeliveryModeMask) >> apic::kDeliveryModeShift) == ApicDeliveryMode::kExtInt;
}

// KVM's __apic_accept_irq. A software-disabled APIC drops fixed and lowest-priority messages
// but takes NMI, INIT and start-up (SDM §11.4.7.2). SMI has no SMM to go to; ExtINT reaches a
// processor only from the PIC through LINT0 (accepts_pic_interrupt).
void Lapic::accept(const ApicIrq& irq) {
  switch (irq.mode) {
    case ApicDeliveryMode::kFixed:
    case ApicDeliveryMode::kLowestPriority: {
      if (!hw_enabled() || !sw_enabled()) return;
      if (irq.vector < 16) {
        record_error(apic::kEsrReceiveIllegalVector);
        return;
      }
      const unsigned w = irq.vector >> 5;
      const uint32_t bit = 1u << (irq.vector & 31);
      if (irq.level_triggered) tmr_[w].fetch_or(bit, std::memory_order_relaxed);
      else tmr_[w].fetch_and(~bit, std::memory_order_relaxed);
      irr_[w].fetch_or(bit, std::memory_order_release);
      chip_.kick(vcpu_);
      return;
    }
    case ApicDeliveryMode::kNmi:
      nmi_pending_.store(true, std::memory_order_release);
      chip_.kick(vcpu_);
      return;
    case ApicDeliveryMode::kInit:
      // An INIT level de-assert (level-triggered, level 0) only resynchronizes arbitration IDs.
      if (irq.level_triggered && !irq.assert) return;
      vcpu_.deliver_init();
      return;
    case ApicDeliveryMode::kStartup: vcpu_.deliver_sipi(irq.vector); return;
    default: return;
  }
}

// SDM §11.6.2 (xAPIC) and §11.12.10 (x2APIC). A message with an 8-bit destination (xAPIC ICR,
// I/O APIC) reaching an x2APIC broadcasts on 0xff, as KVM's kvm_apic_mda has it.
bool Lapic::match_dest(const Lapic* source, const ApicIrq& irq) const {
  switch (irq.shorthand) {
    case apic::Shorthand::kSelf: return source == this;
    case apic::Shorthand::kAllIncludingSelf: return true;
    case apic::Shorthand::kAllExcludingSelf: return source != this;
    case apic::Shorthand::kNone: break;
  }
  const uint32_t broadcast = irq.x2apic_dest ? 0xffffffffu : 0xffu;
  if (irq.dest == broadcast) return true;
  const uint32_t ldr = ldr_.load(std::memory_order_relaxed);
  if (x2apic_mode()) {
    if (!irq.logical) return irq.dest == apic_id();
    return (irq.dest >> 16) == (ldr >> 16) && (irq.dest & ldr & 0xffff) != 0;
  }
  if (!irq.logical) return irq.dest == apic_id();
  const uint32_t mda = irq.dest & 0xff, logical_id = ldr >> 24;
  if (dfr_.load(std::memory_order_relaxed) == apic::kDfrFlat) return (logical_id & mda) != 0;
  return (logical_id >> 4) == (mda >> 4) && (logical_id & mda & 0xf) != 0;  // cluster model
}

}  // namespace nestvm::hv
