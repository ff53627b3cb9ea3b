// Comparing the host's outcome with the core's: the fault (vector and error code), RIP, every
// GPR, the RFLAGS bits the instruction defines, and the scratch memory. What the SDM leaves
// undefined for these inputs is left out of the comparison (undefined_results.h decides).
#pragma once
#include <cstdint>
#include <string>

#include "diff/machine_state.h"

namespace nestvm::diff {

// Every RFLAGS bit software can observe, except RF (the host sets it in a fault's frame) and VM.
inline constexpr uint64_t kComparedFlags = 0x3f7fd5 & ~(1ull << 16) & ~(1ull << 17);

struct CompareScope {
  uint64_t rflags_mask = kComparedFlags;
  uint16_t skip_gprs = 0;  // bit r: GPR r has an undefined result
  uint64_t skip_mem_la = 0;  // a memory destination with an undefined result
  unsigned skip_mem_size = 0;
  uint64_t fault_skip_la = 0;  // memory a faulting instruction may or may not have written
  unsigned fault_skip_size = 0;
};

struct Difference {
  std::string what;    // short: "rflags", "rdx", "memory", "fault"
  uint64_t flags = 0;  // the RFLAGS bits that differ
  std::string detail;  // both values, one line per item
};

// Empty `what` when the outcomes agree.
Difference compare(const Outcome& native, const Outcome& core, const CompareScope& scope);

// "#DE", "#GP(0)", "completed" ...
std::string describe_end(const Outcome& o);

// Names of the RFLAGS bits in `bits` ("CF,OF").
std::string flag_names(uint64_t bits);

}  // namespace nestvm::diff
