// EPT02 (seed 000, KVM's shadow MMU with a guest-mode role for nested EPT): the EPT tables the
// silicon walks while L2 runs, a shadow of L1's EPT12 composed with L0's own map of L1 memory.
// Built lazily on EPT violations from L2: walk EPT12 in L1 memory; not mapped or not allowed
// there -> an EPT violation for L1, malformed -> an EPT misconfiguration for L1; mapped ->
// resolve the L1-physical page through L0's memslots and install a 4 KiB leaf with the
// intersection of the permissions. One instance per vCPU (INVEPT acts on the logical processor
// that executes it, SDM Vol. 2 INVEPT), roots cached by EPTP12 (not by CR3, which means
// different things in L1 and L2), so switching between L1 and L2 or between L2 guests keeps
// their tables. A reverse map from host frame to EPT02 leaf, over every cached root, lets L0
// take a host page back from all of them.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

#include "hv/guest_memory.h"
#include "hv/mmu/rmap.h"
#include "hv/stats.h"

namespace nestvm::hv {

class NestedEpt {
 public:
  // ept_vpid_cap and maxphyaddr: what L1 was offered (IA32_VMX_EPT_VPID_CAP, CPUID), which
  // decide what EPT12 may hold. flush(eptp02): drop the silicon's cached translations tagged by
  // an EPT02 root before its tables change or go (the vCPU's INVEPT single-context).
  NestedEpt(HostMemory& host, GuestMemory& mem, MmuStats& stats, uint64_t ept_vpid_cap, int maxphyaddr,
            std::function<void(uint64_t eptp02)> flush = {});
  ~NestedEpt();
  NestedEpt(const NestedEpt&) = delete;
  NestedEpt& operator=(const NestedEpt&) = delete;

  // The EPTP vmcs02 uses while L2 runs on EPT12 = eptp12: its cached root, or a new empty one
  // (0 when host memory is exhausted). Write-back tables, 4-level walk, A/D flags off.
  uint64_t eptp02(uint64_t eptp12);

  struct Fault {
    enum class Kind : uint8_t {
      kFixed,        // EPT02 maps the page now: re-enter L2
      kViolation,    // EPT12 does not allow the access: EPT violation for L1 (qualification)
      kMisconfig,    // EPT12 is malformed: EPT misconfiguration for L1
      kMmio,         // EPT12 maps it to L1-physical l1_gpa, which is not RAM
      kOutOfMemory,
    };
    Kind kind = Kind::kFixed;
    uint64_t qualification = 0;  // kViolation: the exit qualification hardware gives L1
    uint64_t l1_gpa = 0;
  };
  // An EPT violation from L2 at l2_gpa with the silicon's exit qualification qual02 (SDM
  // Table 28-7), while L2 runs on EPT12 = eptp12.
  Fault handle_violation(uint64_t eptp12, uint64_t l2_gpa, uint64_t qual02);

  // The L1-physical address EPT12 maps l2_gpa to, if it maps it (a walk that sets no flags);
  // rwx, if given, receives the permissions every entry of the walk allowed.
  std::optional<uint64_t> translate(uint64_t eptp12, uint64_t l2_gpa, unsigned* rwx = nullptr);

  // INVEPT from L1 (SDM Vol. 3 §29.4.3.1): single-context drops the root of eptp12 (its EP4TA),
  // all-context every root.
  void invalidate(uint64_t eptp12);
  void invalidate_all();
  // L0 takes host frame hpa back: every EPT02 leaf mapping it, in every cached root, goes.
  void zap_host_frame(uint64_t hpa);

  size_t roots() const { return roots_.size(); }
  uint64_t mapped_pages() const { return rmap_.size(); }
  uint64_t table_pages() const { return tables_; }
  // The EPT02 leaves (host-physical addresses of the entries) that map host frame hpa.
  std::vector<uint64_t> leaves_mapping(uint64_t hpa) const { return rmap_.entries(hpa >> 12); }

 private:
  struct Root {
    uint64_t hpa = 0;
    std::vector<uint64_t> tables;  // every table below the root, for dropping it
  };
  struct Walk;
  bool walk_ept12(uint64_t eptp12, uint64_t l2_gpa, Walk& w);
  uint64_t* leaf_for(Root& root, uint64_t l2_gpa);
  void drop_root(uint64_t ep4ta, Root& root);
  uint64_t* entry(uint64_t hpa) { return reinterpret_cast<uint64_t*>(host_.frame(hpa) + (hpa & 0xfff)); }

  HostMemory& host_;
  GuestMemory& mem_;
  MmuStats& stats_;
  uint64_t ept_vpid_cap_;
  int maxphyaddr_;
  std::function<void(uint64_t)> flush_;
  std::unordered_map<uint64_t, Root> roots_;  // keyed by EPTP12's EP4TA (bits 51:12)
  Rmap rmap_;                                  // host frame -> EPT02 leaf
  uint64_t tables_ = 0;
};

}  // namespace nestvm::hv
