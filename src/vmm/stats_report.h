// --stats and --stats-json: L0's statistics at exit, per vCPU and in total. A snapshot is taken
// from the Vm once its vCPUs have stopped, then printed as text (stderr: stdout carries the
// guest's serial port) or written as JSON.
//
// What the figures mean:
//   exits           VM exits from L1 to L0, by basic exit reason (SDM Appendix C names)
//   L2 exits        with nested VMX, VM exits from L2: handled by L0 (L2 resumed), or reflected
//                   to L1 (L1's VM exit); L2 entries are the VMLAUNCH/VMRESUME that entered L2
//   instructions    guest instructions retired by the silicon in VMX non-root operation
//   guest time      wall time inside the silicon (VM entry to VM exit)
//   L0 time         wall time in L0's exit handlers (device emulation included)
//   halted time     wall time a vCPU slept in L0 after HLT, waiting for an interrupt
//   EPT violations  the exits that build EPT01 lazily (and MMIO accesses)
//   TDP pages       guest pages EPT01 maps, and the EPT table pages holding them
//   backed pages    guest RAM pages that have a host frame (touched at least once)
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "arch/vmx.h"
#include "vmm/result.h"

namespace nestvm::hv {
class Vm;
}

namespace nestvm::vmm {

struct VcpuFigures {
  std::array<uint64_t, arch::kNumExitReasons> exits{};
  uint64_t instructions = 0;
  uint64_t guest_ns = 0, l0_ns = 0, halted_ns = 0;
  uint64_t injected_interrupts = 0;
  uint64_t emulated_instructions = 0;
  std::array<uint64_t, arch::kNumExitReasons> l2_exits_l0{}, l2_exits_reflected{};
  uint64_t nested_entries = 0;
  uint64_t total_exits() const;
  uint64_t total_l2_exits_l0() const;
  uint64_t total_l2_exits_reflected() const;
  void add(const VcpuFigures& o);
};

// The MMU counters of hv::MmuStats, read once (see kMmuCounters in stats_report.cpp for their
// names and meaning); indexed by MmuCounter.
enum class MmuCounter : uint8_t {
  kEptViolations, kTdpMappedPages, kTdpTablePages, kTdpZappedPages,
  kShadowPages, kShadowMappedPages, kShadowPagesCreated, kShadowPagesZapped, kShadowPageFaults,
  kShadowFaultsFixed, kGuestPageFaults, kMmioPageFaults, kWriteProtectFaults, kPteWritesZapped,
  kInvlpg, kCr3Loads, kRemoteTlbFlushes, kEmulatedBlocks,
  kEpt02Violations, kEpt02MappedPages, kEpt02TablePages, kEpt02Roots,
  kCount
};

struct StatsSnapshot {
  std::vector<VcpuFigures> vcpus;
  VcpuFigures total;
  bool ept = true;  // TDP (EPT01) or shadow paging
  std::array<uint64_t, size_t(MmuCounter::kCount)> mmu{};
  uint64_t mmu_counter(MmuCounter c) const { return mmu[size_t(c)]; }
  uint64_t ram_bytes = 0, backed_pages = 0, host_pages = 0;
  uint64_t wall_ns = 0;
  std::string stop_reason;  // "debug-exit", "shutdown", "signal", "error"
  int exit_status = 0;
};

StatsSnapshot take_stats(hv::Vm& vm, uint64_t wall_ns, std::string stop_reason, int exit_status);

std::string format_stats(const StatsSnapshot& s);
std::string stats_json_text(const StatsSnapshot& s);
Result<Ok> write_stats_json(const StatsSnapshot& s, const std::string& path);

}  // namespace nestvm::vmm
