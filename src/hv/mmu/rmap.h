// A reverse map (KVM's rmap, a pte_list per frame): from a frame to every paging-structure entry
// L0 built that maps it, each named by the entry's host-physical address. It makes
// write-protection, zapping and reclaim exact: taking a frame away or making it read-only
// reaches every mapping of it without a scan of the tables. The TDP MMU keys it by host frame
// (EPT01 is a direct map, so a host frame has one guest frame), the shadow MMU by guest frame.
#pragma once
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace nestvm::hv {

class Rmap {
 public:
  // Records that the entry at host-physical address spte maps frame.
  void add(uint64_t frame, uint64_t spte);
  // Forgets it; false if it was not recorded (callers assert: the map must stay exact).
  bool remove(uint64_t frame, uint64_t spte);
  bool contains(uint64_t frame, uint64_t spte) const;
  // Calls f(spte) for every entry that maps frame (f must not change the map).
  template <typename F>
  void for_each(uint64_t frame, F&& f) const {
    auto it = heads_.find(frame);
    if (it == heads_.end()) return;
    if (it->second.single) f(it->second.single);
    for (uint64_t s : it->second.many) f(s);
  }
  // The entries that map frame (a copy, for callers that change the map while going through).
  std::vector<uint64_t> entries(uint64_t frame) const;
  size_t count(uint64_t frame) const;
  size_t size() const { return size_; }  // entries over all frames
  size_t frames() const { return heads_.size(); }
  template <typename F>
  void for_all(F&& f) const {  // f(frame, spte) for every pair
    for (const auto& [frame, h] : heads_) {
      if (h.single) f(frame, h.single);
      for (uint64_t s : h.many) f(frame, s);
    }
  }
  void clear() {
    heads_.clear();
    size_ = 0;
  }

 private:
  // One entry inline (the common case: a frame mapped once), more in a vector, as KVM's
  // pte_list_desc. Entry address 0 is never valid (frame 0 is never handed out).
  struct Head {
    uint64_t single = 0;
    std::vector<uint64_t> many;
  };
  std::unordered_map<uint64_t, Head> heads_;
  size_t size_ = 0;
};

}  // namespace nestvm::hv
