#include "hv/mmu/rmap.h"

#include <algorithm>

namespace nestvm::hv {

void Rmap::add(uint64_t frame, uint64_t spte) {
  Head& h = heads_[frame];
  if (!h.single && h.many.empty()) {
    h.single = spte;
  } else {
    if (h.single) {
      h.many.push_back(h.single);
      h.single = 0;
    }
    h.many.push_back(spte);
  }
  ++size_;
}

bool Rmap::remove(uint64_t frame, uint64_t spte) {
  auto it = heads_.find(frame);
  if (it == heads_.end()) return false;
  Head& h = it->second;
  if (h.single == spte) {
    h.single = 0;
  } else {
    auto e = std::find(h.many.begin(), h.many.end(), spte);
    if (e == h.many.end()) return false;
    *e = h.many.back();
    h.many.pop_back();
  }
  --size_;
  if (!h.single && h.many.empty()) heads_.erase(it);
  return true;
}

bool Rmap::contains(uint64_t frame, uint64_t spte) const {
  auto it = heads_.find(frame);
  if (it == heads_.end()) return false;
  const Head& h = it->second;
  return h.single == spte || std::find(h.many.begin(), h.many.end(), spte) != h.many.end();
}

std::vector<uint64_t> Rmap::entries(uint64_t frame) const {
  std::vector<uint64_t> out;
  for_each(frame, [&out](uint64_t s) { out.push_back(s); });
  return out;
}

size_t Rmap::count(uint64_t frame) const {
  auto it = heads_.find(frame);
  if (it == heads_.end()) return 0;
  return (it->second.single ? 1 : 0) + it->second.many.size();
}

}  // namespace nestvm::hv
