// VMCS fields and the VMCS region layout, derived from the one field table vmcs_fields.def.
#pragma once
#include <cstdint>
#include <optional>
#include <span>

namespace nestvm::arch {

// Field encodings with the SDM's names in KVM's spelling (grep the SDM name).
enum class VmcsField : uint32_t {
#define NESTVM_VMCS_FIELD(name, enc, off, shadowed) name = enc,
#include "arch/vmcs_fields.def"
#undef NESTVM_VMCS_FIELD
};

enum class VmcsWidth : uint8_t { k16 = 0, k64 = 1, k32 = 2, kNatural = 3 };
enum class VmcsType : uint8_t { kControl = 0, kReadOnly = 1, kGuest = 2, kHost = 3 };

// SDM Vol. 3 §25.11.2, "VMREAD, VMWRITE, and Encodings of VMCS Fields".
constexpr VmcsWidth vmcs_width(uint32_t encoding) { return VmcsWidth((encoding >> 13) & 3); }
constexpr VmcsType vmcs_type(uint32_t encoding) { return VmcsType((encoding >> 10) & 3); }
constexpr bool vmcs_high_access(uint32_t encoding) { return encoding & 1; }
constexpr unsigned vmcs_index(uint32_t encoding) { return (encoding >> 1) & 0x1ff; }
constexpr uint32_t encoding_of(VmcsField f) { return uint32_t(f); }

struct VmcsFieldInfo {
  const char* name;
  VmcsField field;
  uint16_t offset;  // byte offset in the VMCS region
  bool shadowed;
  VmcsWidth width() const { return vmcs_width(uint32_t(field)); }
  VmcsType type() const { return vmcs_type(uint32_t(field)); }
  bool read_only() const { return type() == VmcsType::kReadOnly; }
  // Bits a 64-bit processor keeps (natural width is 64 bits on x86-64).
  uint64_t mask() const {
    switch (width()) {
      case VmcsWidth::k16: return 0xffff;
      case VmcsWidth::k32: return 0xffffffff;
      default: return ~0ull;
    }
  }
};

// Every supported field, in table order.
std::span<const VmcsFieldInfo> vmcs_fields();
const VmcsFieldInfo& vmcs_field_info(VmcsField f);

// The field an encoding names, and whether it is the high half of a 64-bit field; nullopt for
// an encoding nestvm does not support (VMREAD/VMWRITE fail with error 12).
struct VmcsEncodingLookup {
  const VmcsFieldInfo* info;
  bool high;
};
std::optional<VmcsEncodingLookup> lookup_vmcs_encoding(uint64_t encoding);

// The VMCS region (SDM Vol. 3 §25.2): the revision identifier and the VMX-abort indicator are
// architectural; the rest is implementation-specific and nestvm's own, fixed and versioned so
// that a vmcs12 can be saved and restored. Bit 31 of the revision dword marks a shadow VMCS.
namespace vmcs_layout {
inline constexpr uint32_t kRevisionOffset = 0;
inline constexpr uint32_t kAbortOffset = 4;
inline constexpr uint32_t kLaunchStateOffset = 8;  // 0 = clear, 1 = launched
inline constexpr uint32_t kShadowIndicator = 1u << 31;
inline constexpr uint32_t kSize = 4096;
}  // namespace vmcs_layout

// The four fields of each guest segment register: ES, CS, SS, DS, FS, GS (SegReg order), then
// LDTR (index 6) and TR (index 7).
struct VmcsSegmentFields {
  VmcsField selector, base, limit, ar;
};
inline constexpr VmcsSegmentFields kGuestSegmentFields[8] = {
    {VmcsField::GUEST_ES_SELECTOR, VmcsField::GUEST_ES_BASE, VmcsField::GUEST_ES_LIMIT, VmcsField::GUEST_ES_AR_BYTES},
    {VmcsField::GUEST_CS_SELECTOR, VmcsField::GUEST_CS_BASE, VmcsField::GUEST_CS_LIMIT, VmcsField::GUEST_CS_AR_BYTES},
    {VmcsField::GUEST_SS_SELECTOR, VmcsField::GUEST_SS_BASE, VmcsField::GUEST_SS_LIMIT, VmcsField::GUEST_SS_AR_BYTES},
    {VmcsField::GUEST_DS_SELECTOR, VmcsField::GUEST_DS_BASE, VmcsField::GUEST_DS_LIMIT, VmcsField::GUEST_DS_AR_BYTES},
    {VmcsField::GUEST_FS_SELECTOR, VmcsField::GUEST_FS_BASE, VmcsField::GUEST_FS_LIMIT, VmcsField::GUEST_FS_AR_BYTES},
    {VmcsField::GUEST_GS_SELECTOR, VmcsField::GUEST_GS_BASE, VmcsField::GUEST_GS_LIMIT, VmcsField::GUEST_GS_AR_BYTES},
    {VmcsField::GUEST_LDTR_SELECTOR, VmcsField::GUEST_LDTR_BASE, VmcsField::GUEST_LDTR_LIMIT, VmcsField::GUEST_LDTR_AR_BYTES},
    {VmcsField::GUEST_TR_SELECTOR, VmcsField::GUEST_TR_BASE, VmcsField::GUEST_TR_LIMIT, VmcsField::GUEST_TR_AR_BYTES},
};

// The highest field index supported (IA32_VMX_VMCS_ENUM bits 9:1).
unsigned vmcs_highest_index();

}  // namespace nestvm::arch
