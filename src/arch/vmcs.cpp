#include "arch/vmcs.h"

#include <algorithm>
#include <array>

namespace nestvm::arch {

namespace {

constexpr VmcsFieldInfo kFields[] = {
#define NESTVM_VMCS_FIELD(name, enc, off, shadowed) {#name, VmcsField::name, off, shadowed},
#include "arch/vmcs_fields.def"
#undef NESTVM_VMCS_FIELD
};

// Offsets are distinct, 8-byte aligned and inside the region (checked at compile time).
constexpr bool layout_is_sound() {
  for (size_t i = 0; i < std::size(kFields); ++i) {
    if (kFields[i].offset % 8 || kFields[i].offset < 16 || uint32_t(kFields[i].offset) + 8 > vmcs_layout::kSize) return false;
    for (size_t j = i + 1; j < std::size(kFields); ++j)
      if (kFields[i].offset == kFields[j].offset || kFields[i].field == kFields[j].field) return false;
  }
  return true;
}
static_assert(layout_is_sound());

}  // namespace

std::span<const VmcsFieldInfo> vmcs_fields() { return kFields; }

const VmcsFieldInfo& vmcs_field_info(VmcsField f) {
  for (const VmcsFieldInfo& i : kFields)
    if (i.field == f) return i;
  return kFields[0];  // unreachable for a VmcsField value
}

std::optional<VmcsEncodingLookup> lookup_vmcs_encoding(uint64_t encoding) {
  if (encoding >> 32) return std::nullopt;  // bits 63:32 of the operand must be 0
  const uint32_t e = uint32_t(encoding);
  const bool high = vmcs_width(e) == VmcsWidth::k64 && vmcs_high_access(e);
  const uint32_t full = high ? e & ~1u : e;
  if (vmcs_width(e) != VmcsWidth::k64 && vmcs_high_access(e)) return std::nullopt;
  for (const VmcsFieldInfo& i : kFields)
    if (uint32_t(i.field) == full) return VmcsEncodingLookup{&i, high};
  return std::nullopt;
}

unsigned vmcs_highest_index() {
  unsigned hi = 0;
  for (const VmcsFieldInfo& i : kFields) hi = std::max(hi, vmcs_index(uint32_t(i.field)));
  return hi;
}

}  // namespace nestvm::arch
