#include "cpu/phys_mem.h"

#include <sys/mman.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <new>

#include "cpu/tlb.h"

namespace nestvm::cpu {

void CodeTracker::register_tlb(Tlb* tlb) {
  std::lock_guard lock(mu_);
  tlbs_.push_back(tlb);
}

void CodeTracker::unregister_tlb(Tlb* tlb) {
  std::lock_guard lock(mu_);
  tlbs_.erase(std::remove(tlbs_.begin(), tlbs_.end(), tlb), tlbs_.end());
}

void CodeTracker::mark_code(PageMeta& meta, uint64_t pa_page) {
  if (meta.has_code.load(std::memory_order_acquire)) return;
  std::lock_guard lock(mu_);
  if (meta.has_code.load(std::memory_order_relaxed)) return;
  meta.has_code.store(1, std::memory_order_release);
  for (Tlb* t : tlbs_) t->drop_writes_to(pa_page);
}

bool CodeTracker::note_write(PageMeta& meta) {
  if (!meta.has_code.load(std::memory_order_acquire)) return false;
  std::lock_guard lock(mu_);
  if (!meta.has_code.load(std::memory_order_relaxed)) return false;
  meta.code_gen.fetch_add(1, std::memory_order_release);
  meta.has_code.store(0, std::memory_order_release);
  return true;
}

void PhysMem::note_host_write(uint64_t pa, uint64_t len) {
  for (uint64_t p = pa & kPageMask; p < pa + len; p += kPageSize)
    if (ram_page(p)) code_tracker_.note_write(page_meta(p));
}

FlatRam::FlatRam(uint64_t size) : size_((size + kPageSize - 1) & kPageMask) {
  void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  base_ = static_cast<uint8_t*>(p);
  meta_ = std::make_unique<PageMeta[]>(size_ / kPageSize);
}

FlatRam::~FlatRam() { munmap(base_, size_); }

bool FlatRam::write(uint64_t pa, const void* src, uint64_t len) {
  if (pa > size_ || len > size_ - pa) return false;
  std::memcpy(base_ + pa, src, len);
  note_host_write(pa, len);
  return true;
}

bool FlatRam::read(uint64_t pa, void* dst, uint64_t len) const {
  if (pa > size_ || len > size_ - pa) return false;
  std::memcpy(dst, base_ + pa, len);
  return true;
}

}  // namespace nestvm::cpu
