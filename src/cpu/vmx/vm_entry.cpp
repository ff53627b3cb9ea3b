// VM entry (SDM Vol. 3 Chapter 27): the basic checks, the checks on controls, host state and
// guest state (arch/vmentry_checks), guest-state loading, the MSR-load list, and entry into
// VMX non-root operation with the current VMCS's controls cached.
#include "arch/msr_index.h"
#include "arch/vmcs.h"
#include "arch/vmentry_checks.h"
#include "cpu/cpu.h"
#include "cpu/msr_file.h"

#include <algorithm>
#include <cstring>

namespace nestvm::cpu {

using namespace arch;

namespace {

void cache_controls(VmcsRegion& v, VmxControls& c) {
  c.pin = uint32_t(v.read(VmcsField::PIN_BASED_VM_EXEC_CONTROL));
  c.proc = uint32_t(v.read(VmcsField::CPU_BASED_VM_EXEC_CONTROL));
  c.proc2 = uint32_t(v.read(VmcsField::SECONDARY_VM_EXEC_CONTROL));
  c.exit = uint32_t(v.read(VmcsField::VM_EXIT_CONTROLS));
  c.entry = uint32_t(v.read(VmcsField::VM_ENTRY_CONTROLS));
  c.exception_bitmap = uint32_t(v.read(VmcsField::EXCEPTION_BITMAP));
  c.pfec_mask = uint32_t(v.read(VmcsField::PAGE_FAULT_ERROR_CODE_MASK));
  c.pfec_match = uint32_t(v.read(VmcsField::PAGE_FAULT_ERROR_CODE_MATCH));
  c.cr0_mask = v.read(VmcsField::CR0_GUEST_HOST_MASK);
  c.cr4_mask = v.read(VmcsField::CR4_GUEST_HOST_MASK);
  c.cr0_shadow = v.read(VmcsField::CR0_READ_SHADOW);
  c.cr4_shadow = v.read(VmcsField::CR4_READ_SHADOW);
  c.cr3_target_count = uint32_t(v.read(VmcsField::CR3_TARGET_COUNT));
  c.cr3_targets = {v.read(VmcsField::CR3_TARGET_VALUE0), v.read(VmcsField::CR3_TARGET_VALUE1),
                   v.read(VmcsField::CR3_TARGET_VALUE2), v.read(VmcsField::CR3_TARGET_VALUE3)};
  c.io_bitmap_a = v.read(VmcsField::IO_BITMAP_A);
  c.io_bitmap_b = v.read(VmcsField::IO_BITMAP_B);
  c.msr_bitmap = v.read(VmcsField::MSR_BITMAP);
  c.tsc_offset = v.read(VmcsField::TSC_OFFSET);
  c.eptp = v.read(VmcsField::EPT_POINTER);
  c.vpid = uint16_t(v.read(VmcsField::VIRTUAL_PROCESSOR_ID));
  c.virtual_apic_page = v.read(VmcsField::VIRTUAL_APIC_PAGE_ADDR);
  c.apic_access_addr = v.read(VmcsField::APIC_ACCESS_ADDR);
  c.tpr_threshold = uint32_t(v.read(VmcsField::TPR_THRESHOLD));
  c.vmread_bitmap = v.read(VmcsField::VMREAD_BITMAP);
  c.vmwrite_bitmap = v.read(VmcsField::VMWRITE_BITMAP);
  c.vmcs_link_pointer = v.read(VmcsField::VMCS_LINK_POINTER);
  c.ple_gap = uint32_t(v.read(VmcsField::PLE_GAP));
  c.ple_window = uint32_t(v.read(VmcsField::PLE_WINDOW));
  c.xss_exit_bitmap = v.read(VmcsField::XSS_EXIT_BITMAP);
}

// What the entry checks see of this processor (arch/vmentry_checks.h): the current VMCS, host
// physical memory, the capabilities, and L0's situation: a 64-bit host outside SMM.
VmEntryEnv silicon_entry_env(VmcsRegion& v, PhysMem& mem, const VmxCapabilities& caps, uint64_t current_vmcs,
                             uint64_t efer_valid_bits) {
  VmEntryEnv env;
  env.read = [&v](VmcsField f) { return v.read(f); };
  env.read_phys = [&mem](uint64_t pa, void* out, size_t len) {
    auto* dst = static_cast<uint8_t*>(out);
    while (len) {
      uint8_t* page = mem.ram_page(pa);
      if (!page) return false;
      const size_t n = std::min<size_t>(len, kPageSize - (pa & (kPageSize - 1)));
      std::memcpy(dst, page + (pa & (kPageSize - 1)), n);
      dst += n; pa += n; len -= n;
    }
    return true;
  };
  env.caps = &caps;
  env.in_ia32e_mode = true;
  env.in_smm = false;
  env.current_vmcs = current_vmcs;
  env.efer_valid_bits = efer_valid_bits;
  // What the core's WRMSR accepts (cpu/msr_file.cpp): DEBUGCTL.LBR and BTF; IA32_PERF_GLOBAL_CTRL
  // has no counters to enable.
  env.debugctl_valid_bits = (1ull << 0) | (1ull << 1);
  env.perf_global_ctrl_valid_bits = 0;
  return env;
}

}  // namespace

// The VM-exit MSR-store and MSR-load lists (SDM §28.4, §28.6): 16-byte entries {index,
// reserved, data} in physical memory. A load entry obeys the rules of the VM-entry MSR-load
// list (§28.6 repeats §27.4's), checked by the same function. Returns false with the 1-based
// index of the failing entry.
bool Cpu::vmx_process_msr_list(uint64_t addr, uint32_t count, bool store, uint32_t& failed_index) {
  VmEntryEnv env;
  env.caps = &vmx_caps_;
  for (uint32_t k = 0; k < count; ++k) {
    const uint64_t pa = addr + 16ull * k;
    uint8_t* page = mem_.ram_page(pa);
    if (!page) { failed_index = k + 1; return false; }
    uint8_t* e = page + (pa & (kPageSize - 1));
    uint32_t index, reserved;
    std::memcpy(&index, e, 4);
    std::memcpy(&reserved, e + 4, 4);
    if (store) {
      // SDM §28.4: IA32_SMBASE and the x2APIC MSRs cannot be stored (a VMX abort).
      uint64_t value = 0;
      if (reserved || index == 0x9e || (index >> 8) == 0x8 || read_msr(*this, index, value) != MsrResult::kOk) {
        failed_index = k + 1;
        return false;
      }
      std::memcpy(e + 8, &value, 8);
      continue;
    }
    MsrListEntry entry{index, reserved, 0};
    std::memcpy(&entry.value, e + 8, 8);
    if (!check_msr_load_entry(env, entry, k + 1).ok() || write_msr(*this, index, entry.value) != MsrResult::kOk) {
      failed_index = k + 1;
      return false;
    }
  }
  return true;
}

VmxResult Cpu::vm_enter(bool resume) {
  if (!vmx_.current.valid()) return {VmxResult::Kind::kFailInvalid};
  VmcsRegion& v = vmx_.current;
  // SDM §27.1: the launch state must fit the instruction.
  if (!resume && v.launched()) return vmx_fail(VmxError::VMLAUNCH_NONCLEAR_VMCS);
  if (resume && !v.launched()) return vmx_fail(VmxError::VMRESUME_NONLAUNCHED_VMCS);

  VmEntryEnv env = silicon_entry_env(v, mem_, vmx_caps_, vmx_.current_vmcs, efer_valid_bits());
  env.launch = !resume;

  // §27.2: controls, then host state: VMfailValid with 7 or 8.
  VmEntryCheck c = check_vmx_controls(env);
  if (c.ok()) c = check_host_state(env);
  if (!c.ok()) {
    VmxResult r = vmx_fail(c.error);
    r.rule = c.rule;
    return r;
  }
  // §27.8: a failure of the guest-state checks or of MSR loading is a VM-entry failure. The exit
  // reason (bit 31 set) and qualification are recorded and nothing else of the exit information
  // or of the guest-state area; host state is loaded as on a VM exit, NMI blocking is what it
  // was before the entry, and the VM-exit MSR-load list is processed (a failure there is a VMX
  // abort, indicator 4, §28.7). The launch state does not change.
  const bool nmi_blocking_before = state.nmi_blocking;
  auto entry_failure = [&](const VmEntryCheck& f) {
    v.write(VmcsField::VM_EXIT_REASON, f.exit_reason);
    v.write(VmcsField::EXIT_QUALIFICATION, f.qualification);
    vmx_tlb_exit(v);  // back to VPID 0 as on a VM exit (SDM §29.4.3.3)
    vmx_load_host_state(v);
    state.nmi_blocking = nmi_blocking_before;
    uint32_t failed = 0;
    if (!vmx_process_msr_list(v.read(VmcsField::VM_EXIT_MSR_LOAD_ADDR), uint32_t(v.read(VmcsField::VM_EXIT_MSR_LOAD_COUNT)),
                              false, failed)) {
      v.set_abort_indicator(4);
      state.activity = Activity::kShutdown;
    }
    VmxResult r{VmxResult::Kind::kEntryFailed};
    r.rule = f.rule;
    return r;
  };
  c = check_guest_state(env);
  if (!c.ok()) return entry_failure(c);

  // §27.3.2 then §27.4: load guest state, then the VM-entry MSR-load list, entry by entry (the
  // MSRs of earlier entries stay loaded when a later one fails).
  vmx_tlb_enter(v);  // the guest's VPID/EP4TA tags the TLB from here (SDM §29.4)
  vmx_load_guest_state(v);
  const uint64_t msr_area = v.read(VmcsField::VM_ENTRY_MSR_LOAD_ADDR);
  const uint32_t msr_count = uint32_t(v.read(VmcsField::VM_ENTRY_MSR_LOAD_COUNT));
  for (uint32_t k = 0; k < msr_count; ++k) {
    const MsrListEntry e = read_msr_list_entry(env, msr_area, k);
    c = check_msr_load_entry(env, e, k + 1);
    if (c.ok() && write_msr(*this, e.index, e.value) != MsrResult::kOk) c = msr_load_write_failure(k + 1);
    if (!c.ok()) return entry_failure(c);
  }

  if (!resume) v.set_launched(true);
  cache_controls(v, vmx_.ctl);
  vmx_.pause_loop = {};  // SDM §26.1.3: the first PAUSE at CPL 0 after VM entry starts a loop
  vmx_.non_root = true;
  vmx_.exit_pending = false;
  refresh_mode();

  // Event injection and the event state of non-root operation: NMI blocking, the
  // VMX-preemption timer, pending MTF, the APIC-access page (SDM §27.6, §27.7; event_injection.cpp).
  // An exit during injection leaves run() to report it.
  vmx_enter_events(v);
  return {};
}

}  // namespace nestvm::cpu
