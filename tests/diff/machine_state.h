// What goes into one execution of an instruction and what comes out, on either side.
#pragma once
#include <array>
#include <cstdint>

#include "diff/layout.h"

namespace nestvm::diff {

// Architectural input: all GPRs, RFLAGS and the scratch memory. RIP is always kInsn.
struct InputState {
  std::array<uint64_t, 16> gpr{};
  uint64_t rflags = 0x202;
  std::array<uint8_t, kScratchSize> mem{};
};

// The result of running the instruction once.
struct Outcome {
  // True when the instruction itself raised an exception (RIP stayed at kInsn).
  bool faulted = false;
  uint8_t vector = 0;
  uint32_t error = 0;
  bool has_error = false;
  uint64_t fault_address = 0;  // #PF: the linear address (known on the native side only)
  // Set when the run ended in a way neither side should produce (core shutdown, HLT, ...).
  bool abnormal = false;
  std::array<uint64_t, 16> gpr{};
  uint64_t rip = 0;
  uint64_t rflags = 0;
  std::array<uint8_t, kScratchSize> mem{};
};

inline constexpr const char* kGprNames[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                              "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};

}  // namespace nestvm::diff
