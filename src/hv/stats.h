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
  // Nested VMX: `exits` above counts L1's exits; L2's are counted by who handled them (KVM's
  // nested_vmx_l0_wants_exit / l1_wants_exit), and VMLAUNCH/VMRESUME that entered L2.
  std::array<std::atomic<uint64_t>, arch::kNumExitReasons> l2_exits_l0{};         // handled by L0, L2 resumed
  std::array<std::atomic<uint64_t>, arch::kNumExitReasons> l2_exits_reflected{};  // reflected to L1
  std::atomic<uint64_t> nested_entries{0};
  uint64_t total_exits() const {
    uint64_t n = 0;
    for (const auto& e : exits) n += e.load(std::memory_order_relaxed);
    return n;
  }
};

// The MMUs' counters, VM-wide (KVM's kvm->stat for the MMU). Gauges say how much exists now;
// the rest count events since the VM started.
struct MmuStats {
  // TDP (EPT01).
  std::atomic<uint64_t> ept_violations{0};    // EPT violations the TDP MMU handled (RAM and MMIO)
  std::atomic<uint64_t> tdp_mapped_pages{0};  // gauge: present EPT01 leaves
  std::atomic<uint64_t> tdp_table_pages{0};   // gauge: EPT01 tables
  std::atomic<uint64_t> tdp_zapped_pages{0};  // EPT01 leaves zapped
  // Shadow paging (ept=off).
  std::atomic<uint64_t> shadow_pages{0};          // gauge: shadow pages (tables) L0 holds
  std::atomic<uint64_t> shadow_mapped_pages{0};   // gauge: present shadow leaves
  std::atomic<uint64_t> shadow_pages_created{0};
  std::atomic<uint64_t> shadow_pages_zapped{0};   // whole shadow pages zapped (flooding, limit, zap all)
  std::atomic<uint64_t> shadow_page_faults{0};    // #PF exits L0 looked at
  std::atomic<uint64_t> shadow_faults_fixed{0};   // ... fixed by building shadow entries
  std::atomic<uint64_t> guest_page_faults{0};     // ... that were L1's own (#PF injected)
  std::atomic<uint64_t> mmio_page_faults{0};      // ... on device memory (emulated)
  std::atomic<uint64_t> write_protect_faults{0};  // writes to write-protected guest page tables (emulated)
  std::atomic<uint64_t> pte_writes_zapped{0};     // shadow entries zapped because L1 changed their guest entry
  std::atomic<uint64_t> invlpg{0};
  std::atomic<uint64_t> cr3_loads{0};
  std::atomic<uint64_t> remote_tlb_flushes{0};    // flushes of every vCPU's cached translations
  std::atomic<uint64_t> emulated_blocks{0};       // blocks run on the emulator for invalid guest state
  // Nested EPT (EPT02, hv/mmu/nested_ept.h), over every vCPU's cache.
  std::atomic<uint64_t> ept02_violations{0};    // EPT violations from L2 L0 looked at
  std::atomic<uint64_t> ept02_mapped_pages{0};  // gauge: present EPT02 leaves
  std::atomic<uint64_t> ept02_table_pages{0};   // gauge: EPT02 tables, roots included
  std::atomic<uint64_t> ept02_roots{0};         // gauge: cached EPT02 roots
};

}  // namespace nestvm::hv
