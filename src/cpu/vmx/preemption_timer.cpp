// The VMX-preemption timer (SDM Vol. 3 §26.5.1, §27.7.4): it counts down by one each time bit X
// of the TSC changes, X = IA32_VMX_MISC[4:0], while the processor is in non-root operation
// (HLT and shutdown included), and exits at 0. Kept as the host TSC at which it reaches 0, which
// the run loop compares at block boundaries (Cpu::vmx_timer_due): nothing per instruction.
#include <x86intrin.h>

#include <thread>

#include "cpu/cpu.h"

namespace nestvm::cpu {

using namespace arch;

void Cpu::vmx_arm_timer(uint32_t value) {
  const unsigned shift = unsigned(vmx_caps_.misc & vmx_misc::kPreemptionTimerRateMask);
  // The count drops when bit `shift` changes: `value` changes of it from now.
  vmx_.events.timer_deadline = ((__rdtsc() >> shift) + value) << shift;
  vmx_.events.timer_armed = true;
}

bool Cpu::vmx_timer_expired() const { return __rdtsc() >= vmx_.events.timer_deadline; }

uint32_t Cpu::vmx_timer_value() const {
  const unsigned shift = unsigned(vmx_caps_.misc & vmx_misc::kPreemptionTimerRateMask);
  const uint64_t now = __rdtsc() >> shift, end = vmx_.events.timer_deadline >> shift;
  return now >= end ? 0 : uint32_t(end - now);
}

// HLT in non-root operation with the timer running: the processor stays halted until the timer
// expires or another thread signals an event, whichever comes first.
void Cpu::vmx_wait_halted() {
  constexpr uint32_t kWake =
      attention::kIntr | attention::kNmi | attention::kKick | attention::kInit | attention::kSipi;
  while (!(attention_.load(std::memory_order_acquire) & kWake) && !vmx_timer_expired()) {
    _mm_pause();
    std::this_thread::yield();
  }
}

}  // namespace nestvm::cpu
