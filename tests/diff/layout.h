// The address map shared by the native run and the core run. Both execute the instruction at the
// same linear address and see the same scratch memory at the same linear addresses, so RIP-relative
// operands, return addresses and pointers in registers mean the same thing on both sides.
//
//   kBase + 0x0000  guard          unmapped
//   kBase + 0x1000  code page      the instruction at kInsn; every other byte is kFillerByte
//   kBase + 0x2000  guard          unmapped
//   kBase + 0x3000  scratch        two pages of data and stack (RW, not executable)
//   kBase + 0x5000  guard          unmapped
//
// The native harness (prologue, resume path) lives in a page elsewhere, so that no computed
// branch target can reach it. The region sits below 2 GiB, where absolute disp32 and 32-bit
// addressing also reach it.
#pragma once
#include <cstdint>

namespace nestvm::diff {

inline constexpr uint64_t kPage = 0x1000;
inline constexpr uint64_t kBase = 0x5e000000;
inline constexpr uint64_t kRegionSize = 0x6000;
inline constexpr uint64_t kCode = kBase + 0x1000;
inline constexpr uint64_t kInsn = kCode + 0x400;
inline constexpr uint64_t kScratch = kBase + 0x3000;
inline constexpr uint64_t kScratchSize = 0x2000;

// Fills the code page around the instruction. 0x06 (PUSH ES) is invalid in 64-bit mode: natively
// it raises #UD wherever execution lands after the instruction, and the core's decoder ends the
// block before it, so the core stops after exactly one instruction.
inline constexpr uint8_t kFillerByte = 0x06;

// Where the stack pointer starts: the upper scratch page, leaving room above for POP/RET/LEAVE.
inline constexpr uint64_t kStackLow = kScratch + 0x1000;
inline constexpr uint64_t kStackHigh = kScratch + 0x1f00;

inline bool in_scratch(uint64_t la, uint64_t size = 1) {
  return la >= kScratch && la + size <= kScratch + kScratchSize && la + size >= la;
}

}  // namespace nestvm::diff
