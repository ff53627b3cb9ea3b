// Shared helpers of the VM-entry check families (vmentry_checks_*.cpp); not an interface.
#pragma once
#include <cstdint>

#include "arch/cr.h"
#include "arch/exception.h"
#include "arch/vmentry_checks.h"

namespace nestvm::arch::vmentry {

// Outcomes, with the rule in words and the SDM section that states it.
inline VmEntryCheck fail_control(const char* rule, const char* section) {
  VmEntryCheck r;
  r.kind = VmEntryCheck::Kind::kFailValid;
  r.error = VmxError::ENTRY_INVALID_CONTROL_FIELD;
  r.rule = rule;
  r.section = section;
  return r;
}
inline VmEntryCheck fail_host(const char* rule, const char* section) {
  VmEntryCheck r = fail_control(rule, section);
  r.error = VmxError::ENTRY_INVALID_HOST_STATE_FIELD;
  return r;
}
inline VmEntryCheck fail_entry(ExitReason reason, uint64_t qualification, const char* rule, const char* section) {
  VmEntryCheck r;
  r.kind = VmEntryCheck::Kind::kEntryFailure;
  r.exit_reason = uint32_t(reason) | kExitReasonFailedEntry;
  r.qualification = qualification;
  r.rule = rule;
  r.section = section;
  return r;
}
inline VmEntryCheck fail_guest(const char* rule, const char* section, uint64_t qualification = 0) {
  return fail_entry(ExitReason::INVALID_STATE, qualification, rule, section);
}

// The control fields as VM entry interprets them: secondary controls are in force only with
// "activate secondary controls" (SDM §25.6.2), else VM entry treats them as 0 (§27.2.1.1).
struct EntryControls {
  uint32_t pin = 0, proc = 0, proc2 = 0, exit = 0, entry = 0;
  uint32_t intr_info = 0;  // VM-entry interruption-information field

  explicit EntryControls(const VmEntryEnv& env)
      : pin(uint32_t(env.read(VmcsField::PIN_BASED_VM_EXEC_CONTROL))),
        proc(uint32_t(env.read(VmcsField::CPU_BASED_VM_EXEC_CONTROL))),
        proc2((proc & proc::kActivateSecondary) ? uint32_t(env.read(VmcsField::SECONDARY_VM_EXEC_CONTROL)) : 0),
        exit(uint32_t(env.read(VmcsField::VM_EXIT_CONTROLS))),
        entry(uint32_t(env.read(VmcsField::VM_ENTRY_CONTROLS))),
        intr_info(uint32_t(env.read(VmcsField::VM_ENTRY_INTR_INFO_FIELD))) {}

  bool unrestricted() const { return proc2 & proc2::kUnrestrictedGuest; }
  bool ept() const { return proc2 & proc2::kEnableEpt; }
  bool ia32e_guest() const { return entry & entry_ctl::kIa32eModeGuest; }
  bool host64() const { return exit & exit_ctl::kHostAddrSpaceSize; }
  bool injecting() const { return intr_info & intr_info::kValid; }
  unsigned inject_type() const { return intr_info::type(intr_info); }
  unsigned inject_vector() const { return intr_info & intr_info::kVectorMask; }
  bool injecting(EventType t) const { return injecting() && inject_type() == unsigned(t); }
};

// The processor's linear-address width: 57 bits if it allows CR4.LA57, else 48.
inline int linear_address_bits(const VmxCapabilities& caps) { return (caps.cr4_fixed1 & cr4::kLA57) ? 57 : 48; }
// Bits 63:N-1 all equal (SDM §3.3.7.1).
inline bool canonical(uint64_t la, int bits) {
  const int64_t v = int64_t(la) >> (bits - 1);
  return v == 0 || v == -1;
}
inline bool canonical(const VmxCapabilities& caps, uint64_t la) { return canonical(la, linear_address_bits(caps)); }
// No bit at or above MAXPHYADDR.
inline bool within_phys_width(const VmxCapabilities& caps, uint64_t pa) { return (pa >> caps.maxphyaddr) == 0; }
// A 4 KiB-aligned physical address within the physical-address width.
inline bool page_address_ok(const VmxCapabilities& caps, uint64_t pa) {
  return (pa & 0xfff) == 0 && within_phys_width(caps, pa);
}
// Every byte of a PAT value one of UC, WC, WT, WP, WB, UC- (SDM Vol. 3 §12.12.2).
inline bool pat_ok(uint64_t pat) {
  for (unsigned b = 0; b < 8; ++b) {
    const uint64_t t = (pat >> (8 * b)) & 0xff;
    if (t == 2 || t == 3 || t > 7) return false;
  }
  return true;
}

// §27.3.1.2 (vmentry_checks_segments.cpp), given the guest CR0 field and RFLAGS.VM.
VmEntryCheck check_guest_segments(const VmEntryEnv& env, const EntryControls& c, uint64_t cr0, bool v86);

}  // namespace nestvm::arch::vmentry
