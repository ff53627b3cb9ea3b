#include "hv/nested/nested_caps.h"

#include "arch/cr.h"
#include "arch/msr_index.h"
#include "arch/vmcs.h"
#include "cpu/vmx/capabilities.h"
#include "hv/nested/vmcs12.h"

namespace nestvm::hv::nested {

using namespace arch;
using cpu::Feature;
using W = VmxFeatureWord;

namespace {

// QEMU's names (target/i386/cpu.c, feature_word_info[FEAT_VMX_*].feat_names).
constexpr VmxFeatureName kNames[] = {
    {"vmx-vintr-pending", W::kProcbased, 2}, {"vmx-tsc-offset", W::kProcbased, 3},
    {"vmx-hlt-exit", W::kProcbased, 7}, {"vmx-invlpg-exit", W::kProcbased, 9},
    {"vmx-mwait-exit", W::kProcbased, 10}, {"vmx-rdpmc-exit", W::kProcbased, 11},
    {"vmx-rdtsc-exit", W::kProcbased, 12}, {"vmx-cr3-load-noexit", W::kProcbased, 15},
    {"vmx-cr3-store-noexit", W::kProcbased, 16}, {"vmx-cr8-load-exit", W::kProcbased, 19},
    {"vmx-cr8-store-exit", W::kProcbased, 20}, {"vmx-flexpriority", W::kProcbased, 21},
    {"vmx-vnmi-pending", W::kProcbased, 22}, {"vmx-movdr-exit", W::kProcbased, 23},
    {"vmx-io-exit", W::kProcbased, 24}, {"vmx-io-bitmap", W::kProcbased, 25},
    {"vmx-mtf", W::kProcbased, 27}, {"vmx-msr-bitmap", W::kProcbased, 28},
    {"vmx-monitor-exit", W::kProcbased, 29}, {"vmx-pause-exit", W::kProcbased, 30},
    {"vmx-secondary-ctls", W::kProcbased, 31},

    {"vmx-apicv-xapic", W::kSecondary, 0}, {"vmx-ept", W::kSecondary, 1},
    {"vmx-desc-exit", W::kSecondary, 2}, {"vmx-rdtscp-exit", W::kSecondary, 3},
    {"vmx-apicv-x2apic", W::kSecondary, 4}, {"vmx-vpid", W::kSecondary, 5},
    {"vmx-wbinvd-exit", W::kSecondary, 6}, {"vmx-unrestricted-guest", W::kSecondary, 7},
    {"vmx-apicv-register", W::kSecondary, 8}, {"vmx-apicv-vid", W::kSecondary, 9},
    {"vmx-ple", W::kSecondary, 10}, {"vmx-rdrand-exit", W::kSecondary, 11},
    {"vmx-invpcid-exit", W::kSecondary, 12}, {"vmx-vmfunc", W::kSecondary, 13},
    {"vmx-shadow-vmcs", W::kSecondary, 14}, {"vmx-encls-exit", W::kSecondary, 15},
    {"vmx-rdseed-exit", W::kSecondary, 16}, {"vmx-pml", W::kSecondary, 17},
    {"vmx-xsaves", W::kSecondary, 20}, {"vmx-tsc-scaling", W::kSecondary, 25},

    {"vmx-intr-exit", W::kPinbased, 0}, {"vmx-nmi-exit", W::kPinbased, 3},
    {"vmx-vnmi", W::kPinbased, 5}, {"vmx-preemption-timer", W::kPinbased, 6},
    {"vmx-posted-intr", W::kPinbased, 7},

    {"vmx-exit-nosave-debugctl", W::kExit, 2}, {"vmx-exit-load-perf-global-ctrl", W::kExit, 12},
    {"vmx-exit-ack-intr", W::kExit, 15}, {"vmx-exit-save-pat", W::kExit, 18},
    {"vmx-exit-load-pat", W::kExit, 19}, {"vmx-exit-save-efer", W::kExit, 20},
    {"vmx-exit-load-efer", W::kExit, 21}, {"vmx-exit-save-preemption-timer", W::kExit, 22},
    {"vmx-exit-clear-bndcfgs", W::kExit, 23}, {"vmx-exit-clear-rtit-ctl", W::kExit, 25},
    {"vmx-exit-load-pkrs", W::kExit, 29},

    {"vmx-entry-noload-debugctl", W::kEntry, 2}, {"vmx-entry-ia32e-mode", W::kEntry, 9},
    {"vmx-entry-load-perf-global-ctrl", W::kEntry, 13}, {"vmx-entry-load-pat", W::kEntry, 14},
    {"vmx-entry-load-efer", W::kEntry, 15}, {"vmx-entry-load-bndcfgs", W::kEntry, 16},
    {"vmx-entry-load-rtit-ctl", W::kEntry, 18}, {"vmx-entry-load-pkrs", W::kEntry, 22},

    {"vmx-store-lma", W::kMisc, 5}, {"vmx-activity-hlt", W::kMisc, 6},
    {"vmx-activity-shutdown", W::kMisc, 7}, {"vmx-activity-wait-sipi", W::kMisc, 8},
    {"vmx-vmwrite-vmexit-fields", W::kMisc, 29}, {"vmx-zero-len-inject", W::kMisc, 30},

    {"vmx-ept-execonly", W::kEptVpidCaps, 0}, {"vmx-page-walk-4", W::kEptVpidCaps, 6},
    {"vmx-page-walk-5", W::kEptVpidCaps, 7}, {"vmx-ept-2mb", W::kEptVpidCaps, 16},
    {"vmx-ept-1gb", W::kEptVpidCaps, 17}, {"vmx-invept", W::kEptVpidCaps, 20},
    {"vmx-eptad", W::kEptVpidCaps, 21}, {"vmx-ept-advanced-exitinfo", W::kEptVpidCaps, 22},
    {"vmx-invept-single-context", W::kEptVpidCaps, 25}, {"vmx-invept-all-context", W::kEptVpidCaps, 26},
    {"vmx-invvpid", W::kEptVpidCaps, 32}, {"vmx-invvpid-single-addr", W::kEptVpidCaps, 40},
    {"vmx-invvpid-single-context", W::kEptVpidCaps, 41}, {"vmx-invvpid-all-context", W::kEptVpidCaps, 42},
    {"vmx-invvpid-single-context-noglobals", W::kEptVpidCaps, 43},

    {"vmx-ins-outs", W::kBasic, 54}, {"vmx-true-ctls", W::kBasic, 55},

    {"vmx-eptp-switching", W::kVmfunc, 0},
};

// Of a control word, the bits that are 1 by default (SDM Appendix A.2): QEMU's "-noexit",
// "-nosave" and "-noload" names there offer the 0-setting, so removing one forces the 1.
constexpr uint32_t default1_of(W w) {
  switch (w) {
    case W::kProcbased: return proc::kDefault1;
    case W::kPinbased: return pin::kDefault1;
    case W::kExit: return exit_ctl::kDefault1;
    case W::kEntry: return entry_ctl::kDefault1;
    default: return 0;
  }
}

template <typename Caps> auto control_of(Caps& c, W w) -> decltype(&c.proc) {
  switch (w) {
    case W::kProcbased: return &c.proc;
    case W::kSecondary: return &c.proc2;
    case W::kPinbased: return &c.pin;
    case W::kExit: return &c.exit;
    case W::kEntry: return &c.entry;
    default: return nullptr;
  }
}

// Removes bits of one feature word from c.
void remove(VmxCapabilities& c, W w, uint64_t bits) {
  if (ControlCaps* cc = control_of(c, w)) {
    const uint32_t b = uint32_t(bits);
    cc->allowed0 |= b & default1_of(w);
    cc->allowed1 &= ~(b & ~default1_of(w));
    return;
  }
  switch (w) {
    case W::kMisc: c.misc &= ~bits; break;
    case W::kEptVpidCaps: c.ept_vpid_cap &= ~bits; break;
    case W::kBasic: c.basic &= ~(bits & (vmx_basic::kInsOutsInfo | vmx_basic::kTrueControls)); break;
    default: break;  // VM functions are not offered
  }
}

// The CR4 bits L1's model lets it set (KVM's nested_vmx_cr_fixed1_bits_update): those of every
// processor, then one per CPUID feature.
uint64_t cr4_fixed1(const cpu::CpuModel& m) {
  uint64_t v = cr4::kVME | cr4::kPVI | cr4::kTSD | cr4::kDE | cr4::kPSE | cr4::kPAE | cr4::kMCE | cr4::kPGE |
               cr4::kPCE | cr4::kOSFXSR | cr4::kOSXMMEXCPT | cr4::kVMXE;
  const std::pair<Feature, uint64_t> per_feature[] = {
      {Feature::kUmip, cr4::kUMIP},   {Feature::kFsgsbase, cr4::kFSGSBASE}, {Feature::kPcid, cr4::kPCIDE},
      {Feature::kXsave, cr4::kOSXSAVE}, {Feature::kSmep, cr4::kSMEP},       {Feature::kSmap, cr4::kSMAP},
      {Feature::kPku, cr4::kPKE}};
  for (const auto& [f, bit] : per_feature)
    if (m.has(f)) v |= bit;
  return v;
}

}  // namespace

std::span<const VmxFeatureName> vmx_feature_names() { return kNames; }

const VmxFeatureName* vmx_feature_by_name(std::string_view name) {
  for (const VmxFeatureName& f : kNames)
    if (name == f.name) return &f;
  return nullptr;
}

bool vmx_feature_offered(const VmxFeatureName& f) {
  static const VmxCapabilities full = nested_vmx_capabilities(cpu::CpuModel::max());
  const uint64_t bit = 1ull << f.bit;
  const ControlCaps* cc = control_of(full, f.word);
  if (cc) return (bit & default1_of(f.word)) ? !(cc->allowed0 & bit) : (cc->allowed1 & bit) != 0;
  switch (f.word) {
    case W::kMisc: return full.misc & bit;
    case W::kEptVpidCaps: return full.ept_vpid_cap & bit;
    case W::kBasic: return full.basic & bit;
    default: return false;
  }
}

VmxCapabilities nested_vmx_capabilities(const cpu::CpuModel& model) {
  VmxCapabilities c;
  c.maxphyaddr = model.maxphyaddr();
  // SDM A.1: vmcs12's revision, 4 KiB regions, write-back, INS/OUTS information, TRUE controls.
  c.basic = kVmcs12Revision | (uint64_t(vmcs12_layout::kSize) << vmx_basic::kRegionSizeShift) |
            (6ull << vmx_basic::kMemTypeShift) | vmx_basic::kInsOutsInfo | vmx_basic::kTrueControls;
  c.pin = {pin::kDefault1, pin::kDefault1 | pin::kExtIntExiting | pin::kNmiExiting | pin::kVirtualNmis |
                               pin::kPreemptionTimer};
  const uint32_t proc0 = proc::kDefault1 & ~(proc::kCr3LoadExiting | proc::kCr3StoreExiting);
  c.proc = {proc0, proc0 | proc::kIntrWindowExiting | proc::kUseTscOffsetting | proc::kHltExiting |
                       proc::kInvlpgExiting | proc::kMwaitExiting | proc::kRdpmcExiting | proc::kRdtscExiting |
                       proc::kCr3LoadExiting | proc::kCr3StoreExiting | proc::kCr8LoadExiting |
                       proc::kCr8StoreExiting | proc::kUseTprShadow | proc::kNmiWindowExiting |
                       proc::kMovDrExiting | proc::kUncondIoExiting | proc::kUseIoBitmaps |
                       proc::kMonitorTrapFlag | proc::kUseMsrBitmaps | proc::kMonitorExiting |
                       proc::kPauseExiting | proc::kActivateSecondary};
  // The silicon's secondary controls but VMCS shadowing (L1's own shadow VMCSs are not offered).
  c.proc2 = {0, proc2::kVirtualizeApicAccesses | proc2::kEnableEpt | proc2::kDescriptorTableExiting |
                    proc2::kEnableRdtscp | proc2::kVirtualizeX2apic | proc2::kEnableVpid | proc2::kWbinvdExiting |
                    proc2::kUnrestrictedGuest | proc2::kPauseLoopExiting | proc2::kRdrandExiting |
                    proc2::kEnableInvpcid | proc2::kRdseedExiting | proc2::kEnableXsaves};
  const uint32_t exit0 = exit_ctl::kDefault1 & ~exit_ctl::kSaveDebugControls;
  c.exit = {exit0, exit0 | exit_ctl::kSaveDebugControls | exit_ctl::kHostAddrSpaceSize |
                       exit_ctl::kLoadPerfGlobalCtrl | exit_ctl::kAckIntrOnExit | exit_ctl::kSavePat |
                       exit_ctl::kLoadPat | exit_ctl::kSaveEfer | exit_ctl::kLoadEfer |
                       exit_ctl::kSavePreemptionTimer};
  const uint32_t entry0 = entry_ctl::kDefault1 & ~entry_ctl::kLoadDebugControls;
  c.entry = {entry0, entry0 | entry_ctl::kLoadDebugControls | entry_ctl::kIa32eModeGuest |
                         entry_ctl::kLoadPerfGlobalCtrl | entry_ctl::kLoadPat | entry_ctl::kLoadEfer};
  // SDM A.6: timer at TSC >> 5, LMA stored on exit, HLT/shutdown/wait-for-SIPI, 4 CR3 targets,
  // 512-entry MSR lists, VMWRITE to every field (bit 29).
  c.misc = 5 | (1ull << 5) | (7ull << 6) | (4ull << 16) | (1ull << 29);
  c.cr0_fixed0 = cr0::kPE | cr0::kNE | cr0::kPG;
  c.cr0_fixed1 = 0xffffffff;
  c.cr4_fixed0 = cr4::kVMXE;
  c.cr4_fixed1 = cr4_fixed1(model);
  using namespace ept_vpid_cap;
  c.ept_vpid_cap = kExecuteOnly | kPageWalk4 | kMemTypeUc | kMemTypeWb | kPde2M | kPdpte1G | kInvept |
                   kAccessedDirty | kInveptSingleContext | kInveptAllContext | kInvvpid | kInvvpidIndividualAddr |
                   kInvvpidSingleContext | kInvvpidAllContext | kInvvpidSingleContextRetainGlobals;
  c.vmcs_enum = uint64_t(vmcs_highest_index()) << 1;

  // What the command line took away.
  for (unsigned w = 0; w < unsigned(W::kCount); ++w)
    if (const uint64_t bits = model.vmx_features_removed(w)) remove(c, W(w), bits);

  // What the CPU model implies (QEMU's feature_dependencies, KVM's vmx_adjust_secondary_exec_control).
  if (!model.has(Feature::kRdtscp)) c.proc2.allowed1 &= ~proc2::kEnableRdtscp;
  if (!model.has(Feature::kInvpcid)) c.proc2.allowed1 &= ~proc2::kEnableInvpcid;
  if (!model.has(Feature::kRdrand)) c.proc2.allowed1 &= ~proc2::kRdrandExiting;
  if (!model.has(Feature::kRdseed)) c.proc2.allowed1 &= ~proc2::kRdseedExiting;
  if (!model.has(Feature::kXsaves)) c.proc2.allowed1 &= ~proc2::kEnableXsaves;
  if (!model.has(Feature::kLm)) {
    c.entry.allowed1 &= ~entry_ctl::kIa32eModeGuest;
    c.exit.allowed1 &= ~exit_ctl::kHostAddrSpaceSize;
  }
  if (!model.has(Feature::kPdpe1gb)) c.ept_vpid_cap &= ~kPdpte1G;
  // ... and what the controls imply for one another.
  if (!(c.proc.allowed1 & proc::kActivateSecondary)) c.proc2.allowed1 = 0;
  if (!(c.proc2.allowed1 & proc2::kEnableEpt)) {
    c.proc2.allowed1 &= ~proc2::kUnrestrictedGuest;  // SDM §27.2.1.1: it needs "enable EPT"
    c.ept_vpid_cap &= ~0xffffffffull;
  }
  if (!(c.proc2.allowed1 & proc2::kEnableVpid)) c.ept_vpid_cap &= 0xffffffffull;
  if (!(c.ept_vpid_cap & kInvept)) c.ept_vpid_cap &= ~(kInveptSingleContext | kInveptAllContext);
  if (!(c.ept_vpid_cap & kInvvpid))
    c.ept_vpid_cap &= ~(kInvvpidIndividualAddr | kInvvpidSingleContext | kInvvpidAllContext |
                        kInvvpidSingleContextRetainGlobals);
  // Without the TRUE MSRs, the default1 controls are all fixed to 1 (SDM A.2).
  if (!(c.basic & vmx_basic::kTrueControls)) {
    c.pin.allowed0 |= pin::kDefault1;
    c.proc.allowed0 |= proc::kDefault1;
    c.exit.allowed0 |= exit_ctl::kDefault1;
    c.entry.allowed0 |= entry_ctl::kDefault1;
  }
  return c;
}

bool nested_vmx_capability_msr(const VmxCapabilities& caps, uint32_t index, uint64_t& value) {
  switch (Msr(index)) {
    case Msr::kIA32_VMX_TRUE_PINBASED_CTLS:
    case Msr::kIA32_VMX_TRUE_PROCBASED_CTLS:
    case Msr::kIA32_VMX_TRUE_EXIT_CTLS:
    case Msr::kIA32_VMX_TRUE_ENTRY_CTLS:
      // SDM A.1: the TRUE MSRs exist only if IA32_VMX_BASIC[55] is 1.
      if (!(caps.basic & vmx_basic::kTrueControls)) return false;
      break;
    case Msr::kIA32_VMX_VMFUNC: return false;  // "enable VM functions" is not offered
    default: break;
  }
  return cpu::vmx_capability_msr(caps, index, value);
}

}  // namespace nestvm::hv::nested
