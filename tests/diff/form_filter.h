// Which forms the differential test runs, and why it leaves the others out. The decision uses
// only Zydis's metadata (category, ISA set and extension, privilege, register classes of the
// operands, CPU-state attributes) and the host's and the core model's CPUID features.
#pragma once
#include <Zydis/Zydis.h>

#include <string>

#include "cpu/cpu_model.h"

namespace nestvm::diff {

struct Decoded;

enum class SkipReason : uint8_t {
  kNone,
  kFpuSimd,           // x87, MMX, SSE, AVX state or registers
  kPrivileged,        // CPL 0 only, or control/debug/table registers
  kIo,                // port I/O
  kNondeterministic,  // time stamps, random numbers, model-specific CPUID values, TSX
  kLeavesSnippet,     // system calls, software interrupts, far transfers: need an OS
  kHostState,         // results depend on the host's descriptor tables or thread state
  kOtherEncoding,     // 3DNow!, XOP, EVEX, MVEX
  kHostLacks,         // the host processor does not have the extension
  kModelLacks,        // the core's CPU model does not offer the extension
  kUnmappedIsa,       // an ISA set this test does not know how to check for
  kCount
};

const char* skip_reason_name(SkipReason r);

// The ISA sets the host and the core's model support (CPUID feature bits per Zydis ISA set).
class FeatureSupport {
 public:
  explicit FeatureSupport(const cpu::CpuModel& model) : model_(model) {}
  // kNone when both have it, or the reason to skip.
  SkipReason check(ZydisISASet set, std::string& detail) const;

 private:
  const cpu::CpuModel& model_;
};

// kNone for a form the test runs; otherwise the reason and, in `detail`, what decided it.
SkipReason classify(const Decoded& d, const FeatureSupport& features, std::string& detail);

}  // namespace nestvm::diff
