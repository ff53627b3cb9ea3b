// The TDP MMU (KVM's x86 MMU with two-dimensional paging, seed 002): EPT01, a direct map of
// guest-physical to host-physical built lazily on EPT violations and rarely invalidated. Its
// tables are host-physical frames the silicon walks.
#pragma once
#include <cstdint>
#include <mutex>

#include "hv/guest_memory.h"

namespace nestvm::hv {

class TdpMmu {
 public:
  TdpMmu(HostMemory& host, GuestMemory& mem);

  // The EPTP for vmcs01: write-back tables, 4-level walk, accessed/dirty flags off.
  uint64_t eptp() const { return root_ | 6 | (3u << 3); }

  enum class Fault : uint8_t {
    kFixed,        // mapped now: re-enter the guest
    kMmio,         // not RAM: the access goes to a device (emulate it)
    kOutOfMemory,  // host memory exhausted
  };
  // An EPT violation from L1 at gpa.
  Fault handle_ept_violation(uint64_t gpa);

  uint64_t mapped_pages() const { return mapped_; }
  uint64_t table_pages() const { return tables_; }

 private:
  uint64_t* entry_for(uint64_t gpa, bool create);
  HostMemory& host_;
  GuestMemory& mem_;
  uint64_t root_;
  std::mutex mu_;  // vCPUs fault concurrently (KVM's mmu_lock)
  uint64_t mapped_ = 0;
  uint64_t tables_ = 1;
};

}  // namespace nestvm::hv
