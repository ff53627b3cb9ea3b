#include "hv/host_memory.h"

#include <sys/mman.h>

#include <new>

namespace nestvm::hv {

HostMemory::HostMemory(uint64_t max_bytes) : frames_(max_bytes >> 12) {
  void* p = mmap(nullptr, frames_ << 12, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  base_ = static_cast<uint8_t*>(p);
  // Frames are handed out bottom-up, so guest RAM and L0's tables fill the region densely:
  // transparent huge pages cut the host's first-touch faults by up to 512 (a hint; the kernel
  // may ignore it). Memory stays lazily backed: untouched 2 MiB ranges cost nothing.
  madvise(base_, frames_ << 12, MADV_HUGEPAGE);
  void* m = mmap(nullptr, frames_ * sizeof(cpu::PageMeta), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  meta_ = static_cast<cpu::PageMeta*>(m);  // zero-filled memory is a valid PageMeta
  allocated_ = std::make_unique<std::atomic<uint8_t>[]>(frames_);
}

HostMemory::~HostMemory() {
  munmap(base_, frames_ << 12);
  munmap(meta_, frames_ * sizeof(cpu::PageMeta));
}

uint64_t HostMemory::alloc_page() {
  uint64_t f;
  {
    std::lock_guard lock(mu_);
    if (!free_.empty()) {
      f = free_.back();
      free_.pop_back();
    } else if (next_ < frames_) {
      f = next_++;
    } else {
      return 0;
    }
  }
  // No clearing: a frame never handed out is untouched anonymous memory, and a freed one was
  // given back with MADV_DONTNEED; both read as zeros at their next touch.
  allocated_[f].store(1, std::memory_order_release);
  allocated_count_.fetch_add(1, std::memory_order_relaxed);
  return f << 12;
}

void HostMemory::free_page(uint64_t hpa) {
  const uint64_t f = hpa >> 12;
  if (f == 0 || f >= frames_ || !allocated_[f].exchange(0)) return;
  // Decoded code from the frame must not survive its reuse.
  code_tracker().note_write(meta_[f]);
  madvise(base_ + (f << 12), 4096, MADV_DONTNEED);  // give the memory back to the host
  allocated_count_.fetch_sub(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  free_.push_back(f);
}

}  // namespace nestvm::hv
