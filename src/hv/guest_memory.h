// Guest-physical memory of a VM: memslots mapping guest-physical ranges to host-physical frames
// of HostMemory, backed lazily (a frame is allocated the first time the page is touched, by
// the guest through an EPT violation or by a loader or device). `-m 4G` on a guest that touches
// 100 MiB costs about 100 MiB.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "hv/host_memory.h"

namespace nestvm::hv {

struct Memslot {
  uint64_t gpa = 0;
  uint64_t size = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> hpa;  // per 4 KiB page; 0 = not backed yet
  bool contains(uint64_t a) const { return a >= gpa && a - gpa < size; }
};

class GuestMemory {
 public:
  explicit GuestMemory(HostMemory& host) : host_(host) {}

  // Adds RAM at [gpa, gpa + size) (page-aligned, not overlapping another slot).
  void add_slot(uint64_t gpa, uint64_t size);
  const std::vector<std::unique_ptr<Memslot>>& slots() const { return slots_; }
  bool is_ram(uint64_t gpa) const { return find(gpa) != nullptr; }
  uint64_t ram_size() const;

  // The frame backing gpa's page: allocated on first use when `allocate`; 0 if gpa is not RAM
  // (or not backed and !allocate, or host memory is exhausted).
  uint64_t backing(uint64_t gpa, bool allocate = true);
  // Host pointer to gpa (allocating its backing); nullptr if gpa is not RAM.
  uint8_t* host_ptr(uint64_t gpa);

  // Copies to/from guest RAM across pages (loaders, devices); false if a byte is not RAM.
  bool write(uint64_t gpa, const void* src, uint64_t len);
  bool read(uint64_t gpa, void* dst, uint64_t len);

  uint64_t backed_pages() const { return backed_.load(std::memory_order_relaxed); }
  HostMemory& host() { return host_; }

 private:
  Memslot* find(uint64_t gpa) const;
  HostMemory& host_;
  std::vector<std::unique_ptr<Memslot>> slots_;
  std::atomic<uint64_t> backed_{0};
};

}  // namespace nestvm::hv
