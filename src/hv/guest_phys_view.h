// A guest's physical address space seen as a cpu::PhysMem: RAM through the memslots (the same
// host frames the silicon reaches through EPT01), everything else to the VM's MMIO devices.
// L0's instruction emulator runs on a processor attached to this view.
#pragma once
#include "hv/guest_memory.h"
#include "hv/io_bus.h"

namespace nestvm::hv {

class GuestPhysView : public cpu::PhysMem {
 public:
  GuestPhysView(GuestMemory& mem, const IoBuses& io) : mem_(mem), io_(io) {}
  uint8_t* ram_page(uint64_t gpa) override {
    const uint64_t h = mem_.backing(gpa);
    return h ? mem_.host().frame(h) : nullptr;
  }
  cpu::PageMeta& page_meta(uint64_t gpa) override { return mem_.host().page_meta(mem_.backing(gpa)); }
  uint64_t mmio_read(uint64_t gpa, unsigned size) override { return io_.mmio_read(gpa, size); }
  void mmio_write(uint64_t gpa, unsigned size, uint64_t v) override { io_.mmio_write(gpa, size, v); }
  // Decoded code must stay coherent with the vCPUs running on the host frames.
  cpu::CodeTracker& code_tracker() override { return mem_.host().code_tracker(); }

 private:
  GuestMemory& mem_;
  const IoBuses& io_;
};

}  // namespace nestvm::hv
