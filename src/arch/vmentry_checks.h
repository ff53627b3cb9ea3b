// The checks VM entry performs (SDM Vol. 3 Chapter 27, in its order), as pure functions over a
// view of a VMCS and the processor's VMX capabilities. The silicon runs them on the VMCSs L0
// hands it; nested VMX runs the same functions on vmcs12 to answer L1 as hardware would. Each
// failure names the rule it broke, a diagnostic hardware does not give.
//
// What is checked where (the §27.1 checks on the instruction and the launch state belong to
// the caller, which executes VMLAUNCH/VMRESUME):
//   check_vmx_controls   §27.2.1  VMfailValid(7)
//   check_host_state     §27.2.2-27.2.4  VMfailValid(8)
//   check_guest_state    §27.3.1  VM-entry failure, exit reason 33 (INVALID_STATE) | bit 31
//   check_msr_load_entry §27.4    VM-entry failure, exit reason 34 (MSR_LOAD_FAIL) | bit 31
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "arch/vmcs.h"
#include "arch/vmx.h"

namespace nestvm::arch {

// What the checks read: VMCS fields, physical memory for the few checks that look at it (the
// virtual-APIC page's VTPR, the VMCS link pointer's revision, PAE PDPTEs at CR3), the
// processor's capabilities, and the few facts about the processor at the time of VM entry that
// the capability MSRs do not report.
struct VmEntryEnv {
  std::function<uint64_t(VmcsField)> read;
  // Reads len bytes of physical memory; false if [pa, pa+len) is not memory (the checks then
  // see all ones, as a read of nonexistent memory returns on hardware).
  std::function<bool(uint64_t pa, void* out, size_t len)> read_phys;
  const VmxCapabilities* caps = nullptr;
  bool launch = true;  // VMLAUNCH (false: VMRESUME)

  // The logical processor executing VMLAUNCH/VMRESUME (SDM §27.2.4, §27.3.1.5, §27.4).
  bool in_ia32e_mode = true;      // the silicon's L0 is a 64-bit host; nested VMX: L1's EFER.LMA
  bool in_smm = false;
  uint64_t current_vmcs = ~0ull;  // the current-VMCS pointer (the link pointer must differ)
  // The bits WRMSR accepts in the MSRs whose values VM entry and VM exit may load from the VMCS
  // (their other bits are the "reserved bits" of §27.2.2 and §27.3.1.1).
  uint64_t efer_valid_bits = (1ull << 0) | (1ull << 8) | (1ull << 10) | (1ull << 11);  // SCE LME LMA NXE
  uint64_t debugctl_valid_bits = (1ull << 0) | (1ull << 1);                            // LBR BTF
  uint64_t perf_global_ctrl_valid_bits = 0;                                            // no PMU counters
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
  const char* section = "";  // where the SDM states it, e.g. "27.3.1.2"
  bool ok() const { return kind == Kind::kOk; }
};

// Exit qualifications of a VM-entry failure due to invalid guest state (SDM §27.8).
namespace entry_failure_qual {
inline constexpr uint64_t kNone = 0;
inline constexpr uint64_t kPdpte = 2;             // loading the PDPTEs failed
inline constexpr uint64_t kNmiBlockedBySti = 3;   // NMI injection into STI blocking
inline constexpr uint64_t kVmcsLinkPointer = 4;   // invalid VMCS link pointer
}  // namespace entry_failure_qual

// §27.2.1: VM-execution, VM-exit and VM-entry control fields.
VmEntryCheck check_vmx_controls(const VmEntryEnv& env);
// §27.2.2-27.2.4: host-state area.
VmEntryCheck check_host_state(const VmEntryEnv& env);
// §27.3.1: guest-state area, including the VMCS link pointer and PDPTEs.
VmEntryCheck check_guest_state(const VmEntryEnv& env);
// All of the above, in the SDM's order.
VmEntryCheck check_vm_entry(const VmEntryEnv& env);

// One 16-byte entry of an MSR-load/store area (SDM §25.7.2, Table 25-15).
struct MsrListEntry {
  uint32_t index = 0;
  uint32_t reserved = 0;  // bits 63:32 of the first quadword
  uint64_t value = 0;
};
// Entry k (0-based) of the list at `area`, through env.read_phys (all ones where there is no
// memory).
MsrListEntry read_msr_list_entry(const VmEntryEnv& env, uint64_t area, uint32_t k);
// The recommended maximum number of entries in an MSR list: 512 * (IA32_VMX_MISC[27:25] + 1).
uint32_t msr_list_max(const VmxCapabilities& caps);

// §27.4: the checks VM entry makes on entry `index` (1-based, as the qualification) of the
// VM-entry MSR-load area before it writes the MSR. The write itself is the caller's (the
// silicon's WRMSR, or nested VMX's emulated one); if it rejects the value, the caller fails the
// entry with msr_load_write_failure(index), so that both report the same rule.
VmEntryCheck check_msr_load_entry(const VmEntryEnv& env, const MsrListEntry& e, uint32_t index);
// An EPTP against IA32_VMX_EPT_VPID_CAP (SDM §27.2.1.1): also the operand check of INVEPT.
VmEntryCheck check_eptp(const VmxCapabilities& caps, uint64_t eptp);
VmEntryCheck msr_load_write_failure(uint32_t index);

}  // namespace nestvm::arch
