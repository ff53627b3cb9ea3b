// A guest's physical address space seen as a cpu::PhysMem: RAM through the memslots (the same
// host frames the silicon reaches through EPT01), everything else to the VM's MMIO devices.
// L0's instruction emulator runs on a processor attached to this view.
//
// While L0 emulates an instruction of L2 running on EPT12 (KVM's nested MMU, "walk_mmu" over
// "nested_mmu"), the view's addresses are L2-physical: each access, the processor's own page
// walk included, goes through L1's EPT12 to an L1-physical address first, then as above. An
// access EPT12 does not allow (not present, missing permission, misconfigured) reaches nothing
// (reads float high, writes are dropped) and is recorded: the emulator then gives L1 the EPT
// violation or misconfiguration hardware would have (SDM §29.3.3).
#pragma once
#include "arch/vmx.h"
#include "hv/guest_memory.h"
#include "hv/io_bus.h"
#include "hv/mmu/nested_ept.h"

namespace nestvm::hv {

class GuestPhysView : public cpu::PhysMem {
 public:
  GuestPhysView(GuestMemory& mem, const IoBuses& io) : mem_(mem), io_(io) {}

  // The first access EPT12 refused during this emulation: the L2-physical address and the
  // access (exit-qualification bits 2:0, SDM Table 28-7).
  struct Ept12Fault {
    bool valid = false;
    uint64_t l2_gpa = 0;
    uint64_t access = 0;
  };
  // L2-physical addressing through EPT12 = eptp12 (ept: the vCPU's EPT02, which walks EPT12), or
  // L1-physical with ept == nullptr. Clears the recorded fault.
  void set_ept12(NestedEpt* ept, uint64_t eptp12) {
    ept_ = ept;
    eptp12_ = eptp12;
    fault_ = {};
  }
  const Ept12Fault& ept12_fault() const { return fault_; }

  // RAM pages are handed out when EPT12 allows reading them (fetches and writes of the
  // emulated instruction go through the same pointer: EPT12's write and execute permissions
  // are not checked for them, only for accesses that reach devices).
  uint8_t* ram_page(uint64_t gpa) override {
    if (ept_ && !to_l1(gpa, arch::ept::kRead, 0, gpa)) return nullptr;
    const uint64_t h = mem_.backing(gpa);
    return h ? mem_.host().frame(h) : nullptr;
  }
  cpu::PageMeta& page_meta(uint64_t gpa) override {
    if (ept_) (void)to_l1(gpa, arch::ept::kRead, 0, gpa);  // only called for pages ram_page gave
    return mem_.host().page_meta(mem_.backing(gpa));
  }
  uint64_t mmio_read(uint64_t gpa, unsigned size) override {
    if (ept_) {
      if (!to_l1(gpa, arch::ept::kRead, arch::exit_qual::ept::kRead, gpa)) return ~0ull >> (64 - 8 * size);
      uint64_t v = 0;
      if (mem_.is_ram(gpa)) return mem_.read(gpa, &v, size) ? v : ~0ull >> (64 - 8 * size);
    }
    return io_.mmio_read(gpa, size);
  }
  void mmio_write(uint64_t gpa, unsigned size, uint64_t v) override {
    if (ept_) {
      if (!to_l1(gpa, arch::ept::kWrite, arch::exit_qual::ept::kWrite, gpa)) return;
      if (mem_.is_ram(gpa)) {
        (void)mem_.write(gpa, &v, size);
        return;
      }
    }
    io_.mmio_write(gpa, size, v);
  }
  // Decoded code must stay coherent with the vCPUs running on the host frames.
  cpu::CodeTracker& code_tracker() override { return mem_.host().code_tracker(); }

 private:
  // L2-physical gpa to L1-physical out through EPT12, needing permission `need`; a refusal with
  // a nonzero `access` is recorded as the emulation's EPT12 fault.
  bool to_l1(uint64_t gpa, unsigned need, uint64_t access, uint64_t& out) {
    unsigned rwx = 0;
    const std::optional<uint64_t> l1 = ept_->translate(eptp12_, gpa, &rwx);
    if (l1 && (rwx & need)) {
      out = *l1;
      return true;
    }
    if (access && !fault_.valid) fault_ = {true, gpa, access};
    return false;
  }

  GuestMemory& mem_;
  const IoBuses& io_;
  NestedEpt* ept_ = nullptr;
  uint64_t eptp12_ = 0;
  Ept12Fault fault_;
};

}  // namespace nestvm::hv
