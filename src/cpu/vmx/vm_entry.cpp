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

}  // namespace

// The VM-entry MSR-load list and the VM-exit MSR-store/load lists (SDM §27.4, §28.4, §28.6):
// 16-byte entries {index, reserved, data} in physical memory. Returns false with the 1-based
// index of the failing entry.
bool Cpu::vmx_process_msr_list(uint64_t addr, uint32_t count, bool store, uint32_t& failed_index) {
  for (uint32_t k = 0; k < count; ++k) {
    const uint64_t pa = addr + 16ull * k;
    uint8_t* page = mem_.ram_page(pa);
    if (!page) { failed_index = k + 1; return false; }
    uint8_t* e = page + (pa & (kPageSize - 1));
    uint32_t index, reserved;
    std::memcpy(&index, e, 4);
    std::memcpy(&reserved, e + 4, 4);
    if (store) {
      uint64_t value = 0;
      if (reserved || read_msr(*this, index, value) != MsrResult::kOk) { failed_index = k + 1; return false; }
      std::memcpy(e + 8, &value, 8);
      continue;
    }
    uint64_t value;
    std::memcpy(&value, e + 8, 8);
    // SDM §27.4: reserved bits, FS/GS base, x2APIC registers and SMM-monitor MSR fail the load.
    const bool forbidden = index == msr_index(Msr::kIA32_FS_BASE) || index == msr_index(Msr::kIA32_GS_BASE) ||
                           (index >> 8) == 0x8 || index == 0x9b;
    if (reserved || forbidden || write_msr(*this, index, value) != MsrResult::kOk) { failed_index = k + 1; return false; }
  }
  return true;
}

VmxResult Cpu::vm_enter(bool resume) {
  if (!vmx_.current.valid()) return {VmxResult::Kind::kFailInvalid};
  VmcsRegion& v = vmx_.current;
  // SDM §27.1: the launch state must fit the instruction.
  if (!resume && v.launched()) return vmx_fail(VmxError::VMLAUNCH_NONCLEAR_VMCS);
  if (resume && !v.launched()) return vmx_fail(VmxError::VMRESUME_NONLAUNCHED_VMCS);

  VmEntryEnv env;
  env.read = [&v](VmcsField f) { return v.read(f); };
  env.read_phys = [this](uint64_t pa, void* out, size_t len) {
    auto* dst = static_cast<uint8_t*>(out);
    while (len) {
      uint8_t* page = mem_.ram_page(pa);
      if (!page) return false;
      const size_t n = std::min<size_t>(len, kPageSize - (pa & (kPageSize - 1)));
      std::memcpy(dst, page + (pa & (kPageSize - 1)), n);
      dst += n; pa += n; len -= n;
    }
    return true;
  };
  env.caps = &vmx_caps_;
  env.launch = !resume;

  // §27.2: controls, then host state: VMfailValid with 7 or 8.
  VmEntryCheck c = check_vmx_controls(env);
  if (c.ok()) c = check_host_state(env);
  if (!c.ok()) {
    VmxResult r = vmx_fail(c.error);
    r.rule = c.rule;
    return r;
  }
  // §27.3: guest state; a failure is a VM exit with bit 31 of the exit reason set, after which
  // the processor loads host state (§27.8).
  auto entry_failure = [&](uint32_t reason, uint64_t qual, const char* rule) {
    v.write(VmcsField::VM_EXIT_REASON, reason | kExitReasonFailedEntry);
    v.write(VmcsField::EXIT_QUALIFICATION, qual);
    vmx_load_host_state(v);
    tlb_.flush_all();
    VmxResult r{VmxResult::Kind::kEntryFailed};
    r.rule = rule;
    return r;
  };
  c = check_guest_state(env);
  if (!c.ok()) return entry_failure(c.exit_reason & ~kExitReasonFailedEntry, c.qualification, c.rule);

  vmx_load_guest_state(v);
  uint32_t failed = 0;
  if (!vmx_process_msr_list(v.read(VmcsField::VM_ENTRY_MSR_LOAD_ADDR), uint32_t(v.read(VmcsField::VM_ENTRY_MSR_LOAD_COUNT)),
                            false, failed))
    return entry_failure(uint32_t(ExitReason::MSR_LOAD_FAIL), failed, "VM-entry MSR-load entry could not be loaded");

  if (!resume) v.set_launched(true);
  cache_controls(v, vmx_.ctl);
  vmx_.pause_loop = {};  // SDM §26.1.3: the first PAUSE at CPL 0 after VM entry starts a loop
  vmx_.non_root = true;
  vmx_.exit_pending = false;
  tlb_.flush_all();  // until translations are tagged by VPID/EPTP
  refresh_mode();

  // Event injection and the event state of non-root operation: NMI blocking, the
  // VMX-preemption timer, pending MTF, the APIC-access page (SDM §27.6, §27.7; event_injection.cpp).
  // An exit during injection leaves run() to report it.
  vmx_enter_events(v);
  return {};
}

}  // namespace nestvm::cpu
