// L0's statistics: every VM exit counted by reason, MMU counters, time in the guest and in L0,
// instructions retired. Printed by --stats and written as JSON by --stats-json (src/vmm).
#pragma once
#include <array>
#include <atomic>
#include <cstdint>

#include "arch/vmx.h"

namespace nestvm::hv {

struct VcpuStats {
  std::array<std::atomic<uint64_t>, arch::kNumExitReasons> exits{};
  std::atomic<uint64_t> guest_ns{0};  // time inside the silicon (non-root operation)
  std::atomic<uint64_t> l0_ns{0};     // time in exit handlers
  std::atomic<uint64_t> halted_ns{0};
  std::atomic<uint64_t> injected_interrupts{0};
  std::atomic<uint64_t> emulated_instructions{0};
  std::atomic<uint64_t> instructions{0};
  uint64_t total_exits() const {
    uint64_t n = 0;
    for (const auto& e : exits) n += e.load(std::memory_order_relaxed);
    return n;
  }
};

}  // namespace nestvm::hv
