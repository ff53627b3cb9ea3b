// The TDP MMU (KVM's x86 MMU with two-dimensional paging, seed 002): EPT01, a direct map of
// guest-physical to host-physical built lazily on EPT violations and rarely invalidated. Its
// tables are host-physical frames the silicon walks. A reverse map from host frame to the EPT01
// leaf that maps it makes zapping and reclaim exact; a zap drops leaves (and the tables under
// them) and flushes every vCPU's cached translations before it returns.
#pragma once
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "hv/guest_memory.h"
#include "hv/mmu/rmap.h"
#include "hv/stats.h"

namespace nestvm::hv {

class TdpMmu {
 public:
  // flush_remote_tlbs: drops the cached EPT translations of every vCPU and returns once none
  // can use them (Vm::flush_remote_tlbs, KVM's kvm_flush_remote_tlbs).
  TdpMmu(HostMemory& host, GuestMemory& mem, MmuStats& stats, std::function<void()> flush_remote_tlbs = {});
  ~TdpMmu();
  TdpMmu(const TdpMmu&) = delete;
  TdpMmu& operator=(const TdpMmu&) = delete;

  // The EPTP for vmcs01: write-back tables, 4-level walk, accessed/dirty flags off.
  uint64_t eptp() const { return root_ | 6 | (3u << 3); }

  enum class Fault : uint8_t {
    kFixed,        // mapped now: re-enter the guest
    kMmio,         // not RAM: the access goes to a device (emulate it)
    kOutOfMemory,  // host memory exhausted
  };
  // An EPT violation from L1 at gpa.
  Fault handle_ept_violation(uint64_t gpa);

  // Unmaps guest frames [gfn_start, gfn_end) (KVM's kvm_tdp_mmu_zap_leafs): L1 faults them
  // back in. Tables wholly inside the range go too.
  void zap_gfn_range(uint64_t gfn_start, uint64_t gfn_end);
  // Unmaps everything (KVM's kvm_tdp_mmu_zap_all); the root stays.
  void zap_all();

  // The host-physical addresses of the EPT01 leaves that map host frame hpa.
  std::vector<uint64_t> leaves_mapping(uint64_t hpa);
  // Checks the reverse map against the tables (every present leaf recorded under the frame it
  // maps, nothing else recorded) and the counters; on failure says why.
  bool audit(std::string* why = nullptr);

  uint64_t mapped_pages() const { return mapped_; }
  uint64_t table_pages() const { return tables_; }

 private:
  uint64_t* table(uint64_t hpa) { return reinterpret_cast<uint64_t*>(host_.frame(hpa)); }
  uint64_t* entry_for(uint64_t gpa, bool create);
  bool zap_table(uint64_t table_hpa, int level, uint64_t base_gfn, uint64_t start, uint64_t end,
                 std::vector<uint64_t>& freed);
  void drop_table(uint64_t table_hpa, int level, std::vector<uint64_t>& freed);
  void commit_zap(bool flush, std::vector<uint64_t>& freed);

  HostMemory& host_;
  GuestMemory& mem_;
  MmuStats& stats_;
  std::function<void()> flush_remote_tlbs_;
  uint64_t root_;
  std::mutex mu_;  // vCPUs fault concurrently (KVM's mmu_lock)
  Rmap rmap_;      // host frame -> EPT01 leaf
  uint64_t mapped_ = 0;
  uint64_t tables_ = 1;
};

}  // namespace nestvm::hv
