// The local APIC of one vCPU, as KVM's struct kvm_lapic (arch/x86/kvm/lapic.c): xAPIC mode
// (a 4 KiB MMIO page at IA32_APIC_BASE) and x2APIC mode (MSRs 0x800-0x8ff), interrupt
// acceptance (IRR/ISR/TMR, TPR/PPR, EOI), inter-processor interrupts through the ICR, the local
// vector table and the timer (one-shot, periodic, TSC-deadline).
//
// Threads: the owning vCPU's thread does everything except accept() and the destination
// queries, which the senders (other vCPUs, the I/O APIC and the PIC on device threads) call.
// What senders touch is atomic (IRR, TMR, the NMI latch, the error latch and the registers
// destination matching reads); the rest is the owner's alone, so the vCPU's path takes no lock.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>

#include "arch/apic.h"

namespace nestvm::hv {

class PcIrqChip;
class Vcpu;

// An interrupt message on the APIC bus (KVM's struct kvm_lapic_irq).
struct ApicIrq {
  uint8_t vector = 0;
  arch::ApicDeliveryMode mode = arch::ApicDeliveryMode::kFixed;
  bool logical = false;          // destination mode
  bool assert = true;            // the ICR's level bit: false only for an INIT level de-assert
  bool level_triggered = false;  // trigger mode (sets the TMR bit at the receiver)
  arch::apic::Shorthand shorthand = arch::apic::Shorthand::kNone;
  uint32_t dest = 0;
  bool x2apic_dest = false;  // a 32-bit x2APIC destination; else 8 bits (xAPIC, I/O APIC)
};

class Lapic {
 public:
  // The timer's input clock: KVM's APIC bus of 1 GHz (APIC_BUS_CYCLE_NS = 1), so one
  // initial-count unit at divide-by-1 is one nanosecond.
  static constexpr uint64_t kBusCycleNs = 1;
  // KVM's min_timer_period_us: a periodic timer is never faster than this, so that a guest
  // cannot flood L0 with expiries.
  static constexpr uint64_t kMinPeriodNs = 200000;

  Lapic(PcIrqChip& chip, Vcpu& vcpu);
  Lapic(const Lapic&) = delete;
  Lapic& operator=(const Lapic&) = delete;

  // Power-on reset (init = false: IA32_APIC_BASE back to 0xfee00000, enabled) or INIT
  // (keeps IA32_APIC_BASE and the mode; SDM §11.4.7.3).
  void reset(bool init);

  // ---- the owning vCPU's thread --------------------------------------------------------
  uint64_t apic_base() const { return apic_base_.load(std::memory_order_relaxed); }
  bool set_apic_base(uint64_t value);  // false: #GP (SDM §11.4.4, §11.12.5)
  // The xAPIC page: `gpa` is in it while the APIC is enabled in xAPIC mode.
  bool mmio_in_range(uint64_t gpa) const;
  uint64_t mmio_read(uint64_t gpa, unsigned size);
  void mmio_write(uint64_t gpa, unsigned size, uint64_t value);
  // x2APIC registers as MSRs (SDM §11.12.1); false: #GP.
  bool msr_read(uint32_t msr, uint64_t& value);
  bool msr_write(uint32_t msr, uint64_t value);
  // IA32_TSC_DEADLINE (SDM §11.5.4.1), in the guest's TSC.
  uint64_t tsc_deadline() const;
  void set_tsc_deadline(uint64_t guest_tsc);

  // The vector the APIC would present now (highest IRR above the processor priority), or -1.
  int pending_vector();
  // INTA: the vector moves from the IRR to the ISR; -1 if none is deliverable.
  int acknowledge();
  bool nmi_pending() const { return nmi_pending_.load(std::memory_order_acquire); }
  bool take_nmi() { return nmi_pending_.exchange(false, std::memory_order_acq_rel); }
  // The timer's next expiry in host TSC ticks (~0: not armed), and expiry at `now`.
  uint64_t timer_deadline() const { return timer_.deadline; }
  void expire_timer(uint64_t now);

  // ---- any thread ------------------------------------------------------------------------
  bool hw_enabled() const { return apic_base() & kBaseEnable; }
  bool x2apic_mode() const { return (apic_base() & (kBaseEnable | kBaseExtd)) == (kBaseEnable | kBaseExtd); }
  bool sw_enabled() const { return svr_.load(std::memory_order_relaxed) & arch::apic::kSvrEnable; }
  // The APIC ID (8 bits in xAPIC mode, 32 in x2APIC mode).
  uint32_t apic_id() const;
  // LINT0 takes the PIC's INTR as ExtINT (KVM's kvm_apic_accept_pic_intr).
  bool accepts_pic_interrupt() const;
  // Destination matching (SDM §11.6.2; KVM's kvm_apic_match_dest). `source` is the sending
  // APIC (nullptr for the I/O APIC).
  bool match_dest(const Lapic* source, const ApicIrq& irq) const;
  // Accepts a message addressed to this APIC (KVM's __apic_accept_irq) and makes the vCPU
  // look at it.
  void accept(const ApicIrq& irq);
  // An interrupt through a local vector table entry (KVM's kvm_apic_local_deliver).
  void local_deliver(arch::ApicReg lvt);
  Vcpu& vcpu() { return vcpu_; }

 private:
  static constexpr uint64_t kBaseBsp = 1ull << 8;
  static constexpr uint64_t kBaseExtd = 1ull << 10;
  static constexpr uint64_t kBaseEnable = 1ull << 11;
  static constexpr unsigned kNumLvt = 6;  // timer, thermal, performance, LINT0, LINT1, error

  struct Timer {
    uint64_t deadline = ~0ull;  // host TSC of the next expiry
    uint64_t period = 0;        // host TSC ticks per period (periodic mode)
    uint64_t start = 0;         // host TSC at which the current count started
    uint32_t initial_count = 0;
    uint32_t divide_config = 0;
    uint64_t tsc_deadline = 0;  // IA32_TSC_DEADLINE as the guest wrote it
  };

  // Register access shared by the MMIO page and the MSRs; false: not a register in this mode
  // (xAPIC: an illegal register address; x2APIC: #GP).
  bool read_reg(unsigned offset, uint64_t& value);
  bool write_reg(unsigned offset, uint64_t value);
  uint32_t lvt_writable(arch::ApicReg r) const;

  void sync_tpr();
  uint32_t ppr() const;
  int highest_isr() const;
  int highest_irr() const;
  void eoi();
  void send_ipi(uint32_t icr_low, uint32_t dest);
  void record_error(uint32_t esr_bit);
  void set_svr(uint32_t value);
  void set_lvt(arch::ApicReg r, uint32_t value);
  std::atomic<uint32_t>& lvt(arch::ApicReg r) { return lvt_[(unsigned(r) - unsigned(arch::ApicReg::kLvtTimer)) >> 4]; }
  const std::atomic<uint32_t>& lvt(arch::ApicReg r) const {
    return lvt_[(unsigned(r) - unsigned(arch::ApicReg::kLvtTimer)) >> 4];
  }
  void set_default_id();

  // Timer (lapic_timer.cpp).
  arch::apic::TimerMode timer_mode() const;
  unsigned timer_divisor() const;
  void start_timer(uint64_t now);
  void cancel_timer();
  uint32_t current_count(uint64_t now) const;
  void set_divide_config(uint32_t value);
  void timer_mode_changed();

  PcIrqChip& chip_;
  Vcpu& vcpu_;
  const bool bsp_;
  const bool has_x2apic_;        // the VM's CPU model (-cpu) has x2apic
  const bool has_tsc_deadline_;  // ... and tsc-deadline
  const int maxphyaddr_;
  std::atomic<uint64_t> apic_base_{0};
  std::atomic<uint32_t> id_{0};  // the ID register: ID << 24 in xAPIC mode, the ID in x2APIC mode
  std::atomic<uint32_t> ldr_{0};
  std::atomic<uint32_t> dfr_{arch::apic::kDfrFlat};
  std::atomic<uint32_t> svr_{0xff};
  std::array<std::atomic<uint32_t>, kNumLvt> lvt_{};
  std::array<std::atomic<uint32_t>, 8> irr_{};
  std::array<std::atomic<uint32_t>, 8> tmr_{};
  std::array<uint32_t, 8> isr_{};
  std::atomic<bool> nmi_pending_{false};
  std::atomic<uint32_t> errors_{0};  // errors since the last ESR write (SDM §11.5.3)
  std::atomic<bool> in_error_{false};
  uint32_t esr_ = 0;
  uint32_t tpr_ = 0;
  uint64_t cr8_seen_ = 0;  // CR8 as last reconciled with the TPR (see sync_tpr)
  uint32_t icr_low_ = 0;
  uint32_t icr_high_ = 0;
  Timer timer_;
};

}  // namespace nestvm::hv
