// VMLAUNCH and VMRESUME executed by L1 (SDM Vol. 2 VMLAUNCH/VMRESUME, Vol. 3 Chapter 27; KVM's
// nested_vmx_run and nested_vmx_enter_non_root_mode): the instruction's own checks (§27.1), the
// VM-entry checks of src/arch on vmcs12 with the capabilities L1 was offered (failing exactly
// as hardware: VMfailValid(7/8), or a VM-entry failure L1 sees as an exit with bit 31 after its
// host state is loaded), L1's VM-entry MSR-load list, then vmcs02 prepared and made current:
// the next entry of the vCPU loop runs L2.
#include <cstring>

#include "arch/cr.h"
#include "arch/msr_index.h"
#include "arch/segment.h"
#include "arch/vmentry_checks.h"
#include "cpu/msr_file.h"
#include "hv/clock.h"
#include "hv/nested/nested_vmx.h"
#include "hv/vcpu.h"
#include "hv/vm.h"

namespace nestvm::hv::nested {

using namespace arch;
using F = VmcsField;

namespace {

// MSRs whose L2 value lives in a guest-state field of vmcs02 rather than in the silicon's MSR
// file while L2 runs (the processor loads them from the VMCS).
std::optional<VmcsField> msr_vmcs_field(uint32_t index) {
  switch (index) {
    case 0x174: return F::GUEST_SYSENTER_CS;
    case 0x175: return F::GUEST_SYSENTER_ESP;
    case 0x176: return F::GUEST_SYSENTER_EIP;
    case 0x1d9: return F::GUEST_IA32_DEBUGCTL;
    case 0x277: return F::GUEST_IA32_PAT;
    case 0xc0000080: return F::GUEST_IA32_EFER;
    case 0xc0000100: return F::GUEST_FS_BASE;
    case 0xc0000101: return F::GUEST_GS_BASE;
    default: return std::nullopt;
  }
}

}  // namespace

arch::VmEntryEnv NestedVmx::vmcs12_entry_env(bool launch) {
  VmEntryEnv env;
  const Vmcs12* c12 = &cached_vmcs12;
  GuestMemory* mem = &vcpu_.vm().mem();
  env.read = [c12](VmcsField f) { return c12->read(f); };
  env.read_phys = [mem](uint64_t pa, void* out, size_t len) {
    if (mem->read(pa, out, len)) return true;
    std::memset(out, 0xff, len);
    return false;
  };
  env.caps = &caps();
  env.launch = launch;
  env.in_ia32e_mode = vcpu_.guest_efer() & efer::kLMA;
  env.in_smm = false;
  env.current_vmcs = current_vmptr;
  env.efer_valid_bits = vcpu_.core().efer_valid_bits();
  return env;
}

void NestedVmx::init_nested_entry() {
  HostMemory& host = vcpu_.vm().host();
  if (!vmcs02_hpa) {
    vmcs02_hpa = host.alloc_page();
    msr_bitmap02_hpa = host.alloc_page();
    *reinterpret_cast<uint32_t*>(host.frame(vmcs02_hpa)) = kVmcsRevision;
    // Host state: L0's, as in vmcs01 (never changes).
    cpu::VmcsRegion v01(host.frame(vcpu_.vmcs01_hpa())), v02(host.frame(vmcs02_hpa));
    for (const VmcsFieldInfo& i : vmcs_fields())
      if (i.type() == VmcsType::kHost) v02.write(i.field, v01.read(i.field));
    vmcs02_vmptr = kInvalidGpa;
    // L2's VPID: apart from every vCPU's L1 (index + 1).
    vpid02 = uint16_t(0x8000u | (vcpu_.index() + 1));
  }
  if (!ept02) {
    const uint64_t cap = caps().ept_vpid_cap;
    ept02 = std::make_unique<NestedEpt>(host, vcpu_.vm().mem(), vcpu_.vm().mmu_stats(), cap,
                                        vcpu_.vm().model().maxphyaddr(), [this](uint64_t eptp02) {
                                          (void)vcpu_.core().invept(uint64_t(InveptType::kSingleContext), eptp02);
                                        });
    // INVEPT from L1 drops the EPT02 roots built from the EPT12 it names (SDM §29.4.3.1);
    // INVVPID the combined and linear mappings of L2's VPID.
    on_invept = [this](InveptType type, uint64_t eptp) {
      if (type == InveptType::kSingleContext) ept02->invalidate(eptp);
      else ept02->invalidate_all();
    };
    on_invvpid = [this](InvvpidType, uint16_t, uint64_t) {
      (void)vcpu_.core().invvpid(uint64_t(InvvpidType::kSingleContext), vpid02, 0);
    };
  }
}

// L1's VMX-preemption timer for L2 (SDM §26.5.1), kept as a host-TSC deadline: it counts down
// at the TSC rate >> IA32_VMX_MISC[4:0] of the capabilities L1 was offered.
uint64_t NestedVmx::l1_timer_remaining() const {
  const uint64_t now = host_tsc();
  if (l1_timer_deadline <= now) return 0;
  const uint64_t t = (l1_timer_deadline - now) >> (caps().misc & vmx_misc::kPreemptionTimerRateMask);
  return t > 0xffffffffu ? 0xffffffffu : t;
}

// VM-entry failure (SDM §27.8): exit reason with bit 31 and qualification in vmcs12, L1's
// host state loaded, the VM-exit MSR-load list processed; the launch state does not change.
bool NestedVmx::nested_entry_failure(const VmEntryCheck& c) {
  cached_vmcs12.write(F::VM_EXIT_REASON, c.exit_reason);
  cached_vmcs12.write(F::EXIT_QUALIFICATION, c.qualification);
  cached_vmcs12.write(F::VM_ENTRY_INTR_INFO_FIELD, cached_vmcs12.read(F::VM_ENTRY_INTR_INFO_FIELD) & ~uint64_t(intr_info::kValid));
  if (guest_mode) leave_guest_mode();
  load_vmcs12_host_state();
  return process_exit_msr_load();
}

// The VM-entry MSR-load list of vmcs12 (SDM §27.4), entry by entry, checked as the silicon
// checks its own (arch::check_msr_load_entry) and written to L2's context: vmcs02's field for an
// MSR the VMCS holds, the silicon's MSR file otherwise.
VmEntryCheck NestedVmx::process_entry_msr_load(const VmEntryEnv& env) {
  const uint64_t area = cached_vmcs12.read(F::VM_ENTRY_MSR_LOAD_ADDR);
  const uint32_t count = uint32_t(cached_vmcs12.read(F::VM_ENTRY_MSR_LOAD_COUNT));
  for (uint32_t k = 0; k < count; ++k) {
    const MsrListEntry e = read_msr_list_entry(env, area, k);
    VmEntryCheck c = check_msr_load_entry(env, e, k + 1);
    if (c.ok()) {
      bool ok;
      if (auto f = msr_vmcs_field(e.index)) {
        ok = e.index != 0xc0000080 || !(e.value & ~env.efer_valid_bits);
        if (ok) vcpu_.vmwrite(*f, e.value);
      } else {
        ok = cpu::write_msr(vcpu_.core(), e.index, e.value) == cpu::MsrResult::kOk;
      }
      if (!ok) c = msr_load_write_failure(k + 1);
    }
    if (!c.ok()) return c;
  }
  return {};
}

bool handle_vmlaunch(Vcpu& v, bool launch) { return v.nested().nested_vmx_run(launch); }

bool NestedVmx::nested_vmx_run(bool launch) {
  Vcpu& v = vcpu_;
  // #UD outside VMX operation and in real, virtual-8086 and compatibility mode (SDM Vol. 2
  // VMLAUNCH/VMRESUME: the first check of the pseudo-code).
  const bool lma = v.guest_efer() & efer::kLMA;
  if (!vmxon || !(v.guest_cr0() & cr0::kPE) || (v.vmread(F::GUEST_RFLAGS) & rflags::kVM) ||
      (lma && !(v.vmread(F::GUEST_CS_AR_BYTES) & ar::kL))) {
    v.inject_exception(uint8_t(Vector::kUD));
    return true;
  }
  if (ar::dpl(uint32_t(v.vmread(F::GUEST_SS_AR_BYTES))) != 0) {
    v.inject_exception(uint8_t(Vector::kGP), true, 0);
    return true;
  }
  auto fail = [&](auto&& how) {
    how();
    v.skip_instruction();
    return true;
  };
  if (current_vmptr == kInvalidGpa) return fail([&] { vmx_fail_invalid(); });
  // §27.1: blocking by MOV SS, then the launch state.
  if (v.vmread(F::GUEST_INTERRUPTIBILITY_INFO) & interruptibility::kBlockingByMovSs)
    return fail([&] { vmx_fail_valid(VmxError::ENTRY_EVENTS_BLOCKED_BY_MOV_SS); });
  if (launch && cached_vmcs12.launched) return fail([&] { vmx_fail_valid(VmxError::VMLAUNCH_NONCLEAR_VMCS); });
  if (!launch && !cached_vmcs12.launched) return fail([&] { vmx_fail_valid(VmxError::VMRESUME_NONLAUNCHED_VMCS); });
  // §27.2: controls, then host state (VMfailValid 7 or 8), on vmcs12 with L1's capabilities.
  const VmEntryEnv env = vmcs12_entry_env(launch);
  VmEntryCheck c = check_vmx_controls(env);
  if (c.ok()) c = check_host_state(env);
  if (!c.ok()) return fail([&] { vmx_fail_valid(c.error); });
  // From here the instruction has entered: a failure is a VM-entry failure, L1 resumes at its
  // host RIP (SDM §27.8).
  c = check_guest_state(env);
  if (!c.ok()) return nested_entry_failure(c);

  if (v.shadow_paging()) {
    // vmcs02 needs EPT under L2 (EPT02 or EPT01); L0's shadow paging does not compose with it.
    v.vm().request_stop(StopReason::kError, 1, "nested VMX needs EPT in L0 (-accel nestvm,ept=on)");
    return false;
  }
  init_nested_entry();
  if (!vmcs02_hpa || !msr_bitmap02_hpa) {
    v.vm().request_stop(StopReason::kError, 1, "host memory exhausted (vmcs02)");
    return false;
  }
  // vmcs02 becomes the silicon's current VMCS and takes L2's state and the merged controls.
  (void)v.core().vmptrld(vmcs02_hpa);
  guest_mode = true;
  prepare_vmcs02();
  if ((c = process_entry_msr_load(env)); !c.ok()) return nested_entry_failure(c);
  const uint32_t proc12 = uint32_t(cached_vmcs12.read(F::CPU_BASED_VM_EXEC_CONTROL));
  const bool vpid12 = (proc12 & proc::kActivateSecondary) &&
                      (cached_vmcs12.read(F::SECONDARY_VM_EXEC_CONTROL) & proc2::kEnableVpid);
  // Without VPID in vmcs12, L1 expects VM entries and exits to flush linear mappings (SDM
  // §29.4.3.3, VPID 0 on both sides): L2's VPID is flushed on each.
  if (!vpid12) (void)v.core().invvpid(uint64_t(InvvpidType::kSingleContext), vpid02, 0);
  if (cached_vmcs12.read(F::PIN_BASED_VM_EXEC_CONTROL) & pin::kPreemptionTimer) {
    const unsigned rate = unsigned(caps().misc & vmx_misc::kPreemptionTimerRateMask);
    l1_timer_deadline = host_tsc() + (cached_vmcs12.read(F::VMX_PREEMPTION_TIMER_VALUE) << rate);
  } else {
    l1_timer_deadline = ~0ull;
  }
  if (launch) cached_vmcs12.launched = true;
  nested_run_pending = true;
  ++v.stats().nested_entries;
  return true;
}

}  // namespace nestvm::hv::nested
