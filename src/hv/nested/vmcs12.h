// vmcs12: the VMCS L1 builds for its L2 guest, as L0 keeps it (KVM's struct vmcs12 and
// cached_vmcs12). It lives in L1 memory at the address L1 gives VMPTRLD, in a fixed, versioned
// layout so that it can be saved and restored: a 16-byte header (the revision identifier
// IA32_VMX_BASIC reports to L1, the VMX-abort indicator, the layout version, the launch state),
// then every field of the VMCS field table (arch/vmcs_fields.def) in its 8-byte slot at the
// table's fixed offset (offsets are never reused or moved; new fields are appended), the rest of
// the 4 KiB page left for growth. L0 reads the page at VMPTRLD and writes it back at VMCLEAR, at
// VMPTRLD of another VMCS and at VMXOFF (SDM Vol. 3 §25.11.1: the VMCS data may be cached on the
// processor until then); in between, L1's VMREAD/VMWRITE work on this cache.
#pragma once
#include <bitset>
#include <cstdint>

#include "arch/vmcs.h"

namespace nestvm::hv {
class GuestMemory;
}

namespace nestvm::hv::nested {

namespace vmcs12_layout {
inline constexpr uint32_t kRevisionOffset = 0;     // bits 30:0 revision, bit 31 shadow-VMCS indicator
inline constexpr uint32_t kAbortOffset = 4;        // VMX-abort indicator (SDM §25.2)
inline constexpr uint32_t kVersionOffset = 8;      // kVersion: how the rest of the page is laid out
inline constexpr uint32_t kLaunchStateOffset = 12; // 0 = clear, 1 = launched
inline constexpr uint32_t kFieldsStart = 16;       // no field slot below this
inline constexpr uint32_t kSize = 4096;
inline constexpr uint32_t kVersion = 1;
}  // namespace vmcs12_layout

// The VMCS revision identifier offered to L1 in IA32_VMX_BASIC[30:0] ("NV", nested, layout 1).
// A new vmcs12 layout gets a new version and a new revision, so that L1 cannot VMPTRLD a region
// written under another layout.
inline constexpr uint32_t kVmcs12Revision = 0x4e563201;

class Vmcs12 {
 public:
  // Room for the fields of the table (tests check it holds them all): the cache and the dirty
  // set are indexed by table position.
  static constexpr size_t kMaxFields = 256;

  uint64_t read(arch::VmcsField f) const { return fields_[index_of(f)]; }
  // Stores v (truncated to the field's width) and marks the field dirty for vmcs02.
  void write(arch::VmcsField f, uint64_t v);

  // Reads the page at gpa (all fields dirty afterwards); false if it is not guest RAM.
  bool load(GuestMemory& mem, uint64_t gpa);
  // Writes header and fields to the page at gpa; false if it is not guest RAM.
  bool store(GuestMemory& mem, uint64_t gpa) const;
  // The layout as bytes (the page store() writes), and back (false on a foreign version).
  void to_page(uint8_t* page) const;
  bool from_page(const uint8_t* page);

  // Fields written since the last clear_dirty() (by VMWRITE, load or L0): what prepare_vmcs02
  // must copy again.
  bool dirty(arch::VmcsField f) const { return dirty_[index_of(f)]; }
  bool any_dirty() const { return dirty_.any(); }
  void mark_all_dirty() { dirty_.set(); }
  void clear_dirty() { dirty_.reset(); }

  // Position of f in the field table (arch::vmcs_fields()).
  static size_t index_of(arch::VmcsField f);

  uint32_t revision = kVmcs12Revision;
  uint32_t abort = 0;
  bool launched = false;

 private:
  uint64_t fields_[kMaxFields] = {};
  std::bitset<kMaxFields> dirty_;
};

}  // namespace nestvm::hv::nested
