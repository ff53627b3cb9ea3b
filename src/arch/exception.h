// Exception and interrupt vectors (SDM Vol. 3 Table 6-1) and event types.
#pragma once
#include <cstdint>

namespace nestvm::arch {

enum class Vector : uint8_t {
  kDE = 0,   // divide error
  kDB = 1,   // debug
  kNMI = 2,  // non-maskable interrupt
  kBP = 3,   // breakpoint
  kOF = 4,   // overflow
  kBR = 5,   // BOUND range exceeded
  kUD = 6,   // invalid opcode
  kNM = 7,   // device not available
  kDF = 8,   // double fault
  kCSO = 9,  // coprocessor segment overrun (reserved)
  kTS = 10,  // invalid TSS
  kNP = 11,  // segment not present
  kSS = 12,  // stack-segment fault
  kGP = 13,  // general protection
  kPF = 14,  // page fault
  kMF = 16,  // x87 floating-point error
  kAC = 17,  // alignment check
  kMC = 18,  // machine check
  kXM = 19,  // SIMD floating-point exception
  kVE = 20,  // virtualization exception
  kCP = 21,  // control protection
};

// Whether an exception pushes an error code (SDM Vol. 3 Table 6-1).
constexpr bool has_error_code(Vector v) {
  switch (v) {
    case Vector::kDF: case Vector::kTS: case Vector::kNP: case Vector::kSS:
    case Vector::kGP: case Vector::kPF: case Vector::kAC: case Vector::kCP:
      return true;
    default:
      return false;
  }
}

// Exception classes for the double-fault rules (SDM Vol. 3 Table 6-4 and 6-5).
enum class ExceptionClass : uint8_t { kBenign, kContributory, kPageFault, kDoubleFault };

constexpr ExceptionClass exception_class(uint8_t vector) {
  switch (vector) {
    case 0: case 10: case 11: case 12: case 13:
      return ExceptionClass::kContributory;
    case 14: case 20:
      return ExceptionClass::kPageFault;  // #VE is handled like #PF here (SDM Table 6-4)
    case 8:
      return ExceptionClass::kDoubleFault;
    default:
      return ExceptionClass::kBenign;
  }
}

// Fault-class exceptions other than #DB: delivery pushes RFLAGS.RF = 1 (SDM Vol. 3 §18.3.1.1),
// and a VM exit they cause saves RF = 1 (SDM Vol. 3 §28.3.3).
constexpr bool is_fault_class(uint8_t vector) {
  switch (Vector(vector)) {
    case Vector::kDE: case Vector::kBR: case Vector::kUD: case Vector::kNM: case Vector::kTS:
    case Vector::kNP: case Vector::kSS: case Vector::kGP: case Vector::kPF: case Vector::kMF:
    case Vector::kAC: case Vector::kXM: case Vector::kVE: case Vector::kCP:
      return true;
    default:
      return false;
  }
}

// Event types as the VMX interruption-information format encodes them (SDM Vol. 3 §25.8.3),
// used by the core for every event it delivers so that VMX can report them unchanged.
enum class EventType : uint8_t {
  kExternalInterrupt = 0,
  kNmi = 2,
  kHardwareException = 3,
  kSoftwareInterrupt = 4,         // INT n
  kPrivilegedSoftwareException = 5, // INT1
  kSoftwareException = 6,         // INT3, INTO
  kOther = 7,
};

// #PF error code bits (SDM Vol. 3 §4.7).
namespace pfec {
inline constexpr uint32_t kPresent = 1u << 0;
inline constexpr uint32_t kWrite = 1u << 1;
inline constexpr uint32_t kUser = 1u << 2;
inline constexpr uint32_t kReserved = 1u << 3;
inline constexpr uint32_t kFetch = 1u << 4;
inline constexpr uint32_t kProtKey = 1u << 5;
inline constexpr uint32_t kShadowStack = 1u << 6;
}  // namespace pfec

// Selector error code bits (SDM Vol. 3 §6.13).
namespace selector_error {
inline constexpr uint32_t kExt = 1u << 0;
inline constexpr uint32_t kIdt = 1u << 1;
inline constexpr uint32_t kTi = 1u << 2;
}  // namespace selector_error

}  // namespace nestvm::arch
