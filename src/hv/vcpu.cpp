#include "hv/vcpu.h"

#include <chrono>

#include "arch/cr.h"
#include "arch/msr_index.h"
#include "arch/vmx.h"
#include "hv/clock.h"
#include "hv/emulator.h"
#include "hv/exit_handlers.h"
#include "hv/vm.h"

namespace nestvm::hv {

using namespace arch;

namespace {
// The silicon every vCPU runs on: everything nestvm's processor implements.
const cpu::CpuModel& silicon_model() {
  static const cpu::CpuModel m = cpu::CpuModel::max();
  return m;
}
}  // namespace

Vcpu::Vcpu(Vm& vm, unsigned index) : vm_(vm), index_(index), core_(vm.host(), silicon_model()) {
  core_.apic_id = index;
  emulator_ = std::make_unique<Emulator>(*this);
  setup_vmcs01();
}

Vcpu::~Vcpu() = default;

// vmcs01: how L0 runs L1 (KVM's vmx_vcpu_setup). Every I/O exits to L0's devices; MSRs pass
// through to the silicon except the APIC's; EPT01 maps guest-physical memory; HLT exits so that
// a halted vCPU sleeps in L0; external interrupts (kicks) exit.
void Vcpu::setup_vmcs01() {
  HostMemory& host = vm_.host();
  vmcs_hpa_ = host.alloc_page();
  *reinterpret_cast<uint32_t*>(host.frame(vmcs_hpa_)) = kVmcsRevision;
  core_.vmclear(vmcs_hpa_);
  core_.vmptrld(vmcs_hpa_);
  const VmxCapabilities& caps = core_.vmx_caps();
  using F = VmcsField;
  vmwrite(F::PIN_BASED_VM_EXEC_CONTROL, caps.pin.allowed0 | pin::kExtIntExiting | pin::kNmiExiting | pin::kVirtualNmis);
  vmwrite(F::CPU_BASED_VM_EXEC_CONTROL, caps.proc.allowed0 | proc::kHltExiting | proc::kUncondIoExiting |
                                            proc::kUseMsrBitmaps | proc::kActivateSecondary);
  uint32_t p2 = proc2::kEnableVpid | proc2::kEnableRdtscp | proc2::kEnableInvpcid;
  if (vm_.config().ept) p2 |= proc2::kEnableEpt | proc2::kUnrestrictedGuest;
  vmwrite(F::SECONDARY_VM_EXEC_CONTROL, p2);
  vmwrite(F::VM_EXIT_CONTROLS, caps.exit.allowed0 | exit_ctl::kHostAddrSpaceSize | exit_ctl::kSaveEfer |
                                   exit_ctl::kLoadEfer | exit_ctl::kSavePat | exit_ctl::kLoadPat |
                                   exit_ctl::kAckIntrOnExit);
  vmwrite(F::VM_ENTRY_CONTROLS, caps.entry.allowed0 | entry_ctl::kLoadEfer | entry_ctl::kLoadPat);
  vmwrite(F::EXCEPTION_BITMAP, 0);
  vmwrite(F::CR0_GUEST_HOST_MASK, kL0OwnedCr0);
  vmwrite(F::CR4_GUEST_HOST_MASK, kL0OwnedCr4);
  vmwrite(F::VMCS_LINK_POINTER, ~0ull);
  vmwrite(F::VIRTUAL_PROCESSOR_ID, index_ + 1);
  if (vm_.config().ept) vmwrite(F::EPT_POINTER, vm_.tdp().eptp());
  // MSR bitmap (SDM §25.6.9): read bitmaps at 0/1024, write bitmaps at 2048/3072 (low/high
  // ranges). L0 keeps the x2APIC registers and IA32_APIC_BASE.
  msr_bitmap_hpa_ = host.alloc_page();
  uint8_t* bm = host.frame(msr_bitmap_hpa_);
  auto intercept = [bm](uint32_t msr) {
    bm[msr / 8] |= uint8_t(1u << (msr % 8));
    bm[2048 + msr / 8] |= uint8_t(1u << (msr % 8));
  };
  for (uint32_t m = 0x800; m <= 0x8ff; ++m) intercept(m);
  intercept(msr_index(Msr::kIA32_APIC_BASE));
  for (uint32_t m = msr_index(Msr::kIA32_VMX_BASIC); m <= msr_index(Msr::kIA32_VMX_VMFUNC); ++m) intercept(m);
  vmwrite(F::MSR_BITMAP, msr_bitmap_hpa_);
  // Host state: L0 runs in C++, not on the silicon; the host-state area only has to be valid.
  const uint64_t host_cr3 = host.alloc_page();
  vmwrite(F::HOST_CR0, cr0::kPE | cr0::kMP | cr0::kET | cr0::kNE | cr0::kWP | cr0::kPG);
  vmwrite(F::HOST_CR3, host_cr3);
  vmwrite(F::HOST_CR4, cr4::kPAE | cr4::kVMXE);
  vmwrite(F::HOST_CS_SELECTOR, 0x08);
  vmwrite(F::HOST_SS_SELECTOR, 0x10);
  vmwrite(F::HOST_DS_SELECTOR, 0x10);
  vmwrite(F::HOST_ES_SELECTOR, 0x10);
  vmwrite(F::HOST_TR_SELECTOR, 0x18);
  vmwrite(F::HOST_IA32_EFER, efer::kLME | efer::kLMA);
  vmwrite(F::HOST_IA32_PAT, 0x0007040600070406ull);
}

void Vcpu::set_initial_state(const cpu::CpuState& s) {
  core_.state = s;
  core_.refresh_mode();
  core_.save_guest_state_to(vmcs());
  vmwrite(VmcsField::GUEST_IA32_EFER, s.msr.efer);
  vmwrite(VmcsField::GUEST_IA32_PAT, s.msr.pat);
  vmwrite(VmcsField::GUEST_DR7, s.dr7);
  vmwrite(VmcsField::CR0_READ_SHADOW, s.cr0);
  vmwrite(VmcsField::CR4_READ_SHADOW, s.cr4);
  vmwrite(VmcsField::GUEST_CR0, s.cr0 | kL0OwnedCr0);
  vmwrite(VmcsField::GUEST_CR4, s.cr4 | kL0OwnedCr4);
  vmwrite(VmcsField::VM_ENTRY_INTR_INFO_FIELD, 0);
}

uint64_t Vcpu::reg(cpu::Gpr r) { return r == cpu::kRsp ? vmread(VmcsField::GUEST_RSP) : core_.state.gpr[r]; }

void Vcpu::set_reg(cpu::Gpr r, uint64_t v) {
  if (r == cpu::kRsp) vmwrite(VmcsField::GUEST_RSP, v);
  else core_.state.gpr[r] = v;
}

void Vcpu::skip_instruction() {
  vmwrite(VmcsField::GUEST_RIP, vmread(VmcsField::GUEST_RIP) + vmread(VmcsField::VM_EXIT_INSTRUCTION_LEN));
  // Completing an instruction ends STI/MOV-SS blocking (SDM §26.3.1.5 as KVM applies it).
  vmwrite(VmcsField::GUEST_INTERRUPTIBILITY_INFO,
          vmread(VmcsField::GUEST_INTERRUPTIBILITY_INFO) &
              ~uint64_t(interruptibility::kBlockingBySti | interruptibility::kBlockingByMovSs));
}

void Vcpu::inject_exception(uint8_t vector, bool has_error, uint32_t error) {
  vmwrite(VmcsField::VM_ENTRY_INTR_INFO_FIELD,
          intr_info::make(vector, unsigned(EventType::kHardwareException), has_error));
  vmwrite(VmcsField::VM_ENTRY_EXCEPTION_ERROR_CODE, error);
}

uint64_t Vcpu::guest_cr0() {
  return (vmread(VmcsField::GUEST_CR0) & ~kL0OwnedCr0) | (vmread(VmcsField::CR0_READ_SHADOW) & kL0OwnedCr0);
}

uint64_t Vcpu::guest_cr4() {
  return (vmread(VmcsField::GUEST_CR4) & ~kL0OwnedCr4) | (vmread(VmcsField::CR4_READ_SHADOW) & kL0OwnedCr4);
}

void Vcpu::kick() {
  kicked_.store(true, std::memory_order_release);
  core_.kick();
  std::lock_guard lock(mu_);
  cv_.notify_all();
}

void Vcpu::deliver_init() {
  init_pending_.store(true, std::memory_order_release);
  kick();
}

void Vcpu::deliver_sipi(uint8_t vector) {
  sipi_vector_.store(vector, std::memory_order_release);
  kick();
}

// SMP start-up (SDM Vol. 3 §10.4): an application processor waits for a SIPI, then starts in
// real mode at vector << 12.
bool Vcpu::wait_sipi() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return vm_.stopping() || sipi_vector_.load() >= 0; });
  if (vm_.stopping()) return false;
  const int v = sipi_vector_.exchange(-1);
  cpu::Cpu scratch(vm_.host(), core_.model());
  scratch.reset(true);
  scratch.state.seg[unsigned(SegReg::kCS)].selector = uint16_t(v << 8);
  scratch.state.seg[unsigned(SegReg::kCS)].base = uint64_t(v) << 12;
  scratch.state.rip = 0;
  // Unrestricted guests take the real-mode state as it is (SDM §27.3.1.2 for real mode).
  scratch.state.ldtr.ar = ar::kP | sys_type::kLdt;
  lock.unlock();
  set_initial_state(scratch.state);
  return true;
}

void Vcpu::halt() {
  const auto t0 = std::chrono::steady_clock::now();
  IrqChip* chip = vm_.irqchip();
  std::unique_lock lock(mu_);
  for (;;) {
    if (vm_.stopping() || init_pending_.load()) break;
    if (chip) {
      chip->expire_timers(index_, host_tsc());
      const bool can_take = vmread(VmcsField::GUEST_RFLAGS) & rflags::kIF;
      if ((can_take && chip->has_interrupt(index_)) || chip->take_nmi(index_)) break;
    }
    kicked_.store(false, std::memory_order_relaxed);
    const uint64_t deadline = chip ? chip->next_deadline(index_) : ~0ull;
    if (deadline == ~0ull) {
      cv_.wait(lock, [&] { return kicked_.load() || vm_.stopping(); });
    } else {
      const uint64_t now = host_tsc();
      if (deadline > now) cv_.wait_for(lock, std::chrono::nanoseconds(tsc_to_ns(deadline - now)),
                                       [&] { return kicked_.load() || vm_.stopping(); });
    }
  }
  stats_.halted_ns += uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now() - t0).count());
}

// An event whose delivery an exit interrupted is delivered again at the next entry (SDM
// §28.2.4 IDT-vectoring information; KVM's vmx_complete_interrupts).
void Vcpu::reinject_idt_vectoring() {
  const uint32_t info = uint32_t(vmread(VmcsField::IDT_VECTORING_INFO_FIELD));
  if (!(info & intr_info::kValid)) return;
  vmwrite(VmcsField::VM_ENTRY_INTR_INFO_FIELD, info & ~uint32_t(intr_info::kNmiUnblockingDueToIret));
  vmwrite(VmcsField::VM_ENTRY_EXCEPTION_ERROR_CODE, vmread(VmcsField::IDT_VECTORING_ERROR_CODE));
  vmwrite(VmcsField::VM_ENTRY_INSTRUCTION_LEN, vmread(VmcsField::VM_EXIT_INSTRUCTION_LEN));
}

// Pending interrupts go in when L1 can take them, else an interrupt window is requested
// (SDM §26.7.5; KVM's inject_pending_event).
void Vcpu::inject_pending_event() {
  IrqChip* chip = vm_.irqchip();
  if (!chip) return;
  if (vmread(VmcsField::VM_ENTRY_INTR_INFO_FIELD) & intr_info::kValid) return;
  const uint64_t proc_ctl = vmread(VmcsField::CPU_BASED_VM_EXEC_CONTROL);
  const uint32_t blocking = uint32_t(vmread(VmcsField::GUEST_INTERRUPTIBILITY_INFO));
  if (chip->take_nmi(index_)) {
    if (!(blocking & (interruptibility::kBlockingByNmi | interruptibility::kBlockingByMovSs | interruptibility::kBlockingBySti))) {
      vmwrite(VmcsField::VM_ENTRY_INTR_INFO_FIELD, intr_info::make(2, unsigned(EventType::kNmi), false));
      return;
    }
  }
  if (!chip->has_interrupt(index_)) {
    vmwrite(VmcsField::CPU_BASED_VM_EXEC_CONTROL, proc_ctl & ~uint64_t(proc::kIntrWindowExiting));
    return;
  }
  const bool open = (vmread(VmcsField::GUEST_RFLAGS) & rflags::kIF) &&
                    !(blocking & (interruptibility::kBlockingBySti | interruptibility::kBlockingByMovSs));
  if (!open) {
    vmwrite(VmcsField::CPU_BASED_VM_EXEC_CONTROL, proc_ctl | proc::kIntrWindowExiting);
    return;
  }
  vmwrite(VmcsField::CPU_BASED_VM_EXEC_CONTROL, proc_ctl & ~uint64_t(proc::kIntrWindowExiting));
  const int vector = chip->acknowledge_interrupt(index_);
  if (vector < 0) return;
  vmwrite(VmcsField::VM_ENTRY_INTR_INFO_FIELD,
          intr_info::make(uint8_t(vector), unsigned(EventType::kExternalInterrupt), false));
  ++stats_.injected_interrupts;
}

// The LAPIC timer deadline becomes the VMX-preemption timer (SDM §26.5.1), as KVM does.
void Vcpu::arm_preemption_timer() {
  IrqChip* chip = vm_.irqchip();
  const uint64_t deadline = chip ? chip->next_deadline(index_) : ~0ull;
  uint64_t pin_ctl = vmread(VmcsField::PIN_BASED_VM_EXEC_CONTROL);
  if (deadline == ~0ull) {
    vmwrite(VmcsField::PIN_BASED_VM_EXEC_CONTROL, pin_ctl & ~uint64_t(pin::kPreemptionTimer));
    return;
  }
  const uint64_t now = host_tsc();
  const unsigned rate = unsigned(core_.vmx_caps().misc & 0x1f);
  const uint64_t ticks = deadline > now ? (deadline - now) >> rate : 0;
  vmwrite(VmcsField::PIN_BASED_VM_EXEC_CONTROL, pin_ctl | pin::kPreemptionTimer);
  vmwrite(VmcsField::VMX_PREEMPTION_TIMER_VALUE, ticks > 0xffffffffu ? 0xffffffffu : ticks);
}

void Vcpu::run() {
  if (wait_for_sipi_ && !wait_sipi()) return;
  using Clock = std::chrono::steady_clock;
  while (!vm_.stopping()) {
    if (init_pending_.exchange(false)) {
      // INIT (SDM §10.4.7.3): the processor waits for a SIPI again.
      launched_ = false;
      core_.vmclear(vmcs_hpa_);
      core_.vmptrld(vmcs_hpa_);
      if (!wait_sipi()) return;
    }
    inject_pending_event();
    arm_preemption_timer();
    kicked_.store(false, std::memory_order_relaxed);
    const auto t0 = Clock::now();
    const cpu::VmxResult r = core_.vm_enter(launched_);
    if (r.kind == cpu::VmxResult::Kind::kFailInvalid || r.kind == cpu::VmxResult::Kind::kFailValid) {
      vm_.request_stop(StopReason::kError, 1,
                       std::string("VM entry to L1 failed: VMfail error ") + std::to_string(uint32_t(r.error)) + " (" +
                           r.rule + ")");
      return;
    }
    cpu::RunExit e = cpu::RunExit::kVmExit;
    if (r.kind == cpu::VmxResult::Kind::kSucceed) {
      launched_ = true;
      const uint64_t before = core_.instructions_retired();
      e = core_.run();
      stats_.instructions += core_.instructions_retired() - before;
    }
    const auto t1 = Clock::now();
    stats_.guest_ns += uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    if (e != cpu::RunExit::kVmExit) {
      vm_.request_stop(StopReason::kError, 1, "the silicon returned without a VM exit");
      return;
    }
    const uint32_t reason = uint32_t(vmread(VmcsField::VM_EXIT_REASON));
    if (reason & kExitReasonFailedEntry) {
      vm_.request_stop(StopReason::kError, 1,
                       std::string("VM entry to L1 failed: ") + exit_reason_name(reason & 0xffff) + " (" + r.rule + ")");
      return;
    }
    const unsigned basic = reason & 0xffff;
    if (basic < kNumExitReasons) ++stats_.exits[basic];
    reinject_idt_vectoring();
    const bool go_on = handle_exit(*this, basic);
    stats_.l0_ns += uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t1).count());
    if (!go_on) return;
  }
}

}  // namespace nestvm::hv
