#include "hv/guest_memory.h"

#include <algorithm>
#include <cstring>

namespace nestvm::hv {

void GuestMemory::add_slot(uint64_t gpa, uint64_t size) {
  auto s = std::make_unique<Memslot>();
  s->gpa = gpa;
  s->size = size;
  s->hpa = std::make_unique<std::atomic<uint64_t>[]>(size >> 12);
  slots_.push_back(std::move(s));
}

uint64_t GuestMemory::ram_size() const {
  uint64_t n = 0;
  for (const auto& s : slots_) n += s->size;
  return n;
}

Memslot* GuestMemory::find(uint64_t gpa) const {
  for (const auto& s : slots_)
    if (s->contains(gpa)) return s.get();
  return nullptr;
}

uint64_t GuestMemory::backing(uint64_t gpa, bool allocate) {
  Memslot* s = find(gpa);
  if (!s) return 0;
  std::atomic<uint64_t>& slot = s->hpa[(gpa - s->gpa) >> 12];
  uint64_t h = slot.load(std::memory_order_acquire);
  if (h || !allocate) return h;
  const uint64_t fresh = host_.alloc_page();
  if (!fresh) return 0;
  // Two vCPUs may fault on the same page at once: the first to publish wins.
  if (slot.compare_exchange_strong(h, fresh, std::memory_order_acq_rel)) {
    backed_.fetch_add(1, std::memory_order_relaxed);
    return fresh;
  }
  host_.free_page(fresh);
  return h;
}

uint8_t* GuestMemory::host_ptr(uint64_t gpa) {
  const uint64_t h = backing(gpa);
  return h ? host_.frame(h) + (gpa & 0xfff) : nullptr;
}

bool GuestMemory::write(uint64_t gpa, const void* src, uint64_t len) {
  auto* p = static_cast<const uint8_t*>(src);
  while (len) {
    uint8_t* dst = host_ptr(gpa);
    if (!dst) return false;
    const uint64_t n = std::min<uint64_t>(len, 4096 - (gpa & 0xfff));
    std::memcpy(dst, p, n);
    host_.note_host_write(backing(gpa) | (gpa & 0xfff), n);
    gpa += n;
    p += n;
    len -= n;
  }
  return true;
}

bool GuestMemory::read(uint64_t gpa, void* dst, uint64_t len) {
  auto* p = static_cast<uint8_t*>(dst);
  while (len) {
    const uint8_t* src = host_ptr(gpa);
    if (!src) return false;
    const uint64_t n = std::min<uint64_t>(len, 4096 - (gpa & 0xfff));
    std::memcpy(p, src, n);
    gpa += n;
    p += n;
    len -= n;
  }
  return true;
}

}  // namespace nestvm::hv
