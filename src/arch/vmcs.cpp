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
    if (kFields[i].offset % 8 || kFields[i].offset < 16 || uint32_t(kFields[i].offset) + 8 > vmcs_layout::kSize)
      return false;
    for (size_t j = i + 1; j < std::size(kFields); ++j)
      if (kFields[i].offset == kFields[j].offset || kFields[i].field == kFields[j].field) return false;
  }
  return true;
}
static_assert(layout_is_sound());

// Table position by encoding bits 14:1 (width, type, index): constant-time lookup.
constexpr unsigned slot_of(uint32_t encoding) { return (encoding >> 1) & 0x3fff; }
constexpr uint8_t kNoField = 0xff;
static_assert(std::size(kFields) < kNoField);
constexpr std::array<uint8_t, 0x4000> make_index() {
  std::array<uint8_t, 0x4000> a{};
  for (auto& x : a) x = kNoField;
  for (size_t i = 0; i < std::size(kFields); ++i) a[slot_of(uint32_t(kFields[i].field))] = uint8_t(i);
  return a;
}
constexpr std::array<uint8_t, 0x4000> kIndexByEncoding = make_index();

}  // namespace

std::span<const VmcsFieldInfo> vmcs_fields() { return kFields; }

const VmcsFieldInfo& vmcs_field_info(VmcsField f) { return kFields[kIndexByEncoding[slot_of(uint32_t(f))]]; }

std::optional<VmcsEncodingLookup> lookup_vmcs_encoding(uint64_t encoding) {
  if (encoding >> 32) return std::nullopt;  // bits 63:32 of the operand must be 0
  const uint32_t e = uint32_t(encoding);
  const bool high = vmcs_width(e) == VmcsWidth::k64 && vmcs_high_access(e);
  if (vmcs_width(e) != VmcsWidth::k64 && vmcs_high_access(e)) return std::nullopt;
  const uint32_t full = high ? e & ~1u : e;
  if (full & ~0x7ffeu) return std::nullopt;  // bits 31:15 must be 0
  const uint8_t k = kIndexByEncoding[slot_of(full)];
  if (k == kNoField) return std::nullopt;
  return VmcsEncodingLookup{&kFields[k], high};
}

unsigned vmcs_highest_index() {
  unsigned hi = 0;
  for (const VmcsFieldInfo& i : kFields) hi = std::max(hi, vmcs_index(uint32_t(i.field)));
  return hi;
}

}  // namespace nestvm::arch
