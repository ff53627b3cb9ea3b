// Field access on a VMCS region in memory, by the layout of arch/vmcs_fields.def. Used for the
// silicon's VMCSs (vmcs01, vmcs02, shadow VMCSs) and, by nested VMX, for vmcs12 in L1 memory.
#pragma once
#include <cstdint>
#include <cstring>

#include "arch/vmcs.h"

namespace nestvm::cpu {

class VmcsRegion {
 public:
  explicit VmcsRegion(uint8_t* base = nullptr) : base_(base) {}
  bool valid() const { return base_ != nullptr; }
  uint8_t* base() const { return base_; }

  uint32_t revision() const { return load32(arch::vmcs_layout::kRevisionOffset); }
  void set_revision(uint32_t r) { store32(arch::vmcs_layout::kRevisionOffset, r); }
  uint32_t abort_indicator() const { return load32(arch::vmcs_layout::kAbortOffset); }
  void set_abort_indicator(uint32_t v) { store32(arch::vmcs_layout::kAbortOffset, v); }
  bool launched() const { return load32(arch::vmcs_layout::kLaunchStateOffset) == 1; }
  void set_launched(bool l) { store32(arch::vmcs_layout::kLaunchStateOffset, l ? 1 : 0); }

  uint64_t read(arch::VmcsField f) const { return read(arch::vmcs_field_info(f)); }
  void write(arch::VmcsField f, uint64_t v) { write(arch::vmcs_field_info(f), v); }
  uint64_t read(const arch::VmcsFieldInfo& i) const {
    uint64_t v;
    std::memcpy(&v, base_ + i.offset, 8);
    return v & i.mask();
  }
  void write(const arch::VmcsFieldInfo& i, uint64_t v) {
    v &= i.mask();
    std::memcpy(base_ + i.offset, &v, 8);
  }
  // VMREAD/VMWRITE semantics for an encoding (full or high half of a 64-bit field).
  uint64_t read_encoded(const arch::VmcsEncodingLookup& l) const {
    const uint64_t v = read(*l.info);
    return l.high ? v >> 32 : v;
  }
  void write_encoded(const arch::VmcsEncodingLookup& l, uint64_t v) {
    if (l.high) v = (read(*l.info) & 0xffffffffull) | (v << 32);
    write(*l.info, v);
  }

 private:
  uint32_t load32(uint32_t off) const { uint32_t v; std::memcpy(&v, base_ + off, 4); return v; }
  void store32(uint32_t off, uint32_t v) { std::memcpy(base_ + off, &v, 4); }
  uint8_t* base_;
};

}  // namespace nestvm::cpu
