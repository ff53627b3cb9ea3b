// VMX architectural definitions: basic exit reasons (SDM Vol. 3 Appendix C), VM-instruction
// error numbers (Vol. 3 §31.4, Table 31-1), execution/exit/entry controls (§25.6-25.8),
// interruption-information formats (§25.8.3, §25.9.2), exit qualifications (§28.2.1),
// capability MSR formats (Appendix A), EPTP and EPT entry formats (§25.6.11, §29.3.2).
#pragma once
#include <cstdint>

namespace nestvm::arch {

// nestvm's VMCS revision identifier (IA32_VMX_BASIC[30:0]); bumped when the layout changes.
inline constexpr uint32_t kVmcsRevision = 0x4e560001;  // "NV", layout version 1

enum class ExitReason : uint16_t {
  EXCEPTION_NMI = 0,
  EXTERNAL_INTERRUPT = 1,
  TRIPLE_FAULT = 2,
  INIT_SIGNAL = 3,
  SIPI = 4,
  IO_SMI = 5,
  OTHER_SMI = 6,
  INTERRUPT_WINDOW = 7,
  NMI_WINDOW = 8,
  TASK_SWITCH = 9,
  CPUID = 10,
  GETSEC = 11,
  HLT = 12,
  INVD = 13,
  INVLPG = 14,
  RDPMC = 15,
  RDTSC = 16,
  RSM = 17,
  VMCALL = 18,
  VMCLEAR = 19,
  VMLAUNCH = 20,
  VMPTRLD = 21,
  VMPTRST = 22,
  VMREAD = 23,
  VMRESUME = 24,
  VMWRITE = 25,
  VMXOFF = 26,
  VMXON = 27,
  CR_ACCESS = 28,
  DR_ACCESS = 29,
  IO_INSTRUCTION = 30,
  MSR_READ = 31,
  MSR_WRITE = 32,
  INVALID_STATE = 33,     // VM-entry failure due to invalid guest state
  MSR_LOAD_FAIL = 34,     // VM-entry failure due to MSR loading
  MWAIT_INSTRUCTION = 36,
  MONITOR_TRAP_FLAG = 37,
  MONITOR_INSTRUCTION = 39,
  PAUSE_INSTRUCTION = 40,
  MCE_DURING_VMENTRY = 41,
  TPR_BELOW_THRESHOLD = 43,
  APIC_ACCESS = 44,
  EOI_INDUCED = 45,
  GDTR_IDTR = 46,
  LDTR_TR = 47,
  EPT_VIOLATION = 48,
  EPT_MISCONFIG = 49,
  INVEPT = 50,
  RDTSCP = 51,
  PREEMPTION_TIMER = 52,
  INVVPID = 53,
  WBINVD = 54,
  XSETBV = 55,
  APIC_WRITE = 56,
  RDRAND = 57,
  INVPCID = 58,
  VMFUNC = 59,
  ENCLS = 60,
  RDSEED = 61,
  PML_FULL = 62,
  XSAVES = 63,
  XRSTORS = 64,
};
inline constexpr unsigned kNumExitReasons = 65;
// Exit-reason bit 31: the VM entry failed (SDM §25.9.1).
inline constexpr uint32_t kExitReasonFailedEntry = 1u << 31;
const char* exit_reason_name(uint32_t basic_reason);

// VM-instruction error numbers (SDM Vol. 3 Table 31-1).
enum class VmxError : uint32_t {
  VMCALL_IN_VMX_ROOT = 1,
  VMCLEAR_INVALID_ADDRESS = 2,
  VMCLEAR_VMXON_POINTER = 3,
  VMLAUNCH_NONCLEAR_VMCS = 4,
  VMRESUME_NONLAUNCHED_VMCS = 5,
  VMRESUME_AFTER_VMXOFF = 6,
  ENTRY_INVALID_CONTROL_FIELD = 7,
  ENTRY_INVALID_HOST_STATE_FIELD = 8,
  VMPTRLD_INVALID_ADDRESS = 9,
  VMPTRLD_VMXON_POINTER = 10,
  VMPTRLD_INCORRECT_VMCS_REVISION_ID = 11,
  UNSUPPORTED_VMCS_COMPONENT = 12,
  VMWRITE_READ_ONLY_VMCS_COMPONENT = 13,
  VMXON_IN_VMX_ROOT_OPERATION = 15,
  ENTRY_INVALID_EXECUTIVE_VMCS_POINTER = 16,
  ENTRY_NONLAUNCHED_EXECUTIVE_VMCS = 17,
  ENTRY_EXECUTIVE_VMCS_POINTER_NOT_VMXON_POINTER = 18,
  VMCALL_NONCLEAR_VMCS = 19,
  VMCALL_INVALID_VM_EXIT_CONTROL_FIELDS = 20,
  VMCALL_INCORRECT_MSEG_REVISION_ID = 22,
  VMXOFF_UNDER_DUAL_MONITOR_TREATMENT_OF_SMIS_AND_SMM = 23,
  VMCALL_INVALID_SMM_MONITOR_FEATURES = 24,
  ENTRY_INVALID_VM_EXECUTION_CONTROL_FIELDS_IN_EXECUTIVE_VMCS = 25,
  ENTRY_EVENTS_BLOCKED_BY_MOV_SS = 26,
  INVALID_OPERAND_TO_INVEPT_INVVPID = 28,
};

// Pin-based VM-execution controls (SDM Table 25-5).
namespace pin {
inline constexpr uint32_t kExtIntExiting = 1u << 0;
inline constexpr uint32_t kNmiExiting = 1u << 3;
inline constexpr uint32_t kVirtualNmis = 1u << 5;
inline constexpr uint32_t kPreemptionTimer = 1u << 6;
inline constexpr uint32_t kPostedInterrupts = 1u << 7;
inline constexpr uint32_t kDefault1 = 0x16;  // bits 1, 2, 4
}  // namespace pin

// Primary processor-based VM-execution controls (SDM Table 25-6).
namespace proc {
inline constexpr uint32_t kIntrWindowExiting = 1u << 2;
inline constexpr uint32_t kUseTscOffsetting = 1u << 3;
inline constexpr uint32_t kHltExiting = 1u << 7;
inline constexpr uint32_t kInvlpgExiting = 1u << 9;
inline constexpr uint32_t kMwaitExiting = 1u << 10;
inline constexpr uint32_t kRdpmcExiting = 1u << 11;
inline constexpr uint32_t kRdtscExiting = 1u << 12;
inline constexpr uint32_t kCr3LoadExiting = 1u << 15;
inline constexpr uint32_t kCr3StoreExiting = 1u << 16;
inline constexpr uint32_t kActivateTertiary = 1u << 17;
inline constexpr uint32_t kCr8LoadExiting = 1u << 19;
inline constexpr uint32_t kCr8StoreExiting = 1u << 20;
inline constexpr uint32_t kUseTprShadow = 1u << 21;
inline constexpr uint32_t kNmiWindowExiting = 1u << 22;
inline constexpr uint32_t kMovDrExiting = 1u << 23;
inline constexpr uint32_t kUncondIoExiting = 1u << 24;
inline constexpr uint32_t kUseIoBitmaps = 1u << 25;
inline constexpr uint32_t kMonitorTrapFlag = 1u << 27;
inline constexpr uint32_t kUseMsrBitmaps = 1u << 28;
inline constexpr uint32_t kMonitorExiting = 1u << 29;
inline constexpr uint32_t kPauseExiting = 1u << 30;
inline constexpr uint32_t kActivateSecondary = 1u << 31;
inline constexpr uint32_t kDefault1 = 0x0401e172;  // bits 1, 4-6, 8, 13-16, 26
}  // namespace proc

// Secondary processor-based VM-execution controls (SDM Table 25-7).
namespace proc2 {
inline constexpr uint32_t kVirtualizeApicAccesses = 1u << 0;
inline constexpr uint32_t kEnableEpt = 1u << 1;
inline constexpr uint32_t kDescriptorTableExiting = 1u << 2;
inline constexpr uint32_t kEnableRdtscp = 1u << 3;
inline constexpr uint32_t kVirtualizeX2apic = 1u << 4;
inline constexpr uint32_t kEnableVpid = 1u << 5;
inline constexpr uint32_t kWbinvdExiting = 1u << 6;
inline constexpr uint32_t kUnrestrictedGuest = 1u << 7;
inline constexpr uint32_t kApicRegisterVirtualization = 1u << 8;
inline constexpr uint32_t kVirtualInterruptDelivery = 1u << 9;
inline constexpr uint32_t kPauseLoopExiting = 1u << 10;
inline constexpr uint32_t kRdrandExiting = 1u << 11;
inline constexpr uint32_t kEnableInvpcid = 1u << 12;
inline constexpr uint32_t kEnableVmfunc = 1u << 13;
inline constexpr uint32_t kVmcsShadowing = 1u << 14;
inline constexpr uint32_t kEnclsExiting = 1u << 15;
inline constexpr uint32_t kRdseedExiting = 1u << 16;
inline constexpr uint32_t kEnablePml = 1u << 17;
inline constexpr uint32_t kEptViolationVe = 1u << 18;
inline constexpr uint32_t kPtConcealVmx = 1u << 19;
inline constexpr uint32_t kEnableXsaves = 1u << 20;
inline constexpr uint32_t kModeBasedEptExec = 1u << 22;
inline constexpr uint32_t kTscScaling = 1u << 25;
}  // namespace proc2

// VM-exit controls (SDM Table 25-13).
namespace exit_ctl {
inline constexpr uint32_t kSaveDebugControls = 1u << 2;
inline constexpr uint32_t kHostAddrSpaceSize = 1u << 9;
inline constexpr uint32_t kLoadPerfGlobalCtrl = 1u << 12;
inline constexpr uint32_t kAckIntrOnExit = 1u << 15;
inline constexpr uint32_t kSavePat = 1u << 18;
inline constexpr uint32_t kLoadPat = 1u << 19;
inline constexpr uint32_t kSaveEfer = 1u << 20;
inline constexpr uint32_t kLoadEfer = 1u << 21;
inline constexpr uint32_t kSavePreemptionTimer = 1u << 22;
inline constexpr uint32_t kClearBndcfgs = 1u << 23;
inline constexpr uint32_t kDefault1 = 0x00036dff;  // bits 0-8, 10, 11, 13, 14, 16, 17
}  // namespace exit_ctl

// VM-entry controls (SDM Table 25-15).
namespace entry_ctl {
inline constexpr uint32_t kLoadDebugControls = 1u << 2;
inline constexpr uint32_t kIa32eModeGuest = 1u << 9;
inline constexpr uint32_t kEntryToSmm = 1u << 10;
inline constexpr uint32_t kDeactivateDualMonitor = 1u << 11;
inline constexpr uint32_t kLoadPerfGlobalCtrl = 1u << 13;
inline constexpr uint32_t kLoadPat = 1u << 14;
inline constexpr uint32_t kLoadEfer = 1u << 15;
inline constexpr uint32_t kLoadBndcfgs = 1u << 16;
inline constexpr uint32_t kDefault1 = 0x000011ff;  // bits 0-8, 12
}  // namespace entry_ctl

// Interruption-information format of VM_ENTRY_INTR_INFO_FIELD, VM_EXIT_INTR_INFO and
// IDT_VECTORING_INFO_FIELD (SDM §25.8.3, Table 25-17; §25.9.2). Types match arch::EventType.
namespace intr_info {
inline constexpr uint32_t kVectorMask = 0xff;
inline constexpr int kTypeShift = 8;
inline constexpr uint32_t kTypeMask = 7u << 8;
inline constexpr uint32_t kDeliverErrorCode = 1u << 11;
inline constexpr uint32_t kNmiUnblockingDueToIret = 1u << 12;  // exit info only
inline constexpr uint32_t kValid = 1u << 31;
constexpr uint32_t make(uint8_t vector, unsigned type, bool error_code) {
  return kValid | vector | (uint32_t(type) << kTypeShift) | (error_code ? kDeliverErrorCode : 0);
}
constexpr unsigned type(uint32_t info) { return (info >> kTypeShift) & 7; }
}  // namespace intr_info

// Guest interruptibility state (SDM Table 25-3).
namespace interruptibility {
inline constexpr uint32_t kBlockingBySti = 1u << 0;
inline constexpr uint32_t kBlockingByMovSs = 1u << 1;
inline constexpr uint32_t kBlockingBySmi = 1u << 2;
inline constexpr uint32_t kBlockingByNmi = 1u << 3;
inline constexpr uint32_t kEnclaveInterruption = 1u << 4;
inline constexpr uint32_t kReservedMask = ~0x1fu;
}  // namespace interruptibility

// Exit qualifications (SDM §28.2.1).
namespace exit_qual {
// Control-register accesses (Table 28-3).
namespace cr {
inline constexpr unsigned kAccessMovTo = 0, kAccessMovFrom = 1, kAccessClts = 2, kAccessLmsw = 3;
constexpr uint64_t make(unsigned cr, unsigned access, unsigned gpr, bool lmsw_mem = false, uint16_t lmsw_src = 0) {
  return cr | (uint64_t(access) << 4) | (uint64_t(lmsw_mem) << 6) | (uint64_t(gpr) << 8) | (uint64_t(lmsw_src) << 16);
}
}  // namespace cr
// MOV DR (Table 28-4).
namespace dr {
constexpr uint64_t make(unsigned dr, bool from_dr, unsigned gpr) { return dr | (uint64_t(from_dr) << 4) | (uint64_t(gpr) << 8); }
}  // namespace dr
// I/O instructions (Table 28-5).
namespace io {
constexpr uint64_t make(unsigned size, bool in, bool string, bool rep, bool imm_operand, uint16_t port) {
  return (size - 1) | (uint64_t(in) << 3) | (uint64_t(string) << 4) | (uint64_t(rep) << 5) |
         (uint64_t(imm_operand) << 6) | (uint64_t(port) << 16);
}
}  // namespace io
// Debug exceptions (Table 28-1): the DR6 bits the #DB would have set; DR6 is not modified.
namespace debug {
inline constexpr uint64_t kBreakpoints = 0xf;  // B3-B0
inline constexpr uint64_t kBD = 1ull << 13;
inline constexpr uint64_t kBS = 1ull << 14;
inline constexpr uint64_t kMask = kBreakpoints | kBD | kBS;
}  // namespace debug
// APIC-access VM exits (Table 28-6): page offset in bits 11:0, access type in bits 15:12.
namespace apic_access {
inline constexpr unsigned kLinearRead = 0, kLinearWrite = 1, kLinearFetch = 2, kLinearEventDelivery = 3;
inline constexpr unsigned kGuestPhysicalEventDelivery = 10, kGuestPhysicalInstruction = 15;
constexpr uint64_t make(uint64_t offset, unsigned type) { return (offset & 0xfff) | (uint64_t(type) << 12); }
}  // namespace apic_access
// EPT violations (Table 28-7).
namespace ept {
inline constexpr uint64_t kRead = 1ull << 0;
inline constexpr uint64_t kWrite = 1ull << 1;
inline constexpr uint64_t kFetch = 1ull << 2;
inline constexpr uint64_t kReadable = 1ull << 3;    // the translation allowed reads
inline constexpr uint64_t kWritable = 1ull << 4;
inline constexpr uint64_t kExecutable = 1ull << 5;
inline constexpr uint64_t kUserExecutable = 1ull << 6;  // mode-based execute control
inline constexpr uint64_t kGlaValid = 1ull << 7;        // guest-linear-address field valid
inline constexpr uint64_t kGlaTranslation = 1ull << 8;  // access to the final translation (not a paging structure)
inline constexpr uint64_t kNmiUnblockingDueToIret = 1ull << 12;
}  // namespace ept
}  // namespace exit_qual

// EPTP (SDM §25.6.11, Table 25-9).
namespace eptp {
inline constexpr uint64_t kMemTypeMask = 7;
inline constexpr uint64_t kMemTypeUc = 0, kMemTypeWb = 6;
inline constexpr int kWalkLengthShift = 3;  // bits 5:3: page-walk length minus 1
inline constexpr uint64_t kAdEnable = 1ull << 6;
inline constexpr uint64_t kSupervisorShadowStack = 1ull << 7;
inline constexpr uint64_t kReservedLow = 0xf00;  // bits 11:8
}  // namespace eptp

// EPT paging-structure entries (SDM §29.3.2, Tables 29-1 to 29-6).
namespace ept {
inline constexpr uint64_t kRead = 1ull << 0;
inline constexpr uint64_t kWrite = 1ull << 1;
inline constexpr uint64_t kExec = 1ull << 2;
inline constexpr uint64_t kRwxMask = 7;
inline constexpr int kMemTypeShift = 3;  // leaf bits 5:3
inline constexpr uint64_t kMemTypeMask = 7ull << 3;
inline constexpr uint64_t kIgnorePat = 1ull << 6;
inline constexpr uint64_t kLargePage = 1ull << 7;
inline constexpr uint64_t kAccessed = 1ull << 8;
inline constexpr uint64_t kDirty = 1ull << 9;
inline constexpr uint64_t kUserExec = 1ull << 10;
inline constexpr uint64_t kSuppressVe = 1ull << 63;
}  // namespace ept

// IA32_VMX_BASIC (SDM Appendix A.1).
namespace vmx_basic {
inline constexpr int kRegionSizeShift = 32;     // bits 44:32
inline constexpr uint64_t k32BitAddresses = 1ull << 48;
inline constexpr uint64_t kDualMonitor = 1ull << 49;
inline constexpr int kMemTypeShift = 50;        // bits 53:50 (6 = write-back)
inline constexpr uint64_t kInsOutsInfo = 1ull << 54;
inline constexpr uint64_t kTrueControls = 1ull << 55;
inline constexpr uint64_t kNoErrorCodeCheck = 1ull << 56;  // deliver hardware exceptions without error code checks
}  // namespace vmx_basic

// IA32_VMX_MISC (SDM Appendix A.6).
namespace vmx_misc {
inline constexpr uint64_t kPreemptionTimerRateMask = 0x1f;  // the timer counts at TSC >> bits 4:0
}  // namespace vmx_misc

// IA32_VMX_EPT_VPID_CAP (SDM Appendix A.10).
namespace ept_vpid_cap {
inline constexpr uint64_t kExecuteOnly = 1ull << 0;
inline constexpr uint64_t kPageWalk4 = 1ull << 6;
inline constexpr uint64_t kPageWalk5 = 1ull << 7;
inline constexpr uint64_t kMemTypeUc = 1ull << 8;
inline constexpr uint64_t kMemTypeWb = 1ull << 14;
inline constexpr uint64_t kPde2M = 1ull << 16;
inline constexpr uint64_t kPdpte1G = 1ull << 17;
inline constexpr uint64_t kInvept = 1ull << 20;
inline constexpr uint64_t kAccessedDirty = 1ull << 21;
inline constexpr uint64_t kAdvancedExitInfo = 1ull << 22;
inline constexpr uint64_t kInveptSingleContext = 1ull << 25;
inline constexpr uint64_t kInveptAllContext = 1ull << 26;
inline constexpr uint64_t kInvvpid = 1ull << 32;
inline constexpr uint64_t kInvvpidIndividualAddr = 1ull << 40;
inline constexpr uint64_t kInvvpidSingleContext = 1ull << 41;
inline constexpr uint64_t kInvvpidAllContext = 1ull << 42;
inline constexpr uint64_t kInvvpidSingleContextRetainGlobals = 1ull << 43;
}  // namespace ept_vpid_cap

// INVEPT / INVVPID types (SDM Vol. 2).
enum class InveptType : uint64_t { kSingleContext = 1, kAllContext = 2 };
enum class InvvpidType : uint64_t {
  kIndividualAddress = 0,
  kSingleContext = 1,
  kAllContext = 2,
  kSingleContextRetainingGlobals = 3,
};

// The allowed settings of one control field: bit set in allowed0 must be 1, bit clear in
// allowed1 must be 0 (SDM Appendix A.3-A.5: low and high dwords of the capability MSR).
struct ControlCaps {
  uint32_t allowed0 = 0;
  uint32_t allowed1 = 0;
  constexpr bool permits(uint32_t v) const { return (v & allowed0) == allowed0 && (v & ~allowed1) == 0; }
  constexpr uint64_t msr() const { return uint64_t(allowed0) | (uint64_t(allowed1) << 32); }
  static constexpr ControlCaps from_msr(uint64_t m) { return {uint32_t(m), uint32_t(m >> 32)}; }
};

// Everything VM entry checks against that depends on the processor: the VMX capability MSRs
// in decoded form. The silicon has one; nested VMX offers L1 another (narrowed by -cpu).
struct VmxCapabilities {
  uint64_t basic = 0;
  ControlCaps pin, proc, proc2, exit, entry;  // "true" controls (IA32_VMX_TRUE_*)
  uint64_t misc = 0;
  uint64_t cr0_fixed0 = 0, cr0_fixed1 = 0, cr4_fixed0 = 0, cr4_fixed1 = 0;
  uint64_t ept_vpid_cap = 0;
  uint64_t vmcs_enum = 0;
  int maxphyaddr = 40;
};

}  // namespace nestvm::arch
