// VM-entry checks (SDM Vol. 3 Chapter 27): their order, and the checks on the VM-entry MSR-load
// area (§27.4). The families live in vmentry_checks_controls.cpp (§27.2.1),
// vmentry_checks_host.cpp (§27.2.2-27.2.4), vmentry_checks_guest.cpp and
// vmentry_checks_segments.cpp (§27.3.1).
#include "arch/vmentry_checks.h"

#include <cstring>

#include "arch/msr_index.h"
#include "arch/vmentry_checks_impl.h"

namespace nestvm::arch {

using namespace vmentry;

VmEntryCheck check_vm_entry(const VmEntryEnv& env) {
  // §27.2 (controls, then host state: VMfailValid), then §27.3.1 (VM-entry failure).
  VmEntryCheck r = check_vmx_controls(env);
  if (!r.ok()) return r;
  r = check_host_state(env);
  if (!r.ok()) return r;
  return check_guest_state(env);
}

MsrListEntry read_msr_list_entry(const VmEntryEnv& env, uint64_t area, uint32_t k) {
  uint8_t raw[16];
  if (!env.read_phys(area + 16ull * k, raw, sizeof raw)) std::memset(raw, 0xff, sizeof raw);
  MsrListEntry e;
  std::memcpy(&e.index, raw, 4);
  std::memcpy(&e.reserved, raw + 4, 4);
  std::memcpy(&e.value, raw + 8, 8);
  return e;
}

uint32_t msr_list_max(const VmxCapabilities& caps) { return 512u * (uint32_t((caps.misc >> 25) & 7) + 1); }

namespace {
constexpr const char* kMsrLoad = "27.4";
constexpr uint32_t kIa32BiosUpdtTrig = 0x79;   // IA32_BIOS_UPDT_TRIG (microcode update trigger)
constexpr uint32_t kIa32BiosSignId = 0x8b;     // IA32_BIOS_SIGN_ID (microcode revision)
constexpr uint32_t kIa32SmmMonitorCtl = 0x9b;  // IA32_SMM_MONITOR_CTL, writable only in SMM
VmEntryCheck fail_msr_load(const char* rule, uint32_t index) {
  return fail_entry(ExitReason::MSR_LOAD_FAIL, index, rule, kMsrLoad);
}
}  // namespace

VmEntryCheck check_msr_load_entry(const VmEntryEnv& env, const MsrListEntry& e, uint32_t index) {
  // Appendix A.6: more entries than the recommended maximum may fail; nestvm's silicon fails the
  // first entry past it (as KVM does for vmcs12).
  if (index > msr_list_max(*env.caps))
    return fail_msr_load("VM-entry MSR-load list must not exceed 512 * (IA32_VMX_MISC[27:25] + 1) entries", index);
  if (e.index == msr_index(Msr::kIA32_FS_BASE) || e.index == msr_index(Msr::kIA32_GS_BASE))
    return fail_msr_load("VM-entry MSR-load entry must not load IA32_FS_BASE or IA32_GS_BASE", index);
  if ((e.index >> 8) == 0x8)
    return fail_msr_load("VM-entry MSR-load entry must not load an x2APIC MSR (800H-8FFH)", index);
  if (e.index == kIa32SmmMonitorCtl && !env.in_smm)
    return fail_msr_load("VM-entry MSR-load entry must not load IA32_SMM_MONITOR_CTL outside SMM", index);
  // Model-specific (§27.4 allows a processor to refuse MSRs): the microcode-update MSRs, which
  // KVM's L0 refuses too.
  if (e.index == kIa32BiosUpdtTrig || e.index == kIa32BiosSignId)
    return fail_msr_load("VM-entry MSR-load entry must not load IA32_BIOS_UPDT_TRIG or IA32_BIOS_SIGN_ID (model-specific)",
                         index);
  if (e.reserved) return fail_msr_load("VM-entry MSR-load entry bits 63:32 must be 0", index);
  return {};
}

VmEntryCheck msr_load_write_failure(uint32_t index) {
  return fail_msr_load("VM-entry MSR-load entry must hold a value WRMSR accepts for that MSR", index);
}

}  // namespace nestvm::arch
