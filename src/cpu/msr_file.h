// The MSR file: RDMSR/WRMSR semantics of the architectural model-specific registers (SDM Vol. 4,
// "Model-Specific Registers"; the rules of SDM Vol. 2 RDMSR/WRMSR), over CpuState::msr.
//
// Extension by later layers. The core knows only the architectural MSRs. Layers above it add
// their own by registering an MsrHandler for an index range on a Cpu (Cpu::msr_hooks):
//   - src/hv: the x2APIC registers (0x800-0x8ff), and IA32_APIC_BASE to follow APIC moves;
//   - VMX: the capability MSRs (IA32_VMX_BASIC ... IA32_VMX_VMFUNC, 0x480-0x491).
// read_msr/write_msr (what RDMSR, WRMSR and every other MSR access use) consult the hooks first,
// most recently registered first; a hook answers kOk, kGp, or kUnhandled to pass the access on
// (to older hooks, then to the architectural file). A hook that refines an architectural MSR
// can call arch_read_msr/arch_write_msr for the architectural rules and then act on the result.
// Every function is free of side effects on the Cpu's pending event: callers turn kGp into
// #GP(0) (instructions) or into their own failure (VM-entry MSR loading, the hypervisor's
// KVM_SET_MSRS-like paths).
#pragma once
#include <array>
#include <cstdint>

namespace nestvm::cpu {

class Cpu;

enum class MsrResult : uint8_t {
  kOk,
  kGp,         // the access raises #GP(0): unknown index, reserved bits, read-only, bad value
  kUnhandled,  // (hooks only) not this handler's: try the next one
};

class MsrHandler {
 public:
  virtual ~MsrHandler() = default;
  virtual MsrResult read(Cpu& c, uint32_t index, uint64_t& value) = 0;
  virtual MsrResult write(Cpu& c, uint32_t index, uint64_t value) = 0;
};

// Per-Cpu table of MSR index ranges owned by later layers. Registration is set-up time work
// (not per instruction); the table is a fixed array, searched linearly on each access.
class MsrHooks {
 public:
  static constexpr unsigned kMaxRanges = 8;
  // Routes indices [first, last] to h (which must outlive the registration). Returns false if
  // the table is full.
  bool add(uint32_t first, uint32_t last, MsrHandler* h);
  // Removes every range routed to h.
  void remove(MsrHandler* h);
  unsigned size() const { return n_; }

 private:
  friend MsrResult read_msr(Cpu& c, uint32_t index, uint64_t& value);
  friend MsrResult write_msr(Cpu& c, uint32_t index, uint64_t value);
  struct Range {
    uint32_t first = 0, last = 0;
    MsrHandler* handler = nullptr;
  };
  std::array<Range, kMaxRanges> ranges_{};
  unsigned n_ = 0;
};

// Hooks first, then the architectural file.
MsrResult read_msr(Cpu& c, uint32_t index, uint64_t& value);
MsrResult write_msr(Cpu& c, uint32_t index, uint64_t value);
// The architectural file only.
MsrResult arch_read_msr(Cpu& c, uint32_t index, uint64_t& value);
MsrResult arch_write_msr(Cpu& c, uint32_t index, uint64_t value);
// Whether the architectural file implements `index` for this Cpu's model.
bool arch_msr_exists(const Cpu& c, uint32_t index);

// The guest's time-stamp counter: host TSC + IA32_TIME_STAMP_COUNTER offset (RDTSC, RDTSCP,
// RDMSR 0x10).
uint64_t guest_tsc(const Cpu& c);

// Microcode revision reported in IA32_BIOS_SIGN_ID[63:32] after CPUID.01H (SDM Vol. 3
// §10.11.7.1: write 0 to the MSR, execute CPUID(1), read the MSR).
inline constexpr uint32_t kMicrocodeRevision = 1;

// IA32_MISC_ENABLE bits with architectural meaning here (SDM Vol. 4 Table 2-2).
namespace misc_enable {
inline constexpr uint64_t kFastStrings = 1ull << 0;
inline constexpr uint64_t kPerfMonAvailable = 1ull << 7;   // RO: no PMU on nestvm's models
inline constexpr uint64_t kBtsUnavailable = 1ull << 11;    // RO: 1
inline constexpr uint64_t kPebsUnavailable = 1ull << 12;   // RO: 1
inline constexpr uint64_t kLimitCpuidMaxval = 1ull << 22;  // CPUID.0:EAX reports at most 2
}  // namespace misc_enable

}  // namespace nestvm::cpu
