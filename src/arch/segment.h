// Segment descriptors and the segment-register cache (SDM Vol. 3 §3.4.5, §5.2).
// The hidden part of a segment register stores its attributes in the VMX access-rights format
// (SDM Vol. 3 §25.4.1, Table 25-2) so that VMCS guest-state fields map onto it unchanged.
#pragma once
#include <cstdint>

namespace nestvm::arch {

enum class SegReg : uint8_t { kES = 0, kCS = 1, kSS = 2, kDS = 3, kFS = 4, kGS = 5, kNone = 7 };
inline constexpr int kNumSegRegs = 6;

namespace ar {  // access-rights bits, VMX format
inline constexpr uint32_t kTypeMask = 0xf;
inline constexpr uint32_t kAccessed = 1u << 0;        // for code/data: accessed
inline constexpr uint32_t kWritable = 1u << 1;        // data: writable; code: readable
inline constexpr uint32_t kReadable = 1u << 1;
inline constexpr uint32_t kExpandDown = 1u << 2;      // data: expand-down; code: conforming
inline constexpr uint32_t kConforming = 1u << 2;
inline constexpr uint32_t kCode = 1u << 3;            // executable
inline constexpr uint32_t kS = 1u << 4;               // 1 = code/data, 0 = system
inline constexpr int kDplShift = 5;
inline constexpr uint32_t kDplMask = 3u << 5;
inline constexpr uint32_t kP = 1u << 7;               // present
inline constexpr uint32_t kAvl = 1u << 12;
inline constexpr uint32_t kL = 1u << 13;              // 64-bit code segment
inline constexpr uint32_t kDB = 1u << 14;             // default operation size / big
inline constexpr uint32_t kG = 1u << 15;              // granularity
inline constexpr uint32_t kUnusable = 1u << 16;       // VMX: segment unusable (null selector loaded)
constexpr uint32_t dpl(uint32_t a) { return (a >> kDplShift) & 3; }
}  // namespace ar

// System-descriptor types (S = 0), SDM Vol. 3 Table 3-2.
namespace sys_type {
inline constexpr uint32_t kTss16Avail = 1;
inline constexpr uint32_t kLdt = 2;
inline constexpr uint32_t kTss16Busy = 3;
inline constexpr uint32_t kCallGate16 = 4;
inline constexpr uint32_t kTaskGate = 5;
inline constexpr uint32_t kIntGate16 = 6;
inline constexpr uint32_t kTrapGate16 = 7;
inline constexpr uint32_t kTss32Avail = 9;   // 64-bit TSS in IA-32e mode
inline constexpr uint32_t kTss32Busy = 11;
inline constexpr uint32_t kCallGate32 = 12;  // 64-bit call gate in IA-32e mode
inline constexpr uint32_t kIntGate32 = 14;
inline constexpr uint32_t kTrapGate32 = 15;
}  // namespace sys_type

// A segment register: visible selector plus the descriptor cache.
struct Segment {
  uint16_t selector = 0;
  uint64_t base = 0;
  uint32_t limit = 0;  // byte-granular (already scaled by G)
  uint32_t ar = 0;     // VMX access-rights format
};

struct DescriptorTableReg {
  uint64_t base = 0;
  uint16_t limit = 0;
};

// Fields of an 8-byte segment descriptor, decoded.
struct Descriptor {
  uint64_t raw = 0;
  constexpr uint32_t base() const {
    return uint32_t(((raw >> 16) & 0xffffff) | ((raw >> 32) & 0xff000000));
  }
  constexpr uint32_t raw_limit() const { return uint32_t((raw & 0xffff) | ((raw >> 32) & 0xf0000)); }
  constexpr bool g() const { return (raw >> 55) & 1; }
  // Byte-granular limit (SDM §3.4.5: with G set the limit is scaled by 4 KiB and the low 12 bits read as 1).
  constexpr uint32_t limit() const { return g() ? (raw_limit() << 12) | 0xfff : raw_limit(); }
  constexpr uint32_t type() const { return uint32_t(raw >> 40) & 0xf; }
  constexpr bool s() const { return (raw >> 44) & 1; }
  constexpr uint32_t dpl() const { return uint32_t(raw >> 45) & 3; }
  constexpr bool p() const { return (raw >> 47) & 1; }
  constexpr bool l() const { return (raw >> 53) & 1; }
  constexpr bool db() const { return (raw >> 54) & 1; }
  constexpr bool is_code() const { return s() && (type() & 8); }
  constexpr bool is_data() const { return s() && !(type() & 8); }
  // Access rights in VMX format: descriptor bits 40-55 with bits 8-11 (limit 19:16) removed.
  constexpr uint32_t ar() const { return uint32_t((raw >> 40) & 0xf0ff); }
  // Gate fields (call/interrupt/trap/task gates).
  constexpr uint16_t gate_selector() const { return uint16_t(raw >> 16); }
  constexpr uint32_t gate_offset() const { return uint32_t((raw & 0xffff) | ((raw >> 32) & 0xffff0000)); }
  constexpr uint32_t gate_param_count() const { return uint32_t(raw >> 32) & 0x1f; }
  constexpr uint32_t ist() const { return uint32_t(raw >> 32) & 7; }
};

// Selector fields.
constexpr uint16_t selector_index(uint16_t sel) { return sel >> 3; }
constexpr bool selector_ti(uint16_t sel) { return sel & 4; }
constexpr uint32_t selector_rpl(uint16_t sel) { return sel & 3; }
constexpr bool selector_is_null(uint16_t sel) { return (sel & ~3) == 0; }

}  // namespace nestvm::arch
