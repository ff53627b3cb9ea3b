#include "cpu/vmx/capabilities.h"

#include "arch/cr.h"
#include "arch/msr_index.h"
#include "arch/vmcs.h"

namespace nestvm::cpu {

using namespace arch;

arch::VmxCapabilities silicon_vmx_capabilities(const CpuModel& model, uint64_t cr4_valid_bits) {
  VmxCapabilities c;
  c.maxphyaddr = model.maxphyaddr();
  // Revision, 4 KiB region, write-back VMCS memory, INS/OUTS instruction information, TRUE
  // control MSRs (SDM A.1).
  c.basic = kVmcsRevision | (uint64_t(4096) << vmx_basic::kRegionSizeShift) | (6ull << vmx_basic::kMemTypeShift) |
            vmx_basic::kInsOutsInfo | vmx_basic::kTrueControls;
  c.pin = {pin::kDefault1, pin::kDefault1 | pin::kExtIntExiting | pin::kNmiExiting | pin::kVirtualNmis |
                               pin::kPreemptionTimer};
  // The TRUE controls let CR3-load/store exiting (bits 15, 16) be 0 (SDM A.3.2).
  const uint32_t proc0 = proc::kDefault1 & ~(proc::kCr3LoadExiting | proc::kCr3StoreExiting);
  c.proc = {proc0, proc0 | proc::kIntrWindowExiting | proc::kUseTscOffsetting | proc::kHltExiting |
                       proc::kInvlpgExiting | proc::kMwaitExiting | proc::kRdpmcExiting | proc::kRdtscExiting |
                       proc::kCr3LoadExiting | proc::kCr3StoreExiting | proc::kCr8LoadExiting |
                       proc::kCr8StoreExiting | proc::kUseTprShadow | proc::kNmiWindowExiting |
                       proc::kMovDrExiting | proc::kUncondIoExiting | proc::kUseIoBitmaps |
                       proc::kMonitorTrapFlag | proc::kUseMsrBitmaps | proc::kMonitorExiting |
                       proc::kPauseExiting | proc::kActivateSecondary};
  c.proc2 = {0, proc2::kVirtualizeApicAccesses | proc2::kEnableEpt | proc2::kDescriptorTableExiting |
                    proc2::kEnableRdtscp | proc2::kVirtualizeX2apic | proc2::kEnableVpid | proc2::kWbinvdExiting |
                    proc2::kUnrestrictedGuest | proc2::kPauseLoopExiting | proc2::kRdrandExiting |
                    proc2::kEnableInvpcid | proc2::kVmcsShadowing | proc2::kRdseedExiting |
                    proc2::kEnableXsaves};
  // TRUE exit/entry controls let "save/load debug controls" (bit 2) be 0 (SDM A.4.2, A.5.2).
  const uint32_t exit0 = exit_ctl::kDefault1 & ~exit_ctl::kSaveDebugControls;
  c.exit = {exit0, exit0 | exit_ctl::kSaveDebugControls | exit_ctl::kHostAddrSpaceSize |
                       exit_ctl::kLoadPerfGlobalCtrl | exit_ctl::kAckIntrOnExit | exit_ctl::kSavePat |
                       exit_ctl::kLoadPat | exit_ctl::kSaveEfer | exit_ctl::kLoadEfer |
                       exit_ctl::kSavePreemptionTimer};
  const uint32_t entry0 = entry_ctl::kDefault1 & ~entry_ctl::kLoadDebugControls;
  c.entry = {entry0, entry0 | entry_ctl::kLoadDebugControls | entry_ctl::kIa32eModeGuest |
                         entry_ctl::kLoadPerfGlobalCtrl | entry_ctl::kLoadPat | entry_ctl::kLoadEfer};
  // IA32_VMX_MISC (A.6): preemption timer at TSC >> 5, LMA stored into "IA-32e mode guest" on
  // exit, activity states HLT/shutdown/wait-for-SIPI, 4 CR3-target values, MSR lists of up to
  // 512 entries, VMWRITE to any field (bit 29).
  c.misc = 5 | (1ull << 5) | (7ull << 6) | (4ull << 16) | (1ull << 29);
  c.cr0_fixed0 = cr0::kPE | cr0::kNE | cr0::kPG;
  c.cr0_fixed1 = 0xffffffff;
  c.cr4_fixed0 = cr4::kVMXE;
  c.cr4_fixed1 = cr4_valid_bits | cr4::kVMXE;
  using namespace ept_vpid_cap;
  c.ept_vpid_cap = kExecuteOnly | kPageWalk4 | kMemTypeUc | kMemTypeWb | kPde2M | kPdpte1G | kInvept |
                   kAccessedDirty | kInveptSingleContext | kInveptAllContext | kInvvpid | kInvvpidIndividualAddr |
                   kInvvpidSingleContext | kInvvpidAllContext | kInvvpidSingleContextRetainGlobals;
  if (!model.has(Feature::kPdpe1gb)) c.ept_vpid_cap &= ~kPdpte1G;
  c.vmcs_enum = uint64_t(vmcs_highest_index()) << 1;
  return c;
}

bool vmx_capability_msr(const arch::VmxCapabilities& c, uint32_t index, uint64_t& v) {
  // The non-TRUE control MSRs report the default1 bits as always 1 (SDM A.3.1, A.4.1, A.5.1).
  switch (Msr(index)) {
    case Msr::kIA32_VMX_BASIC: v = c.basic; return true;
    case Msr::kIA32_VMX_PINBASED_CTLS: v = ControlCaps{c.pin.allowed0 | pin::kDefault1, c.pin.allowed1}.msr(); return true;
    case Msr::kIA32_VMX_PROCBASED_CTLS: v = ControlCaps{c.proc.allowed0 | proc::kDefault1, c.proc.allowed1}.msr(); return true;
    case Msr::kIA32_VMX_EXIT_CTLS: v = ControlCaps{c.exit.allowed0 | exit_ctl::kDefault1, c.exit.allowed1}.msr(); return true;
    case Msr::kIA32_VMX_ENTRY_CTLS: v = ControlCaps{c.entry.allowed0 | entry_ctl::kDefault1, c.entry.allowed1}.msr(); return true;
    case Msr::kIA32_VMX_MISC: v = c.misc; return true;
    case Msr::kIA32_VMX_CR0_FIXED0: v = c.cr0_fixed0; return true;
    case Msr::kIA32_VMX_CR0_FIXED1: v = c.cr0_fixed1; return true;
    case Msr::kIA32_VMX_CR4_FIXED0: v = c.cr4_fixed0; return true;
    case Msr::kIA32_VMX_CR4_FIXED1: v = c.cr4_fixed1; return true;
    case Msr::kIA32_VMX_VMCS_ENUM: v = c.vmcs_enum; return true;
    case Msr::kIA32_VMX_PROCBASED_CTLS2:
      if (!(c.proc.allowed1 & proc::kActivateSecondary)) return false;
      v = c.proc2.msr();
      return true;
    case Msr::kIA32_VMX_EPT_VPID_CAP:
      if (!(c.proc2.allowed1 & (proc2::kEnableEpt | proc2::kEnableVpid))) return false;
      v = c.ept_vpid_cap;
      return true;
    case Msr::kIA32_VMX_TRUE_PINBASED_CTLS: v = c.pin.msr(); return true;
    case Msr::kIA32_VMX_TRUE_PROCBASED_CTLS: v = c.proc.msr(); return true;
    case Msr::kIA32_VMX_TRUE_EXIT_CTLS: v = c.exit.msr(); return true;
    case Msr::kIA32_VMX_TRUE_ENTRY_CTLS: v = c.entry.msr(); return true;
    default: return false;
  }
}

}  // namespace nestvm::cpu
