// nestvm's host-physical address space, owned by L0: a page allocator over a reserved range of
// host virtual memory. Guest RAM frames, VMCSs, EPT tables and shadow pages are all frames of
// it, reached by the silicon through their host-physical address (cpu::PhysMem). Only allocated
// frames are RAM; everything else reads as a floating bus.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "cpu/phys_mem.h"

namespace nestvm::hv {

class HostMemory : public cpu::PhysMem {
 public:
  // Reserves (but does not commit) max_bytes of host-physical space.
  explicit HostMemory(uint64_t max_bytes);
  ~HostMemory() override;
  HostMemory(const HostMemory&) = delete;
  HostMemory& operator=(const HostMemory&) = delete;

  // A zeroed 4 KiB frame; 0 when the space is exhausted (frame 0 is never handed out).
  uint64_t alloc_page();
  void free_page(uint64_t hpa);

  uint8_t* ram_page(uint64_t hpa) override {
    const uint64_t f = hpa >> 12;
    if (f >= frames_ || !allocated_[f].load(std::memory_order_acquire)) return nullptr;
    return base_ + (f << 12);
  }
  cpu::PageMeta& page_meta(uint64_t hpa) override { return meta_[hpa >> 12]; }

  // Host pointer to an allocated frame (L0's own accesses to its structures).
  uint8_t* frame(uint64_t hpa) { return base_ + (hpa & ~0xfffull); }
  uint64_t allocated_pages() const { return allocated_count_.load(std::memory_order_relaxed); }
  uint64_t capacity_pages() const { return frames_; }

 private:
  uint8_t* base_ = nullptr;
  uint64_t frames_ = 0;
  cpu::PageMeta* meta_ = nullptr;
  std::unique_ptr<std::atomic<uint8_t>[]> allocated_;
  std::mutex mu_;
  uint64_t next_ = 1;  // bump pointer (frame number)
  std::vector<uint64_t> free_;
  std::atomic<uint64_t> allocated_count_{0};
};

}  // namespace nestvm::hv
