// Checks on the VMX controls (SDM Vol. 3 §27.2.1): the VM-execution controls (§27.2.1.1), the
// VM-exit controls (§27.2.1.2) and the VM-entry controls with event injection (§27.2.1.3).
// A failure is VMfailValid with error 7, "VM entry with invalid control field(s)".
//
// Controls whose fields the VMCS table lacks (posted-interrupt descriptor, PML address, #VE
// information address, VM-function controls, TSC multiplier) cannot be enabled on any
// processor nestvm models (their allowed 1-settings are 0), so the reserved-bit checks stop
// them before the checks of those fields would apply.
#include "arch/vmentry_checks.h"
#include "arch/vmentry_checks_impl.h"

namespace nestvm::arch {

using namespace vmentry;

namespace {

constexpr const char* kExec = "27.2.1.1";
constexpr const char* kExit = "27.2.1.2";
constexpr const char* kEntry = "27.2.1.3";

// Reserved bits of one control field against its capability MSR (SDM Appendix A.3-A.5).
struct ControlFieldRules {
  const char* allowed0;
  const char* allowed1;
};
VmEntryCheck check_allowed(uint32_t value, const ControlCaps& caps, const ControlFieldRules& r, const char* section) {
  if ((value & caps.allowed0) != caps.allowed0) return fail_control(r.allowed0, section);
  if (value & ~caps.allowed1) return fail_control(r.allowed1, section);
  return {};
}

// An MSR-load/store area of `count` 16-byte entries (SDM §27.2.1.2, §27.2.1.3): 16-byte
// aligned, and the area's first and last bytes within the physical-address width (computed
// with more bits than the width, so the sum does not wrap).
VmEntryCheck check_msr_area(const VmxCapabilities& caps, uint64_t addr, uint32_t count, const char* align_rule,
                            const char* end_rule, const char* section) {
  if (count == 0) return {};
  if ((addr & 0xf) || !within_phys_width(caps, addr)) return fail_control(align_rule, section);
  if (!within_phys_width(caps, addr + uint64_t(count) * 16 - 1)) return fail_control(end_rule, section);
  return {};
}


VmEntryCheck check_execution_controls(const VmEntryEnv& env, const EntryControls& c) {
  const VmxCapabilities& caps = *env.caps;
  VmEntryCheck r = check_allowed(
      c.pin, caps.pin,
      {"pin-based controls must set every bit IA32_VMX_TRUE_PINBASED_CTLS requires (allowed 0-settings)",
       "pin-based controls must clear every bit IA32_VMX_TRUE_PINBASED_CTLS does not allow (allowed 1-settings)"},
      kExec);
  if (!r.ok()) return r;
  r = check_allowed(
      c.proc, caps.proc,
      {"primary processor-based controls must set every bit IA32_VMX_TRUE_PROCBASED_CTLS requires (allowed 0-settings)",
       "primary processor-based controls must clear every bit IA32_VMX_TRUE_PROCBASED_CTLS does not allow (allowed "
       "1-settings)"},
      kExec);
  if (!r.ok()) return r;
  // Only with "activate secondary controls"; otherwise the field is not checked (c.proc2 = 0).
  r = check_allowed(
      c.proc2, (c.proc & proc::kActivateSecondary) ? caps.proc2 : ControlCaps{0, 0},
      {"secondary processor-based controls must set every bit IA32_VMX_PROCBASED_CTLS2 requires (allowed 0-settings)",
       "secondary processor-based controls must clear every bit IA32_VMX_PROCBASED_CTLS2 does not allow (allowed "
       "1-settings)"},
      kExec);
  if (!r.ok()) return r;

  if (env.read(VmcsField::CR3_TARGET_COUNT) > ((caps.misc >> 16) & 0x1ff))
    return fail_control("CR3-target count must not exceed the number IA32_VMX_MISC[24:16] supports", kExec);
  if (c.proc & proc::kUseIoBitmaps) {
    if (!page_address_ok(caps, env.read(VmcsField::IO_BITMAP_A)))
      return fail_control("I/O-bitmap A address must be 4 KiB aligned and within the physical-address width", kExec);
    if (!page_address_ok(caps, env.read(VmcsField::IO_BITMAP_B)))
      return fail_control("I/O-bitmap B address must be 4 KiB aligned and within the physical-address width", kExec);
  }
  if ((c.proc & proc::kUseMsrBitmaps) && !page_address_ok(caps, env.read(VmcsField::MSR_BITMAP)))
    return fail_control("MSR-bitmap address must be 4 KiB aligned and within the physical-address width", kExec);

  const bool tpr_shadow = c.proc & proc::kUseTprShadow;
  const bool vid = c.proc2 & proc2::kVirtualInterruptDelivery;
  if (tpr_shadow) {
    const uint64_t vapic = env.read(VmcsField::VIRTUAL_APIC_PAGE_ADDR);
    if (!page_address_ok(caps, vapic))
      return fail_control("virtual-APIC address must be 4 KiB aligned and within the physical-address width", kExec);
    const uint32_t threshold = uint32_t(env.read(VmcsField::TPR_THRESHOLD));
    if (!vid && (threshold & ~0xfu))
      return fail_control("TPR threshold bits 31:4 must be 0 with the TPR shadow and without virtual-interrupt delivery",
                          kExec);
    if (!vid && !(c.proc2 & proc2::kVirtualizeApicAccesses)) {
      uint8_t vtpr = 0xff;  // nonexistent memory reads as all ones
      if (!env.read_phys(vapic + 0x80, &vtpr, 1)) vtpr = 0xff;
      if ((threshold & 0xf) > unsigned(vtpr >> 4))
        return fail_control(
            "TPR threshold bits 3:0 must not exceed VTPR bits 7:4 (virtual-APIC page offset 80H) without APIC-access "
            "virtualization or virtual-interrupt delivery",
            kExec);
    }
  }
  if (!(c.pin & pin::kNmiExiting) && (c.pin & pin::kVirtualNmis))
    return fail_control("virtual NMIs requires NMI exiting", kExec);
  if (!(c.pin & pin::kVirtualNmis) && (c.proc & proc::kNmiWindowExiting))
    return fail_control("NMI-window exiting requires virtual NMIs", kExec);
  if ((c.proc2 & proc2::kVirtualizeApicAccesses) && !page_address_ok(caps, env.read(VmcsField::APIC_ACCESS_ADDR)))
    return fail_control("APIC-access address must be 4 KiB aligned and within the physical-address width", kExec);
  if (!tpr_shadow &&
      (c.proc2 & (proc2::kVirtualizeX2apic | proc2::kApicRegisterVirtualization | proc2::kVirtualInterruptDelivery)))
    return fail_control(
        "virtualize x2APIC mode, APIC-register virtualization and virtual-interrupt delivery require the TPR shadow",
        kExec);
  if ((c.proc2 & proc2::kVirtualizeX2apic) && (c.proc2 & proc2::kVirtualizeApicAccesses))
    return fail_control("virtualize x2APIC mode and virtualize APIC accesses must not both be 1", kExec);
  if (vid && !(c.pin & pin::kExtIntExiting))
    return fail_control("virtual-interrupt delivery requires external-interrupt exiting", kExec);
  if (c.pin & pin::kPostedInterrupts) {
    if (!vid) return fail_control("process posted interrupts requires virtual-interrupt delivery", kExec);
    if (!(c.exit & exit_ctl::kAckIntrOnExit))
      return fail_control("process posted interrupts requires acknowledge interrupt on exit", kExec);
    if (env.read(VmcsField::POSTED_INTR_NV) & 0xff00)
      return fail_control("posted-interrupt notification vector bits 15:8 must be 0", kExec);
  }
  if ((c.proc2 & proc2::kEnableVpid) && env.read(VmcsField::VIRTUAL_PROCESSOR_ID) == 0)
    return fail_control("VPID must not be 0 when enable VPID is 1", kExec);
  if (c.ept()) {
    r = check_eptp(caps, env.read(VmcsField::EPT_POINTER));
    if (!r.ok()) return r;
  }
  if ((c.proc2 & proc2::kEnablePml) && !c.ept()) return fail_control("enable PML requires enable EPT", kExec);
  if (c.unrestricted() && !c.ept()) return fail_control("unrestricted guest requires enable EPT", kExec);
  if ((c.proc2 & proc2::kModeBasedEptExec) && !c.ept())
    return fail_control("mode-based execute control for EPT requires enable EPT", kExec);
  if (c.proc2 & proc2::kVmcsShadowing) {
    if (!page_address_ok(caps, env.read(VmcsField::VMREAD_BITMAP)))
      return fail_control("VMREAD-bitmap address must be 4 KiB aligned and within the physical-address width", kExec);
    if (!page_address_ok(caps, env.read(VmcsField::VMWRITE_BITMAP)))
      return fail_control("VMWRITE-bitmap address must be 4 KiB aligned and within the physical-address width", kExec);
  }
  return {};
}

VmEntryCheck check_exit_controls(const VmEntryEnv& env, const EntryControls& c) {
  const VmxCapabilities& caps = *env.caps;
  VmEntryCheck r = check_allowed(
      c.exit, caps.exit,
      {"VM-exit controls must set every bit IA32_VMX_TRUE_EXIT_CTLS requires (allowed 0-settings)",
       "VM-exit controls must clear every bit IA32_VMX_TRUE_EXIT_CTLS does not allow (allowed 1-settings)"},
      kExit);
  if (!r.ok()) return r;
  if (!(c.pin & pin::kPreemptionTimer) && (c.exit & exit_ctl::kSavePreemptionTimer))
    return fail_control("save VMX-preemption-timer value requires activate VMX-preemption timer", kExit);
  r = check_msr_area(caps, env.read(VmcsField::VM_EXIT_MSR_STORE_ADDR),
                     uint32_t(env.read(VmcsField::VM_EXIT_MSR_STORE_COUNT)),
                     "VM-exit MSR-store address must be 16-byte aligned and within the physical-address width",
                     "VM-exit MSR-store area must end within the physical-address width", kExit);
  if (!r.ok()) return r;
  return check_msr_area(caps, env.read(VmcsField::VM_EXIT_MSR_LOAD_ADDR),
                        uint32_t(env.read(VmcsField::VM_EXIT_MSR_LOAD_COUNT)),
                        "VM-exit MSR-load address must be 16-byte aligned and within the physical-address width",
                        "VM-exit MSR-load area must end within the physical-address width", kExit);
}

// Exceptions that deliver an error code, as VM entry counts them (SDM §27.2.1.3): #DF, #TS,
// #NP, #SS, #GP, #PF, #AC.
constexpr bool vector_has_error_code(unsigned v) { return v == 8 || (v >= 10 && v <= 14) || v == 17; }

// Event injection (SDM §27.2.1.3, the VM-entry interruption-information field and its companions).
VmEntryCheck check_event_injection(const VmEntryEnv& env, const EntryControls& c) {
  if (!c.injecting()) return {};
  const VmxCapabilities& caps = *env.caps;
  const unsigned type = c.inject_type();
  const unsigned vector = c.inject_vector();
  if (type == 1) return fail_control("VM-entry interruption type 1 is reserved", kEntry);
  if (type == unsigned(EventType::kOther) && !(caps.proc.allowed1 & proc::kMonitorTrapFlag))
    return fail_control("VM-entry interruption type 7 (other event) requires monitor-trap-flag support", kEntry);
  if (type == unsigned(EventType::kNmi) && vector != 2)
    return fail_control("an injected NMI must have vector 2", kEntry);
  if (type == unsigned(EventType::kHardwareException) && vector > 31)
    return fail_control("an injected hardware exception must have a vector of 31 or less", kEntry);
  if (type == unsigned(EventType::kOther) && vector != 0)
    return fail_control("an injected other event must have vector 0 (pending MTF VM exit)", kEntry);

  const bool deliver = c.intr_info & intr_info::kDeliverErrorCode;
  const bool real_mode = c.unrestricted() && !(env.read(VmcsField::GUEST_CR0) & cr0::kPE);
  const bool hw_exception = type == unsigned(EventType::kHardwareException);
  // IA32_VMX_BASIC[56]: hardware exceptions may be delivered with or without an error code.
  const bool relaxed = caps.basic & vmx_basic::kNoErrorCodeCheck;
  if (!deliver && !relaxed && !real_mode && hw_exception && vector_has_error_code(vector))
    return fail_control(
        "deliver-error-code must be 1 for a hardware exception with an error code (8, 10-14, 17) unless the guest is "
        "in real mode",
        kEntry);
  if (deliver && (real_mode || !hw_exception || (!relaxed && !vector_has_error_code(vector))))
    return fail_control(
        "deliver-error-code must be 0 for a real-mode guest, an event that is not a hardware exception, or a vector "
        "without an error code",
        kEntry);
  if (c.intr_info & 0x7ffff000u) return fail_control("VM-entry interruption-information bits 30:12 must be 0", kEntry);
  if (deliver && (env.read(VmcsField::VM_ENTRY_EXCEPTION_ERROR_CODE) & 0xffff0000u))
    return fail_control("VM-entry exception error code bits 31:16 must be 0", kEntry);
  if (type == unsigned(EventType::kSoftwareInterrupt) || type == unsigned(EventType::kPrivilegedSoftwareException) ||
      type == unsigned(EventType::kSoftwareException)) {
    const uint64_t len = env.read(VmcsField::VM_ENTRY_INSTRUCTION_LEN);
    const bool zero_ok = caps.misc & (1ull << 30);
    if (len > 15 || (len == 0 && !zero_ok))
      return fail_control(
          "VM-entry instruction length must be 1-15 (0 only with IA32_VMX_MISC[30]) for a software interrupt, software "
          "exception or privileged software exception",
          kEntry);
  }
  return {};
}

VmEntryCheck check_entry_controls(const VmEntryEnv& env, const EntryControls& c) {
  VmEntryCheck r = check_allowed(
      c.entry, env.caps->entry,
      {"VM-entry controls must set every bit IA32_VMX_TRUE_ENTRY_CTLS requires (allowed 0-settings)",
       "VM-entry controls must clear every bit IA32_VMX_TRUE_ENTRY_CTLS does not allow (allowed 1-settings)"},
      kEntry);
  if (!r.ok()) return r;
  r = check_event_injection(env, c);
  if (!r.ok()) return r;
  r = check_msr_area(*env.caps, env.read(VmcsField::VM_ENTRY_MSR_LOAD_ADDR),
                     uint32_t(env.read(VmcsField::VM_ENTRY_MSR_LOAD_COUNT)),
                     "VM-entry MSR-load address must be 16-byte aligned and within the physical-address width",
                     "VM-entry MSR-load area must end within the physical-address width", kEntry);
  if (!r.ok()) return r;
  if (!env.in_smm && (c.entry & entry_ctl::kEntryToSmm))
    return fail_control("entry to SMM must be 0 outside SMM", kEntry);
  if (!env.in_smm && (c.entry & entry_ctl::kDeactivateDualMonitor))
    return fail_control("deactivate dual-monitor treatment must be 0 outside SMM", kEntry);
  if ((c.entry & entry_ctl::kEntryToSmm) && (c.entry & entry_ctl::kDeactivateDualMonitor))
    return fail_control("entry to SMM and deactivate dual-monitor treatment must not both be 1", kEntry);
  return {};
}

}  // namespace

// EPTP (SDM §27.2.1.1, §25.6.11) against IA32_VMX_EPT_VPID_CAP.
VmEntryCheck check_eptp(const VmxCapabilities& caps, uint64_t eptp) {
  const uint64_t cap = caps.ept_vpid_cap;
  const uint64_t type = eptp & eptp::kMemTypeMask;
  if (!(type == eptp::kMemTypeUc && (cap & ept_vpid_cap::kMemTypeUc)) &&
      !(type == eptp::kMemTypeWb && (cap & ept_vpid_cap::kMemTypeWb)))
    return fail_control("EPTP memory type (bits 2:0) must be one IA32_VMX_EPT_VPID_CAP supports (0 UC, 6 WB)", kExec);
  const uint64_t walk = (eptp >> eptp::kWalkLengthShift) & 7;
  if (!(walk == 3 && (cap & ept_vpid_cap::kPageWalk4)) && !(walk == 4 && (cap & ept_vpid_cap::kPageWalk5)))
    return fail_control("EPTP page-walk length (bits 5:3) must be 3, a 4-level walk", kExec);
  if ((eptp & eptp::kAdEnable) && !(cap & ept_vpid_cap::kAccessedDirty))
    return fail_control("EPTP accessed/dirty enable (bit 6) requires IA32_VMX_EPT_VPID_CAP[21]", kExec);
  // Bit 7 (supervisor shadow-stack control) needs CET, which no nestvm processor has.
  if (eptp & (eptp::kSupervisorShadowStack | eptp::kReservedLow))
    return fail_control("EPTP reserved bits 11:7 must be 0", kExec);
  if (!within_phys_width(caps, eptp)) return fail_control("EPTP must be within the physical-address width", kExec);
  return {};
}

VmEntryCheck check_vmx_controls(const VmEntryEnv& env) {
  const EntryControls c(env);
  VmEntryCheck r = check_execution_controls(env, c);
  if (!r.ok()) return r;
  r = check_exit_controls(env, c);
  if (!r.ok()) return r;
  return check_entry_controls(env, c);
}

}  // namespace nestvm::arch
