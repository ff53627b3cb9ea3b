// The physical address space as the processor sees it: RAM pages reachable through host
// pointers, and everything else (MMIO) reached through callbacks. Under VMX this is the
// host-physical space; EPT translates guest-physical addresses into it.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace nestvm::cpu {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kPageMask = ~(kPageSize - 1);

class Tlb;

// Per-physical-page bookkeeping for decoded code (self- and cross-modifying code).
struct PageMeta {
  std::atomic<uint32_t> code_gen{0};  // bumped when a page holding decoded code is written
  std::atomic<uint8_t> has_code{0};   // some vCPU holds decoded blocks from this page
};

// Keeps decoded blocks coherent with memory across every vCPU sharing one physical space. A page
// holding decoded code has no fast write entry in any vCPU's TLB; the first write to it after
// decoding takes the slow path, which bumps the page's generation and so invalidates every block
// decoded from it (each vCPU checks the generation when it enters a block).
class CodeTracker {
 public:
  void register_tlb(Tlb* tlb);
  void unregister_tlb(Tlb* tlb);
  // A block is being decoded from the page at pa.
  void mark_code(PageMeta& meta, uint64_t pa_page);
  // A write is about to modify the page; returns true if decoded code was invalidated.
  bool note_write(PageMeta& meta);
  // Installs a fast write entry unless the page holds code (checked under the tracker's lock,
  // so that it cannot race with mark_code).
  template <typename Install>
  bool install_write_entry(PageMeta& meta, Install&& install) {
    std::lock_guard lock(mu_);
    if (meta.has_code.load(std::memory_order_relaxed)) return false;
    install();
    return true;
  }

 private:
  std::mutex mu_;
  std::vector<Tlb*> tlbs_;
};

class PhysMem {
 public:
  virtual ~PhysMem() = default;
  // Host pointer to the first byte of the RAM page holding pa, or nullptr when pa is not RAM.
  virtual uint8_t* ram_page(uint64_t pa) = 0;
  // Bookkeeping of the RAM page holding pa (only called for RAM pages).
  virtual PageMeta& page_meta(uint64_t pa) = 0;
  // Accesses to addresses that are not RAM. Unclaimed reads float high, as on a PC bus.
  virtual uint64_t mmio_read(uint64_t pa, unsigned size) { return ~0ull >> (64 - 8 * size); }
  virtual void mmio_write(uint64_t pa, unsigned size, uint64_t value) {}

  // The tracker every processor using this space registers with. A view of another space (a
  // guest-physical view of host-physical frames) returns the underlying space's tracker, so
  // that decoded code stays coherent across both.
  virtual CodeTracker& code_tracker() { return code_tracker_; }

  // Host-side writers (loaders, DMA) call this so that decoded code stays coherent.
  void note_host_write(uint64_t pa, uint64_t len);

 private:
  CodeTracker code_tracker_;
};

// RAM at physical addresses [0, size), contiguous on the host; everything above is MMIO.
class FlatRam : public PhysMem {
 public:
  explicit FlatRam(uint64_t size);
  ~FlatRam() override;
  FlatRam(const FlatRam&) = delete;
  FlatRam& operator=(const FlatRam&) = delete;

  uint8_t* ram_page(uint64_t pa) override {
    return pa < size_ ? base_ + (pa & kPageMask) : nullptr;
  }
  PageMeta& page_meta(uint64_t pa) override { return meta_[pa / kPageSize]; }

  uint8_t* data() { return base_; }
  uint64_t size() const { return size_; }
  // Copies bytes into guest RAM (bounds-checked); returns false if the range is not RAM.
  bool write(uint64_t pa, const void* src, uint64_t len);
  bool read(uint64_t pa, void* dst, uint64_t len) const;

 private:
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  std::unique_ptr<PageMeta[]> meta_;
};

}  // namespace nestvm::cpu
