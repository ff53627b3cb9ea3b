// Exits from L2 (KVM's nested_vmx_reflect_vmexit, nested_vmx_l0_wants_exit,
// nested_vmx_l1_wants_exit and nested_vmx_vmexit): L0 keeps the exits it needs for itself
// (external interrupts, NMIs, EPT02 faults it can fix), reflects those L1 asked for with its
// vmcs12 controls, and handles the rest for L2 itself (an I/O port or MSR L1 does not
// intercept goes straight to L0's device, at no cost to L1). Reflecting syncs vmcs02 into
// vmcs12, loads L1's host state into vmcs01 and resumes L1.
#include "arch/cr.h"
#include "arch/msr_index.h"
#include "cpu/msr_file.h"
#include "hv/clock.h"
#include "hv/emulator.h"
#include "hv/exit_handlers.h"
#include "hv/irqchip.h"
#include "hv/nested/nested_vmx.h"
#include "hv/vcpu.h"
#include "hv/vm.h"

namespace nestvm::hv::nested {

using namespace arch;
using F = VmcsField;

namespace {
bool bit_in_l1_bitmap(GuestMemory& mem, uint64_t gpa, unsigned bit) {
  uint8_t b = 0xff;  // a bitmap outside RAM reads as all ones
  (void)mem.read(gpa + bit / 8, &b, 1);
  return b & (1u << (bit % 8));
}
}  // namespace

// I/O (SDM §26.1.3): unconditional I/O exiting, or the I/O bitmaps for every port the access
// touches (KVM's nested_vmx_exit_handled_io).
bool NestedVmx::l1_wants_io() {
  const uint32_t proc12 = uint32_t(cached_vmcs12.read(F::CPU_BASED_VM_EXEC_CONTROL));
  if (!(proc12 & proc::kUseIoBitmaps)) return proc12 & proc::kUncondIoExiting;
  const uint64_t q = vcpu_.vmread(F::EXIT_QUALIFICATION);
  const unsigned port = unsigned(q >> 16), size = unsigned(q & 7) + 1;
  GuestMemory& mem = vcpu_.vm().mem();
  for (unsigned p = port; p < port + size; ++p) {
    if (p > 0xffff) return true;  // wrapping around the port space exits
    const uint64_t bm = cached_vmcs12.read(p < 0x8000 ? F::IO_BITMAP_A : F::IO_BITMAP_B);
    if (bit_in_l1_bitmap(mem, bm, p & 0x7fff)) return true;
  }
  return false;
}

// RDMSR/WRMSR (SDM §25.6.9): without MSR bitmaps every access exits; outside the two ranges
// the bitmaps cover, too.
bool NestedVmx::l1_wants_msr(bool write) {
  const uint32_t proc12 = uint32_t(cached_vmcs12.read(F::CPU_BASED_VM_EXEC_CONTROL));
  if (!(proc12 & proc::kUseMsrBitmaps)) return true;
  const uint32_t msr = uint32_t(vcpu_.reg(cpu::kRcx));
  unsigned base;
  if (msr <= 0x1fff) base = 0;
  else if (msr >= 0xc0000000 && msr <= 0xc0001fff) base = 1024;
  else return true;
  const uint64_t bm = cached_vmcs12.read(F::MSR_BITMAP) + base + (write ? 2048 : 0);
  return bit_in_l1_bitmap(vcpu_.vm().mem(), bm, msr & 0x1fff);
}

// Control-register accesses (SDM §26.1.3; KVM's nested_vmx_exit_handled_cr).
bool NestedVmx::l1_wants_cr() {
  const Vmcs12& c = cached_vmcs12;
  const uint32_t proc12 = uint32_t(c.read(F::CPU_BASED_VM_EXEC_CONTROL));
  const uint64_t q = vcpu_.vmread(F::EXIT_QUALIFICATION);
  const unsigned cr = q & 15, type = (q >> 4) & 3;
  const uint64_t val = vcpu_.reg(cpu::Gpr((q >> 8) & 15));
  switch (type) {
    case exit_qual::cr::kAccessMovTo:
      if (cr == 0) return c.read(F::CR0_GUEST_HOST_MASK) & (val ^ c.read(F::CR0_READ_SHADOW));
      if (cr == 4) return c.read(F::CR4_GUEST_HOST_MASK) & (val ^ c.read(F::CR4_READ_SHADOW));
      if (cr == 8) return proc12 & proc::kCr8LoadExiting;
      if (cr == 3) {
        if (!(proc12 & proc::kCr3LoadExiting)) return false;
        const uint32_t n = uint32_t(c.read(F::CR3_TARGET_COUNT));
        const F t[4] = {F::CR3_TARGET_VALUE0, F::CR3_TARGET_VALUE1, F::CR3_TARGET_VALUE2, F::CR3_TARGET_VALUE3};
        for (uint32_t k = 0; k < n && k < 4; ++k)
          if (c.read(t[k]) == val) return false;
        return true;
      }
      return false;
    case exit_qual::cr::kAccessMovFrom:
      if (cr == 3) return proc12 & proc::kCr3StoreExiting;
      if (cr == 8) return proc12 & proc::kCr8StoreExiting;
      return false;
    case exit_qual::cr::kAccessClts: {
      const uint64_t ts = cr0::kTS;
      return (c.read(F::CR0_GUEST_HOST_MASK) & ts) && (c.read(F::CR0_READ_SHADOW) & ts);
    }
    default: {  // LMSW: bits 3:0 of the source, PE only set (SDM Vol. 2 LMSW)
      const uint64_t src = (q >> 16) & 0xffff, m = c.read(F::CR0_GUEST_HOST_MASK), s = c.read(F::CR0_READ_SHADOW);
      if (m & 0xe & (src ^ s)) return true;
      return (m & 1) && !(s & 1) && (src & 1);
    }
  }
}

// Exits L0 keeps whatever L1 asked (KVM's nested_vmx_l0_wants_exit): its kicks and its own
// interrupts, real NMIs, machine checks.
bool NestedVmx::l0_wants_exit(unsigned reason) {
  switch (ExitReason(reason)) {
    case ExitReason::EXTERNAL_INTERRUPT:
    case ExitReason::MCE_DURING_VMENTRY:
      return true;
    case ExitReason::EXCEPTION_NMI: {
      const uint32_t info = uint32_t(vcpu_.vmread(F::VM_EXIT_INTR_INFO));
      return ((info >> 8) & 7) == unsigned(EventType::kNmi);
    }
    default: return false;
  }
}

// Exits L1 asked for with vmcs12's controls (KVM's nested_vmx_l1_wants_exit).
bool NestedVmx::l1_wants_exit(unsigned reason) {
  const Vmcs12& c = cached_vmcs12;
  const uint32_t pin12 = uint32_t(c.read(F::PIN_BASED_VM_EXEC_CONTROL));
  const uint32_t proc12 = uint32_t(c.read(F::CPU_BASED_VM_EXEC_CONTROL));
  const uint32_t proc2_12 = (proc12 & proc::kActivateSecondary) ? uint32_t(c.read(F::SECONDARY_VM_EXEC_CONTROL)) : 0;
  switch (ExitReason(reason)) {
    case ExitReason::EXCEPTION_NMI: {
      const uint32_t info = uint32_t(vcpu_.vmread(F::VM_EXIT_INTR_INFO));
      const unsigned vector = info & 0xff;
      if (((info >> 8) & 7) == unsigned(EventType::kNmi)) return pin12 & pin::kNmiExiting;
      const bool in_bitmap = c.read(F::EXCEPTION_BITMAP) & (1u << vector);
      if (vector != unsigned(Vector::kPF)) return in_bitmap;
      // SDM §25.6.3: #PF exits when bit 14 is set and the error code matches, or clear and not.
      const uint32_t ec = uint32_t(vcpu_.vmread(F::VM_EXIT_INTR_ERROR_CODE));
      const bool match = (ec & uint32_t(c.read(F::PAGE_FAULT_ERROR_CODE_MASK))) == uint32_t(c.read(F::PAGE_FAULT_ERROR_CODE_MATCH));
      return in_bitmap == match;
    }
    case ExitReason::EXTERNAL_INTERRUPT: return pin12 & pin::kExtIntExiting;
    case ExitReason::INTERRUPT_WINDOW: return proc12 & proc::kIntrWindowExiting;
    case ExitReason::NMI_WINDOW: return proc12 & proc::kNmiWindowExiting;
    case ExitReason::HLT: return proc12 & proc::kHltExiting;
    case ExitReason::INVLPG: return proc12 & proc::kInvlpgExiting;
    case ExitReason::RDPMC: return proc12 & proc::kRdpmcExiting;
    case ExitReason::RDTSC: case ExitReason::RDTSCP: return proc12 & proc::kRdtscExiting;
    case ExitReason::CR_ACCESS: return l1_wants_cr();
    case ExitReason::DR_ACCESS: return proc12 & proc::kMovDrExiting;
    case ExitReason::IO_INSTRUCTION: return l1_wants_io();
    case ExitReason::MSR_READ: return l1_wants_msr(false);
    case ExitReason::MSR_WRITE: return l1_wants_msr(true);
    case ExitReason::MWAIT_INSTRUCTION: return proc12 & proc::kMwaitExiting;
    case ExitReason::MONITOR_INSTRUCTION: return proc12 & proc::kMonitorExiting;
    case ExitReason::MONITOR_TRAP_FLAG: return proc12 & proc::kMonitorTrapFlag;
    case ExitReason::PAUSE_INSTRUCTION:
      return (proc12 & proc::kPauseExiting) || (proc2_12 & proc2::kPauseLoopExiting);
    case ExitReason::TPR_BELOW_THRESHOLD: return proc12 & proc::kUseTprShadow;
    case ExitReason::GDTR_IDTR: case ExitReason::LDTR_TR: return proc2_12 & proc2::kDescriptorTableExiting;
    case ExitReason::WBINVD: return proc2_12 & proc2::kWbinvdExiting;
    case ExitReason::RDRAND: return proc2_12 & proc2::kRdrandExiting;
    case ExitReason::RDSEED: return proc2_12 & proc2::kRdseedExiting;
    case ExitReason::INVPCID: return (proc12 & proc::kInvlpgExiting) && (proc2_12 & proc2::kEnableInvpcid);
    case ExitReason::PREEMPTION_TIMER: {
      // The silicon counts in units of 2^rate TSC cycles: a deadline within one unit is due.
      const uint64_t unit = 1ull << (vcpu_.core().vmx_caps().misc & vmx_misc::kPreemptionTimerRateMask);
      return (pin12 & pin::kPreemptionTimer) && host_tsc() + unit > l1_timer_deadline;
    }
    // EPT faults of EPT02 are L0's to resolve (handle_ept02); without EPT12, L2's memory is L1's
    // and L0 maps it as L1's.
    case ExitReason::EPT_VIOLATION: case ExitReason::EPT_MISCONFIG: return false;
    // Everything else is unconditional in VMX non-root operation (CPUID, GETSEC, INVD, XSETBV,
    // VMX instructions, task switches, triple faults, entry failures, APIC accesses ...).
    default: return true;
  }
}

void NestedVmx::leave_guest_mode() {
  guest_mode = false;
  nested_run_pending = false;
  (void)vcpu_.core().vmptrld(vcpu_.vmcs01_hpa());
}

// The VM-exit MSR-store list (guest values, §28.4) and MSR-load list (host values, §28.6) of
// vmcs12. A failure is a VMX abort (§28.7): L1 is shut down.
bool NestedVmx::process_exit_msr_store() {
  GuestMemory& mem = vcpu_.vm().mem();
  const uint64_t area = cached_vmcs12.read(F::VM_EXIT_MSR_STORE_ADDR);
  const uint32_t count = uint32_t(cached_vmcs12.read(F::VM_EXIT_MSR_STORE_COUNT));
  for (uint32_t k = 0; k < count; ++k) {
    uint32_t e[2] = {~0u, ~0u};
    uint64_t value = 0;
    (void)mem.read(area + 16ull * k, e, 8);
    const bool ok = !e[1] && e[0] != 0x9e && (e[0] >> 8) != 0x8 &&
                    cpu::read_msr(vcpu_.core(), e[0], value) == cpu::MsrResult::kOk &&
                    mem.write(area + 16ull * k + 8, &value, 8);
    if (!ok) return vmx_abort(1);
  }
  return true;
}

bool NestedVmx::process_exit_msr_load() {
  const uint64_t area = cached_vmcs12.read(F::VM_EXIT_MSR_LOAD_ADDR);
  const uint32_t count = uint32_t(cached_vmcs12.read(F::VM_EXIT_MSR_LOAD_COUNT));
  const VmEntryEnv env = vmcs12_entry_env(true);
  for (uint32_t k = 0; k < count; ++k) {
    const MsrListEntry e = read_msr_list_entry(env, area, k);
    bool ok = check_msr_load_entry(env, e, k + 1).ok();
    if (ok && e.index == 0xc0000080) {
      // EFER: through L1's control registers, as WRMSR would (vmcs01 keeps the view).
      Vcpu::ControlRegs c{vcpu_.guest_cr0(), vcpu_.guest_cr3(), vcpu_.guest_cr4(), e.value, vcpu_.guest_pdptes()};
      ok = !(e.value & ~env.efer_valid_bits);
      if (ok) vcpu_.set_control_regs(c);
    } else if (ok) {
      ok = cpu::write_msr(vcpu_.core(), e.index, e.value) == cpu::MsrResult::kOk;
    }
    if (!ok) return vmx_abort(4);
  }
  return true;
}

bool NestedVmx::vmx_abort(uint32_t indicator) {
  cached_vmcs12.abort = indicator;
  vcpu_.vm().request_stop(StopReason::kShutdown, 1,
                          "vCPU " + std::to_string(vcpu_.index()) + ": VMX abort " + std::to_string(indicator) + " in L1");
  return false;
}

// Reflects the exit vmcs02 holds to L1 with this reason and qualification (KVM's
// nested_vmx_vmexit). Returns false when the vCPU must stop (VMX abort).
bool NestedVmx::nested_vmx_vmexit(uint32_t reason, uint64_t qualification) {
  Vcpu& v = vcpu_;
  if (reason < kNumExitReasons) ++v.stats().l2_exits_reflected[reason];
  sync_vmcs02_to_vmcs12(reason, qualification);
  // An event L0 was about to re-inject into L2 is L1's now, in the IDT-vectoring information.
  v.vmwrite(F::VM_ENTRY_INTR_INFO_FIELD, 0);
  const bool stored = process_exit_msr_store();
  // Back on vmcs01: L1's host state, its exit MSR-load list.
  const uint32_t proc12 = uint32_t(cached_vmcs12.read(F::CPU_BASED_VM_EXEC_CONTROL));
  const bool vpid12 = (proc12 & proc::kActivateSecondary) &&
                      (cached_vmcs12.read(F::SECONDARY_VM_EXEC_CONTROL) & proc2::kEnableVpid);
  leave_guest_mode();
  if (!vpid12) (void)v.core().invvpid(uint64_t(InvvpidType::kSingleContext), vpid02, 0);
  load_vmcs12_host_state();
  if (!stored) return false;
  return process_exit_msr_load();
}

// An exit vmcs02 did not produce (an interrupt or NMI for L1 that L1 wants as an exit): the
// exit information is written into vmcs02 first, with an event that was still to be injected
// into L2 reported as IDT-vectoring information (KVM's vmcs12_save_pending_event).
bool NestedVmx::synthesize_vmexit(uint32_t reason, uint32_t intr_info, uint64_t qualification) {
  Vcpu& v = vcpu_;
  const uint32_t pending = uint32_t(v.vmread(F::VM_ENTRY_INTR_INFO_FIELD));
  v.vmwrite(F::VM_EXIT_INTR_INFO, intr_info);
  v.vmwrite(F::VM_EXIT_INTR_ERROR_CODE, 0);
  v.vmwrite(F::VM_EXIT_INSTRUCTION_LEN, (pending & intr_info::kValid) ? v.vmread(F::VM_ENTRY_INSTRUCTION_LEN) : 0);
  v.vmwrite(F::IDT_VECTORING_INFO_FIELD, pending & intr_info::kValid ? pending : 0);
  v.vmwrite(F::IDT_VECTORING_ERROR_CODE, v.vmread(F::VM_ENTRY_EXCEPTION_ERROR_CODE));
  v.vmwrite(F::VMX_INSTRUCTION_INFO, 0);
  v.vmwrite(F::GUEST_LINEAR_ADDRESS, 0);
  v.vmwrite(F::GUEST_PHYSICAL_ADDRESS, 0);
  return nested_vmx_vmexit(reason, qualification);
}

// Before each entry to L2 (KVM's vmx_check_nested_events): an NMI or external interrupt for
// L1 that L1 takes as a VM exit from L2 ends L2's turn now. Not before L2 has run once after
// VMLAUNCH/VMRESUME (nested_run_pending), as hardware completes the entry first.
bool NestedVmx::check_nested_events() {
  IrqChip* chip = vcpu_.vm().irqchip();
  if (!chip || nested_run_pending) return true;
  const uint32_t pin12 = uint32_t(cached_vmcs12.read(F::PIN_BASED_VM_EXEC_CONTROL));
  const unsigned i = vcpu_.index();
  if ((pin12 & pin::kNmiExiting) && chip->has_nmi(i) && chip->take_nmi(i))
    return synthesize_vmexit(uint32_t(ExitReason::EXCEPTION_NMI),
                             intr_info::make(2, unsigned(EventType::kNmi), false), 0);
  if ((pin12 & pin::kExtIntExiting) && chip->has_interrupt(i)) {
    // "Acknowledge interrupt on exit" hands L1 the vector (SDM §28.2.2); without it the
    // interrupt stays pending in L1's APIC.
    uint32_t info = 0;
    if (cached_vmcs12.read(F::VM_EXIT_CONTROLS) & exit_ctl::kAckIntrOnExit) {
      const int vector = chip->acknowledge_interrupt(i);
      if (vector >= 0) info = intr_info::make(uint8_t(vector), unsigned(EventType::kExternalInterrupt), false);
    }
    return synthesize_vmexit(uint32_t(ExitReason::EXTERNAL_INTERRUPT), info, 0);
  }
  return true;
}

// After L0 queued its own events into vmcs02: L1's interrupt and NMI windows, and L1's
// preemption timer folded into the one the silicon has (the earlier deadline wins; the exit
// goes to whichever level's deadline passed).
void NestedVmx::finish_l2_entry() {
  Vcpu& v = vcpu_;
  const uint32_t proc12 = uint32_t(cached_vmcs12.read(F::CPU_BASED_VM_EXEC_CONTROL));
  const uint64_t windows = proc12 & (proc::kIntrWindowExiting | proc::kNmiWindowExiting);
  if (windows) v.vmwrite(F::CPU_BASED_VM_EXEC_CONTROL, v.vmread(F::CPU_BASED_VM_EXEC_CONTROL) | windows);
  if (l1_timer_deadline == ~0ull) return;
  const uint64_t now = host_tsc();
  const unsigned rate = unsigned(v.core().vmx_caps().misc & vmx_misc::kPreemptionTimerRateMask);
  uint64_t ticks = l1_timer_deadline > now ? (l1_timer_deadline - now) >> rate : 0;
  if (ticks > 0xffffffffu) ticks = 0xffffffffu;
  const uint64_t pin = v.vmread(F::PIN_BASED_VM_EXEC_CONTROL);
  if (pin & pin::kPreemptionTimer) ticks = std::min(ticks, v.vmread(F::VMX_PREEMPTION_TIMER_VALUE));
  v.vmwrite(F::PIN_BASED_VM_EXEC_CONTROL, pin | pin::kPreemptionTimer);
  v.vmwrite(F::VMX_PREEMPTION_TIMER_VALUE, ticks);
}

// An EPT violation or misconfiguration from L2 running on EPT02.
bool NestedVmx::handle_ept02(unsigned reason) {
  Vcpu& v = vcpu_;
  if (reason == unsigned(ExitReason::EPT_MISCONFIG)) {
    // EPT02 is L0's own and never malformed.
    v.vm().request_stop(StopReason::kError, 1, "EPT misconfiguration in EPT02");
    return false;
  }
  const NestedEpt::Fault f = ept02->handle_violation(cached_vmcs12.read(F::EPT_POINTER),
                                                     v.vmread(F::GUEST_PHYSICAL_ADDRESS), v.vmread(F::EXIT_QUALIFICATION));
  using K = NestedEpt::Fault::Kind;
  switch (f.kind) {
    case K::kFixed:
      ++v.stats().l2_exits_l0[reason];
      return true;
    case K::kViolation: return nested_vmx_vmexit(uint32_t(ExitReason::EPT_VIOLATION), f.qualification);
    case K::kMisconfig:
      // §28.2.1: no qualification or linear address for a misconfiguration.
      v.vmwrite(F::GUEST_LINEAR_ADDRESS, 0);
      return nested_vmx_vmexit(uint32_t(ExitReason::EPT_MISCONFIG), 0);
    case K::kMmio: {
      // L2 reaches one of L0's devices: L0's emulator runs L2's instruction in L2's terms (its
      // control registers from vmcs02, its physical addresses through EPT12).
      ++v.stats().l2_exits_l0[reason];
      const uint32_t before = uint32_t(v.vmread(F::VM_ENTRY_INTR_INFO_FIELD));
      switch (v.emulator().emulate_one()) {
        case Emulator::Result::kHalted: v.halt(); return true;
        case Emulator::Result::kFaultInjected: return l0_exception_to_l1(before);
        case Emulator::Result::kShutdown: return false;
        default: return true;
      }
    }
    case K::kOutOfMemory:
      v.vm().request_stop(StopReason::kError, 1, "host memory exhausted (EPT02)");
      return false;
  }
  return false;
}

bool NestedVmx::reflect_ept12_fault(uint64_t l2_gpa, uint64_t access) {
  Vcpu& v = vcpu_;
  const NestedEpt::Fault f = ept02->handle_violation(cached_vmcs12.read(F::EPT_POINTER), l2_gpa, access);
  // The linear address is not known here: bit 7 of the qualification stays clear (§28.2.1
  // leaves GUEST_LINEAR_ADDRESS undefined then).
  v.vmwrite(F::GUEST_PHYSICAL_ADDRESS, l2_gpa);
  v.vmwrite(F::GUEST_LINEAR_ADDRESS, 0);
  using K = NestedEpt::Fault::Kind;
  if (f.kind == K::kMisconfig) return nested_vmx_vmexit(uint32_t(ExitReason::EPT_MISCONFIG), 0);
  if (f.kind == K::kViolation) return nested_vmx_vmexit(uint32_t(ExitReason::EPT_VIOLATION), f.qualification);
  return true;  // EPT12 allows it by now (L1 changed it on another vCPU): L2 retries
}

bool NestedVmx::handle_l2_exit(uint32_t reason) {
  Vcpu& v = vcpu_;
  nested_run_pending = false;
  const unsigned basic = reason & 0xffff;
  if (reason & kExitReasonFailedEntry) {
    // vmcs02 refused although vmcs12 passed the same checks: L1 sees the entry failure.
    ++v.stats().l2_exits_reflected[basic < kNumExitReasons ? basic : 0];
    VmEntryCheck c;
    c.exit_reason = reason;
    c.qualification = v.vmread(F::EXIT_QUALIFICATION);
    return nested_entry_failure(c);
  }
  if (basic >= kNumExitReasons) return handle_exit(v, basic);
  const uint32_t proc12 = uint32_t(cached_vmcs12.read(F::CPU_BASED_VM_EXEC_CONTROL));
  const bool ept12 = (proc12 & proc::kActivateSecondary) &&
                     (cached_vmcs12.read(F::SECONDARY_VM_EXEC_CONTROL) & proc2::kEnableEpt);
  if (ept12 && (basic == unsigned(ExitReason::EPT_VIOLATION) || basic == unsigned(ExitReason::EPT_MISCONFIG)))
    return handle_ept02(basic);
  if (!l0_wants_exit(basic) && l1_wants_exit(basic)) return nested_vmx_vmexit(reason, v.vmread(F::EXIT_QUALIFICATION));
  ++v.stats().l2_exits_l0[basic];
  const uint32_t before = uint32_t(v.vmread(F::VM_ENTRY_INTR_INFO_FIELD));
  if (!handle_exit(v, basic)) return false;
  return l0_exception_to_l1(before);
}

// L0 handled an exit from L2 and queued an exception for L2 (an MSR that does not exist, an
// emulated instruction that faulted): hardware would have checked it against L1's exception
// bitmap, so one L1 intercepts becomes an exception exit to L1 (KVM's
// nested_vmx_check_exception). `before`: what the entry was to inject before L0's handler (an
// event whose delivery was cut short), which the exit reports as IDT-vectoring information.
bool NestedVmx::l0_exception_to_l1(uint32_t before) {
  Vcpu& v = vcpu_;
  if (!guest_mode) return true;
  const uint32_t info = uint32_t(v.vmread(F::VM_ENTRY_INTR_INFO_FIELD));
  if (info == before || !(info & intr_info::kValid) ||
      ((info >> 8) & 7) != unsigned(EventType::kHardwareException))
    return true;
  const unsigned vector = info & 0xff;
  const uint32_t error = uint32_t(v.vmread(F::VM_ENTRY_EXCEPTION_ERROR_CODE));
  bool wanted = cached_vmcs12.read(F::EXCEPTION_BITMAP) & (1u << vector);
  if (vector == unsigned(Vector::kPF)) {
    const bool match = (error & uint32_t(cached_vmcs12.read(F::PAGE_FAULT_ERROR_CODE_MASK))) ==
                       uint32_t(cached_vmcs12.read(F::PAGE_FAULT_ERROR_CODE_MATCH));
    wanted = wanted == match;
  }
  if (!wanted) return true;
  v.vmwrite(F::VM_EXIT_INTR_INFO, info);
  v.vmwrite(F::VM_EXIT_INTR_ERROR_CODE, error);
  v.vmwrite(F::VM_EXIT_INSTRUCTION_LEN, 0);
  v.vmwrite(F::IDT_VECTORING_INFO_FIELD, (before & intr_info::kValid) ? before : 0);
  v.vmwrite(F::VMX_INSTRUCTION_INFO, 0);
  // §28.2.1: a #PF's qualification is the linear address (CR2), a #DB's the debug conditions.
  const uint64_t qual = vector == unsigned(Vector::kPF) ? v.core().state.cr2 : 0;
  return nested_vmx_vmexit(uint32_t(ExitReason::EXCEPTION_NMI), qual);
}

}  // namespace nestvm::hv::nested
