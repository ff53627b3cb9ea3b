// The shadow MMU (KVM's mmu.c with paging_tmpl.h), used when L0 runs L1 without EPT
// (-accel nestvm,ept=off). The silicon walks shadow page tables L0 builds lazily on #PF exits:
// each shadow page is keyed by the guest frame it shadows and its role (mmu_role.h), and its
// entries combine L1's translation (walked by guest_walk) with the host frame backing the guest
// frame. Guest page-table pages are write-protected: every leaf that maps one is read-only, so
// L1's writes to its page tables trap, are emulated, and zap exactly the shadow entries that
// depended on the guest entries written. Reverse maps make this exact: from guest frame to every
// leaf that maps it (write-protection), from a shadow table to the entries that link to it.
// L1 running with paging off runs on a direct "nonpaging" map (linear = guest-physical).
//
// Shadow tables use PAE-format entries: 4-level tables for 4-level paging, and for 32-bit, PAE
// and nonpaging L1 a per-vCPU page of four PDPTEs (the "PAE root") over four level-2 roots.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "hv/guest_memory.h"
#include "hv/mmu/guest_walk.h"
#include "hv/mmu/mmu_role.h"
#include "hv/mmu/rmap.h"
#include "hv/stats.h"

namespace nestvm::hv {

// One shadow table (KVM's struct kvm_mmu_page).
struct ShadowPage {
  uint64_t gfn = 0;  // the guest table shadowed, or (direct) the first guest frame mapped
  MmuPageRole role;
  uint64_t table_hpa = 0;
  uint64_t* spt = nullptr;
  // Indirect pages: the guest frame each leaf maps (KVM's shadowed_translation).
  std::unique_ptr<uint64_t[]> gfns;
  std::vector<uint64_t> parent_ptes;  // host-physical addresses of the entries linking here
  unsigned root_count = 0;            // vCPUs using it as a root
  unsigned write_flooding = 0;        // emulated writes since a fault last used it
  std::list<ShadowPage*>::iterator lru;
};

class ShadowMmu {
 public:
  // flush_remote_tlbs: every vCPU drops its cached translations before this returns;
  // reload_remote_roots: every vCPU reloads its roots before it next enters the guest.
  ShadowMmu(HostMemory& host, GuestMemory& mem, MmuStats& stats, unsigned vcpus, std::function<void()> flush_remote_tlbs,
            std::function<void()> reload_remote_roots);
  ~ShadowMmu();
  ShadowMmu(const ShadowMmu&) = delete;
  ShadowMmu& operator=(const ShadowMmu&) = delete;

  // L1's paging changed (CR0, CR3, CR4, EFER, PDPTEs; KVM's kvm_mmu_new_pgd and
  // kvm_mmu_reset_context): the vCPU's roots are released and loaded again before it next runs.
  // Returns whether anything changed.
  bool set_guest_paging(unsigned vcpu, const GuestPagingState& s);
  const GuestPagingState& guest_paging(unsigned vcpu) const { return ctx_[vcpu].guest; }
  // The vCPU's roots are loaded and valid.
  bool root_loaded(unsigned vcpu);
  // Loads the roots if needed; the value for vmcs01's CR3 (0 if host memory is exhausted).
  uint64_t load_root(unsigned vcpu);

  struct Fault {
    enum class Kind : uint8_t {
      kFixed,         // shadow entries built: re-enter
      kRetry,         // something changed meanwhile (roots, guest entries): re-enter and see
      kSpurious,      // the shadow already allowed the access: a stale cached translation
      kInject,        // L1's own fault: inject #PF with error_code
      kMmio,          // a device's memory: emulate the instruction
      kEmulateWrite,  // a write to a write-protected guest page table: emulate_write()
      kOutOfMemory,
    };
    Kind kind = Kind::kFixed;
    uint32_t error_code = 0;
    uint64_t gfn = 0;          // kEmulateWrite: the guest page table written
    uint64_t next_gfn = ~0ull;  // kEmulateWrite: the next page, if the write may reach it and it is one too
    bool flush_address = false;  // kFixed: an entry the vCPU may have cached was upgraded
  };
  // A #PF exit at linear address la with the silicon's error code (KVM's FNAME(page_fault)).
  // smap_exempt: EFLAGS.AC = 1 at CPL < 3.
  Fault page_fault(unsigned vcpu, uint64_t la, uint32_t error_code, bool smap_exempt);

  // Runs `emulate` (the emulator executing a write to write-protected guest page tables) and
  // zaps the shadow entries of every guest entry it changed (KVM's kvm_mmu_pte_write), found by
  // comparing the pages before and after.
  template <typename F>
  auto emulate_write(uint64_t gfn, uint64_t next_gfn, F&& emulate) {
    PageSnapshot before = snapshot(gfn, next_gfn);
    auto r = emulate();
    pte_write(before);
    return r;
  }

  // Zaps every shadow page (KVM's kvm_mmu_zap_all): vCPUs rebuild from their roots.
  void zap_all();
  // Zaps the shadow pages of guest table gfn, ending its write-protection (KVM's
  // kvm_mmu_unprotect_page): for a write that cannot be emulated, made while delivering an event.
  void unprotect(uint64_t gfn);
  // Guest frames holding guest page tables that shadow pages shadow (so write-protected).
  bool is_write_tracked(uint64_t gfn);
  // Checks the shadow tables against the reverse maps, the write-tracking counts and the
  // write-protection rule; on failure says why.
  bool audit(std::string* why = nullptr);
  uint64_t page_count();

 private:
  struct Context {  // one vCPU's MMU (KVM's vcpu->arch.mmu)
    GuestPagingState guest;
    MmuPageRole base_role;
    uint64_t pae_root_hpa = 0;
    uint64_t* pae_root = nullptr;
    std::array<ShadowPage*, 4> pae_roots{};
    ShadowPage* root = nullptr;  // 4-level paging
    bool loaded = false;
  };
  struct PageSnapshot {
    uint64_t gfn[2] = {~0ull, ~0ull};
    std::unique_ptr<uint8_t[]> bytes;
  };

  uint64_t* entry_ptr(uint64_t spte_hpa) { return reinterpret_cast<uint64_t*>(host_.frame(spte_hpa) + (spte_hpa & 0xfff)); }
  ShadowPage* page_of_table(uint64_t table_hpa);
  ShadowPage* get_page(uint64_t gfn, MmuPageRole role, bool& created);
  void account_shadowed(uint64_t gfn);
  void unaccount_shadowed(uint64_t gfn);
  uint64_t leaf_gfn(const ShadowPage& sp, unsigned i) const;
  bool drop_spte(ShadowPage& sp, unsigned i);
  void zap_page(ShadowPage* sp);
  void commit_zap();
  void free_page(ShadowPage* sp);
  void make_pages_available();
  void release_roots(Context& c);
  bool load_roots(Context& c);
  bool roots_valid(const Context& c) const;
  uint64_t make_leaf(const Context& c, const GuestWalk& w, uint64_t hpa, const GuestAccess& a, bool tracked) const;
  Fault fetch(Context& c, uint64_t la, const GuestWalk& w, uint64_t hpa, const GuestAccess& a);
  PageSnapshot snapshot(uint64_t gfn, uint64_t next_gfn);
  void pte_write(const PageSnapshot& before);

  HostMemory& host_;
  GuestMemory& mem_;
  MmuStats& stats_;
  std::function<void()> flush_remote_tlbs_;
  std::function<void()> reload_remote_roots_;
  std::vector<Context> ctx_;

  std::mutex mu_;  // KVM's mmu_lock: everything below
  std::unordered_multimap<uint64_t, ShadowPage*> hash_;                // gfn -> valid pages
  std::unordered_map<uint64_t, std::unique_ptr<ShadowPage>> pages_;   // table frame -> page
  std::unordered_map<uint64_t, unsigned> write_track_;                 // gfn -> indirect pages shadowing it
  Rmap rmap_;                                                          // gfn -> leaves mapping it
  std::list<ShadowPage*> lru_;                                         // newest first
  std::vector<ShadowPage*> invalid_list_;  // zapped, freed at commit_zap after the flush
  bool need_flush_ = false;                // a leaf lost rights or went away: flush before unlocking
  bool need_reload_ = false;               // a root was zapped
  uint64_t leaves_ = 0;
};

}  // namespace nestvm::hv
