// The checks VM entry performs (SDM Vol. 3 Chapter 27, in its order), as pure functions over a
// view of a VMCS and the processor's VMX capabilities. The silicon runs them on the VMCSs L0
// hands it; nested VMX runs the same functions on vmcs12 to answer L1 as hardware would. Each
// failure names the rule it broke, a diagnostic hardware does not give.
#pragma once
#include <cstdint>
#include <functional>

#include "arch/vmcs.h"
#include "arch/vmx.h"

namespace nestvm::arch {

// What the checks read: VMCS fields, and physical memory for the few checks that look at it
// (the VMCS link pointer's revision, PAE PDPTEs, MSR-load entries).
struct VmEntryEnv {
  std::function<uint64_t(VmcsField)> read;
  // Reads len bytes of physical memory; false if [pa, pa+len) is not memory.
  std::function<bool(uint64_t pa, void* out, size_t len)> read_phys;
  const VmxCapabilities* caps = nullptr;
  bool launch = true;  // VMLAUNCH (false: VMRESUME)
};

struct VmEntryCheck {
  enum class Kind : uint8_t {
    kOk,
    kFailValid,     // VMfailValid(error): controls or host state (SDM §27.2)
    kEntryFailure,  // VM-entry failure: exit reason with bit 31, qualification (SDM §27.3, §27.4)
  };
  Kind kind = Kind::kOk;
  VmxError error{};          // kFailValid
  uint32_t exit_reason = 0;  // kEntryFailure: INVALID_STATE or MSR_LOAD_FAIL, bit 31 set
  uint64_t qualification = 0;
  const char* rule = "";     // the rule that failed, in words
  bool ok() const { return kind == Kind::kOk; }
};

// §27.2.1: VM-execution, VM-exit and VM-entry control fields.
VmEntryCheck check_vmx_controls(const VmEntryEnv& env);
// §27.2.2-27.2.4: host-state area.
VmEntryCheck check_host_state(const VmEntryEnv& env);
// §27.3.1-27.3.3: guest-state area, including the VMCS link pointer and PDPTEs.
VmEntryCheck check_guest_state(const VmEntryEnv& env);
// All of the above, in the SDM's order.
VmEntryCheck check_vm_entry(const VmEntryEnv& env);
// §27.4: one entry of the VM-entry MSR-load area (index is 1-based, as the qualification).
VmEntryCheck check_msr_load_entry(const VmEntryEnv& env, uint32_t msr_index, uint64_t value, uint32_t index);

}  // namespace nestvm::arch
