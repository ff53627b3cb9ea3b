// The local APIC timer (SDM §11.5.4; KVM's lapic_timer): a count of APIC bus cycles through
// the divide configuration, one-shot or periodic, or the TSC-deadline mode. Deadlines are in
// host TSC ticks: the vCPU loop turns the nearest one into the VMX-preemption timer, and a
// halted vCPU sleeps until it.
#include <algorithm>

#include "hv/clock.h"
#include "hv/irqchip/lapic.h"
#include "hv/irqchip/pc_irqchip.h"
#include "hv/vcpu.h"

namespace nestvm::hv {

using arch::ApicReg;
namespace apic = arch::apic;

arch::apic::TimerMode Lapic::timer_mode() const {
  return apic::TimerMode((lvt(ApicReg::kLvtTimer).load(std::memory_order_relaxed) & apic::kTimerModeMask) >>
                         apic::kTimerModeShift);
}

// SDM Figure 11-10: bits 3, 1:0 select divide by 2, 4, ..., 128, and 111b by 1.
unsigned Lapic::timer_divisor() const {
  const unsigned v = ((timer_.divide_config >> 1) & 4) | (timer_.divide_config & 3);
  return v == 7 ? 1 : 2u << v;
}

void Lapic::cancel_timer() { timer_.deadline = ~0ull; }

// A write to the initial count (re)starts the count; zero stops it (SDM §11.5.4).
void Lapic::start_timer(uint64_t now) {
  if (timer_.initial_count == 0) {
    cancel_timer();
    return;
  }
  uint64_t ns = uint64_t(timer_.initial_count) * timer_divisor() * kBusCycleNs;
  if (timer_mode() == apic::TimerMode::kPeriodic) ns = std::max(ns, kMinPeriodNs);
  timer_.period = std::max<uint64_t>(ns_to_tsc(ns), 1);
  timer_.start = now;
  timer_.deadline = now + timer_.period;
}

// The current count: the time left to the expiry in bus cycles through the divider. It reads 0
// once a one-shot count is done and always in TSC-deadline mode.
uint32_t Lapic::current_count(uint64_t now) const {
  if (timer_mode() == apic::TimerMode::kTscDeadline || timer_.deadline == ~0ull || timer_.initial_count == 0)
    return 0;
  uint64_t left;
  if (now < timer_.deadline) left = timer_.deadline - now;
  else if (timer_mode() == apic::TimerMode::kPeriodic) left = timer_.period - (now - timer_.start) % timer_.period;
  else return 0;
  const uint64_t count = tsc_to_ns(left) / (uint64_t(timer_divisor()) * kBusCycleNs);
  return uint32_t(std::min<uint64_t>(count, timer_.initial_count));
}

// A new divider applies to what is left of the running count, and to the periods after it
// (KVM's update_target_expiration).
void Lapic::set_divide_config(uint32_t value) {
  const unsigned old_divisor = timer_divisor();
  timer_.divide_config = value;
  const unsigned divisor = timer_divisor();
  if (divisor == old_divisor || timer_.deadline == ~0ull || timer_mode() == apic::TimerMode::kTscDeadline) return;
  const uint64_t now = chip_.now();
  const uint64_t left_ns = now < timer_.deadline ? tsc_to_ns(timer_.deadline - now) * divisor / old_divisor : 0;
  uint64_t period_ns = uint64_t(timer_.initial_count) * divisor * kBusCycleNs;
  if (timer_mode() == apic::TimerMode::kPeriodic) period_ns = std::max(period_ns, kMinPeriodNs);
  timer_.period = std::max<uint64_t>(ns_to_tsc(period_ns), 1);
  timer_.deadline = now + ns_to_tsc(left_ns);
  timer_.start = timer_.deadline - timer_.period;
}

// Switching between one-shot/periodic and TSC-deadline disarms the timer (SDM §11.5.4.1), as
// does any change of mode in KVM (apic_update_lvtt).
void Lapic::timer_mode_changed() {
  cancel_timer();
  timer_.initial_count = 0;
  timer_.tsc_deadline = 0;
}

uint64_t Lapic::tsc_deadline() const {
  return timer_mode() == apic::TimerMode::kTscDeadline ? timer_.tsc_deadline : 0;
}

// SDM §11.5.4.1: outside TSC-deadline mode writes are ignored; zero disarms; a deadline at or
// before the current TSC fires at once. The guest's TSC is the host's plus L1's offset.
void Lapic::set_tsc_deadline(uint64_t guest_tsc) {
  if (timer_mode() != apic::TimerMode::kTscDeadline) return;
  timer_.tsc_deadline = guest_tsc;
  if (guest_tsc == 0) {
    cancel_timer();
    return;
  }
  const uint64_t now = chip_.now();
  const uint64_t guest_now = now + vcpu_.core().state.msr.tsc_offset;
  timer_.deadline = int64_t(guest_tsc - guest_now) > 0 ? now + (guest_tsc - guest_now) : now;
}

// Expiry: the timer interrupt through LVT Timer (a masked entry still counts); periodic mode
// reloads on the period grid, dropping periods that passed unseen (the IRR holds one anyway).
void Lapic::expire_timer(uint64_t now) {
  if (timer_.deadline > now) return;
  switch (timer_mode()) {
    case apic::TimerMode::kPeriodic:
      timer_.deadline = timer_.start + ((now - timer_.start) / timer_.period + 1) * timer_.period;
      break;
    case apic::TimerMode::kTscDeadline:
      timer_.tsc_deadline = 0;
      cancel_timer();
      break;
    default: cancel_timer(); break;
  }
  local_deliver(ApicReg::kLvtTimer);
}

}  // namespace nestvm::hv
