// VM-entry checks (SDM Vol. 3 Chapter 27). Being written; see arch/vmentry_checks.h.
#include "arch/vmentry_checks.h"

namespace nestvm::arch {

VmEntryCheck check_vmx_controls(const VmEntryEnv&) { return {}; }
VmEntryCheck check_host_state(const VmEntryEnv&) { return {}; }
VmEntryCheck check_guest_state(const VmEntryEnv&) { return {}; }

VmEntryCheck check_vm_entry(const VmEntryEnv& env) {
  VmEntryCheck r = check_vmx_controls(env);
  if (!r.ok()) return r;
  r = check_host_state(env);
  if (!r.ok()) return r;
  return check_guest_state(env);
}

VmEntryCheck check_msr_load_entry(const VmEntryEnv&, uint32_t, uint64_t, uint32_t) { return {}; }

}  // namespace nestvm::arch
