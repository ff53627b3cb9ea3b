#include "hv/vcpu.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "arch/cr.h"
#include "arch/msr_index.h"
#include "arch/vmentry_checks.h"
#include "arch/vmx.h"
#include "hv/clock.h"
#include "hv/emulator.h"
#include "hv/exit_handlers.h"
#include "hv/mmu/guest_walk.h"
#include "hv/nested/nested_vmx.h"
#include "hv/vm.h"

namespace nestvm::hv {

using namespace arch;

namespace {
thread_local Vcpu* t_running_vcpu = nullptr;

struct RunningVcpuScope {
  explicit RunningVcpuScope(Vcpu* v) { set_running_vcpu(v); }
  ~RunningVcpuScope() { set_running_vcpu(nullptr); }
};

// The silicon every vCPU runs on: everything nestvm's processor implements.
const cpu::CpuModel& silicon_model() {
  static const cpu::CpuModel m = cpu::CpuModel::max();
  return m;
}
}  // namespace

Vcpu* running_vcpu() { return t_running_vcpu; }
void set_running_vcpu(Vcpu* vcpu) { t_running_vcpu = vcpu; }

Vcpu::Vcpu(Vm& vm, unsigned index)
    : vm_(vm), index_(index), core_(vm.host(), silicon_model()), shadow_paging_(!vm.config().ept) {
  core_.apic_id = index;
  emulator_ = std::make_unique<Emulator>(*this);
  nested_ = std::make_unique<nested::NestedVmx>(*this);
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
  // CR8 loads exit so that a lowered TPR lets pending interrupts in at once (KVM does the
  // same without a TPR shadow); the LAPIC reconciles CR8 and its TPR.
  vmwrite(F::CPU_BASED_VM_EXEC_CONTROL, caps.proc.allowed0 | proc::kHltExiting | proc::kUncondIoExiting |
                                            proc::kCr8LoadExiting |
                                            proc::kUseMsrBitmaps | proc::kActivateSecondary);
  // RDTSCP (and RDPID) and INVPCID are #UD in non-root operation without their enables (SDM
  // 26.3, Table 25-7): they follow the CPU model, as KVM's vmx_secondary_exec_control does.
  uint32_t p2 = proc2::kEnableVpid;
  if (vm_.model().has(cpu::Feature::kRdtscp)) p2 |= proc2::kEnableRdtscp;
  if (vm_.model().has(cpu::Feature::kInvpcid)) p2 |= proc2::kEnableInvpcid;
  if (vm_.config().ept) p2 |= proc2::kEnableEpt | proc2::kUnrestrictedGuest;
  vmwrite(F::SECONDARY_VM_EXEC_CONTROL, p2);
  vmwrite(F::VM_EXIT_CONTROLS, caps.exit.allowed0 | exit_ctl::kHostAddrSpaceSize | exit_ctl::kSaveEfer |
                                   exit_ctl::kLoadEfer | exit_ctl::kSavePat | exit_ctl::kLoadPat |
                                   exit_ctl::kAckIntrOnExit);
  vmwrite(F::VM_ENTRY_CONTROLS, caps.entry.allowed0 | entry_ctl::kLoadEfer | entry_ctl::kLoadPat);
  vmwrite(F::EXCEPTION_BITMAP, 0);
  vmwrite(F::CR0_GUEST_HOST_MASK, kL0OwnedCr0);
  vmwrite(F::CR4_GUEST_HOST_MASK, kL0OwnedCr4);
  if (shadow_paging_) {
    // Shadow paging (KVM with ept=0): L0 sees every #PF (the PFEC mask and match of zero select
    // all, SDM §25.6.3), every CR3 load and store (vmcs01's CR3 is the shadow root, L1's own
    // value is kept in L0), INVLPG and INVPCID, and owns the CR0/CR4 bits that change paging.
    vmwrite(F::CPU_BASED_VM_EXEC_CONTROL, vmread(F::CPU_BASED_VM_EXEC_CONTROL) | proc::kCr3LoadExiting |
                                              proc::kCr3StoreExiting | proc::kInvlpgExiting);
    vmwrite(F::CR3_TARGET_COUNT, 0);
    vmwrite(F::EXCEPTION_BITMAP, 1u << unsigned(Vector::kPF));
    vmwrite(F::PAGE_FAULT_ERROR_CODE_MASK, 0);
    vmwrite(F::PAGE_FAULT_ERROR_CODE_MATCH, 0);
    vmwrite(F::CR0_GUEST_HOST_MASK, kShadowL0OwnedCr0);
    vmwrite(F::CR4_GUEST_HOST_MASK, kShadowL0OwnedCr4);
  }
  vmwrite(F::VMCS_LINK_POINTER, ~0ull);
  vmwrite(F::VIRTUAL_PROCESSOR_ID, index_ + 1);
  if (vm_.config().ept) vmwrite(F::EPT_POINTER, vm_.tdp().eptp());
  // MSR bitmap (SDM §25.6.9): read bitmaps at 0/1024, write bitmaps at 2048/3072 (low/high
  // ranges). L0 keeps the x2APIC registers and IA32_APIC_BASE.
  msr_bitmap_hpa_ = host.alloc_page();
  uint8_t* bm = host.frame(msr_bitmap_hpa_);
  auto intercept = [bm](uint32_t msr) {
    // MSRs 0 to 1FFFH index the low bitmaps, C0000000H to C0001FFFH the high ones.
    const uint32_t i = msr & 0x1fff, hi = msr >= 0xc0000000u ? 1024 : 0;
    bm[hi + i / 8] |= uint8_t(1u << (i % 8));
    bm[2048 + hi + i / 8] |= uint8_t(1u << (i % 8));
  };
  for (uint32_t m = 0x800; m <= 0x8ff; ++m) intercept(m);
  intercept(msr_index(Msr::kIA32_APIC_BASE));
  // Under shadow paging vmcs01's EFER is L0's (NXE on, LME only with paging): L1's is emulated.
  if (shadow_paging_) intercept(msr_index(Msr::kIA32_EFER));
  intercept(msr_index(Msr::kIA32_TSC_DEADLINE));  // the LAPIC timer's
  for (uint32_t m = msr_index(Msr::kIA32_VMX_BASIC); m <= msr_index(Msr::kIA32_VMX_VMFUNC); ++m) intercept(m);
  intercept(msr_index(Msr::kIA32_FEATURE_CONTROL));  // L1's is nested VMX's (hv/nested/nested_vmx.h)
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
  // IA32_APIC_BASE belongs to the local APIC (the irqchip keeps the core's copy in step, and
  // INIT leaves it as it was, SDM Table 10-1): a boot or SIPI state does not replace it.
  const uint64_t apic_base = core_.state.msr.apic_base;
  core_.state = s;
  if (vm_.irqchip()) core_.state.msr.apic_base = apic_base;
  core_.refresh_mode();
  core_.save_guest_state_to(vmcs());
  vmwrite(VmcsField::GUEST_IA32_PAT, s.msr.pat);
  vmwrite(VmcsField::GUEST_DR7, s.dr7);
  set_control_regs({s.cr0, s.cr3, s.cr4, s.msr.efer, s.pdpte});
  vmwrite(VmcsField::VM_ENTRY_INTR_INFO_FIELD, 0);
  state_dirty_ = true;
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
  const uint64_t mask = vmread(VmcsField::CR0_GUEST_HOST_MASK);
  return (vmread(VmcsField::GUEST_CR0) & ~mask) | (vmread(VmcsField::CR0_READ_SHADOW) & mask);
}

uint64_t Vcpu::guest_cr4() {
  const uint64_t mask = vmread(VmcsField::CR4_GUEST_HOST_MASK);
  return (vmread(VmcsField::GUEST_CR4) & ~mask) | (vmread(VmcsField::CR4_READ_SHADOW) & mask);
}

uint64_t Vcpu::guest_cr3() { return shadow_paging_ ? l1_.cr3 : vmread(VmcsField::GUEST_CR3); }

uint64_t Vcpu::guest_efer() { return shadow_paging_ ? l1_.efer : vmread(VmcsField::GUEST_IA32_EFER); }

std::array<uint64_t, 4> Vcpu::guest_pdptes() {
  if (shadow_paging_) return l1_.pdptes;
  return {vmread(VmcsField::GUEST_PDPTR0), vmread(VmcsField::GUEST_PDPTR1), vmread(VmcsField::GUEST_PDPTR2),
          vmread(VmcsField::GUEST_PDPTR3)};
}

// What L1's control registers make of its paging (KVM's kvm_calc_cpu_role).
static GuestPagingState paging_state(const Vcpu::ControlRegs& c, const cpu::CpuModel& model) {
  GuestPagingState g;
  g.maxphyaddr = model.maxphyaddr();
  g.pdpe1gb = model.has(cpu::Feature::kPdpe1gb);
  if (!(c.cr0 & cr0::kPG)) return g;
  g.mode = (c.efer & efer::kLMA) ? cpu::PagingMode::k4Level
           : (c.cr4 & cr4::kPAE)  ? cpu::PagingMode::kPae
                                  : cpu::PagingMode::k32Bit;
  g.cr3 = c.cr3;
  if (g.mode == cpu::PagingMode::kPae) g.pdptes = c.pdptes;
  g.wp = c.cr0 & cr0::kWP;
  g.pse = c.cr4 & cr4::kPSE;
  g.pge = c.cr4 & cr4::kPGE;
  g.smep = c.cr4 & cr4::kSMEP;
  g.smap = c.cr4 & cr4::kSMAP;
  g.nxe = c.efer & efer::kNXE;
  return g;
}

GuestPagingState Vcpu::guest_paging_state() {
  return paging_state({guest_cr0(), guest_cr3(), guest_cr4(), guest_efer(), guest_pdptes()}, vm_.model());
}

void Vcpu::update_vmx_root_cr_intercepts() {
  if (nested_->guest_mode) return;  // vmcs02 is current; vmcs01 keeps what it had
  const bool on = nested_->vmxon;
  const uint64_t cr0_mask = (shadow_paging_ ? kShadowL0OwnedCr0 : kL0OwnedCr0) | (on ? nested_->caps().cr0_fixed0 : 0);
  const uint64_t cr4_mask = (shadow_paging_ ? kShadowL0OwnedCr4 : kL0OwnedCr4) | (on ? nested_->caps().cr4_fixed0 : 0);
  vmwrite(VmcsField::CR0_GUEST_HOST_MASK, cr0_mask);
  vmwrite(VmcsField::CR4_GUEST_HOST_MASK, cr4_mask);
}

void Vcpu::set_control_regs(const ControlRegs& c) {
  using F = VmcsField;
  const bool lma = c.efer & efer::kLMA;
  const uint64_t entry = vmread(F::VM_ENTRY_CONTROLS);
  vmwrite(F::VM_ENTRY_CONTROLS, lma ? (entry | entry_ctl::kIa32eModeGuest) : (entry & ~uint64_t(entry_ctl::kIa32eModeGuest)));
  vmwrite(F::CR0_READ_SHADOW, c.cr0);
  vmwrite(F::CR4_READ_SHADOW, c.cr4);
  if (!shadow_paging_) {
    vmwrite(F::GUEST_CR0, c.cr0 | kL0OwnedCr0);
    vmwrite(F::GUEST_CR4, c.cr4 | kL0OwnedCr4);
    vmwrite(F::GUEST_CR3, c.cr3);
    vmwrite(F::GUEST_IA32_EFER, c.efer);
    if ((c.cr0 & cr0::kPG) && (c.cr4 & cr4::kPAE) && !lma) {
      vmwrite(F::GUEST_PDPTR0, c.pdptes[0]);
      vmwrite(F::GUEST_PDPTR1, c.pdptes[1]);
      vmwrite(F::GUEST_PDPTR2, c.pdptes[2]);
      vmwrite(F::GUEST_PDPTR3, c.pdptes[3]);
    }
    return;
  }
  // The silicon always pages through the shadow tables: PG on (and PE: L1 in real mode runs on
  // the emulator, see run()), WP on so that L0's write-protection holds against L1's kernel,
  // PAE-format tables, XD usable. SMEP and SMAP do nothing while L1 has paging off (SDM §4.6),
  // so they are cleared then (KVM's vmx_set_cr4).
  const ControlRegs old = l1_;
  l1_ = c;
  const bool paging = c.cr0 & cr0::kPG;
  vmwrite(F::GUEST_CR0, c.cr0 | cr0::kPG | cr0::kWP | cr0::kNE | cr0::kET);
  uint64_t cr4 = (c.cr4 & ~kShadowL0OwnedCr4) | cr4::kPAE | cr4::kVMXE;
  if (paging) cr4 |= c.cr4 & (cr4::kPGE | cr4::kSMEP | cr4::kSMAP | cr4::kPKE);
  vmwrite(F::GUEST_CR4, cr4);
  const uint64_t lm = efer::kLME | efer::kLMA;
  vmwrite(F::GUEST_IA32_EFER, (c.efer & ~lm) | efer::kNXE | (lma ? lm : 0));
  if (old.cr0 != c.cr0 || old.cr4 != c.cr4 || old.efer != c.efer) state_dirty_ = true;
  if (paging && c.cr3 != old.cr3) ++vm_.mmu_stats().cr3_loads;
  if (vm_.shadow().set_guest_paging(index_, paging_state(c, vm_.model()))) {
    // New roots before the next entry; the silicon's TLB is not tagged by CR3, so what it
    // cached of the old address space goes (KVM's kvm_mmu_new_pgd with a TLB flush).
    root_hpa_ = 0;
    flush_tlb_current();
  } else if (root_hpa_) {
    vmwrite(F::GUEST_CR3, root_hpa_);  // the emulator wrote L1's
  }
}

// A #PF found while delivering an exception becomes #DF, or a triple fault while delivering
// #DF (SDM §6.15, Table 6-5; KVM's kvm_multiple_exception). Interrupts and benign exceptions
// whose delivery faulted give way to the #PF.
void Vcpu::inject_page_fault(uint64_t la, uint32_t error) {
  core_.state.cr2 = la;
  const uint32_t info = uint32_t(vmread(VmcsField::VM_ENTRY_INTR_INFO_FIELD));
  if ((info & intr_info::kValid) && ((info >> 8) & 7) == unsigned(EventType::kHardwareException)) {
    const unsigned vec = info & 0xff;
    if (vec == unsigned(Vector::kDF)) {
      vm_.request_stop(StopReason::kShutdown, 1, "vCPU " + std::to_string(index_) + ": triple fault (#PF delivering #DF)");
      return;
    }
    if (vec == unsigned(Vector::kPF) || vec == 0 || (vec >= 10 && vec <= 13)) {
      inject_exception(uint8_t(Vector::kDF), true, 0);
      return;
    }
  }
  inject_exception(uint8_t(Vector::kPF), true, error);
}

void Vcpu::flush_tlb_current() {
  if (shadow_paging_) (void)core_.invvpid(uint64_t(InvvpidType::kSingleContext), index_ + 1, 0);
  else (void)core_.invept(uint64_t(InveptType::kSingleContext), vmread(VmcsField::EPT_POINTER));
}

void Vcpu::flush_tlb_address(uint64_t la) {
  // INVVPID refuses non-canonical addresses; the silicon caches nothing for those anyway.
  (void)core_.invvpid(uint64_t(InvvpidType::kIndividualAddress), index_ + 1, la);
}

bool Vcpu::repeated_spurious_fault(uint64_t la, uint32_t error) {
  if (la == spurious_la_ && error == spurious_error_) {
    spurious_la_ = ~0ull;
    return true;
  }
  spurious_la_ = la;
  spurious_error_ = error;
  return false;
}

uint64_t Vcpu::make_request(uint32_t request) {
  requests_.fetch_or(request, std::memory_order_seq_cst);
  const uint64_t mode = guest_mode_.load(std::memory_order_seq_cst);
  if (mode & 1) core_.kick();
  return mode;
}

void Vcpu::wait_for_exit(uint64_t seen) {
  if (!(seen & 1)) return;
  while (guest_mode_.load(std::memory_order_acquire) == seen) std::this_thread::yield();
}

void Vcpu::service_requests() {
  const uint32_t r = requests_.exchange(0, std::memory_order_acq_rel);
  if (r & req::kTlbFlush) flush_tlb_current();
  if (r & req::kMmuReload) root_hpa_ = 0;
}

// Before entering under shadow paging: the roots (KVM's kvm_mmu_reload), and whether vmcs01's
// guest state is one VM entry takes without "unrestricted guest" (SDM §27.3.1).
bool Vcpu::prepare_shadow_entry() {
  if ((l1_.cr0 & cr0::kPE) && !root_hpa_) {
    root_hpa_ = vm_.shadow().load_root(index_);
    if (!root_hpa_) {
      vm_.request_stop(StopReason::kError, 1, "host memory exhausted (shadow page tables)");
      return false;
    }
    vmwrite(VmcsField::GUEST_CR3, root_hpa_);
  }
  if (state_dirty_) {
    emulation_required_ = !(l1_.cr0 & cr0::kPE) || !guest_state_valid();
    state_dirty_ = false;
  }
  return true;
}

bool Vcpu::guest_state_valid() {
  cpu::VmcsRegion& v = vmcs();
  HostMemory& host = vm_.host();
  arch::VmEntryEnv env;
  env.read = [&v](VmcsField f) { return v.read(f); };
  env.read_phys = [&host](uint64_t pa, void* out, size_t len) {
    auto* dst = static_cast<uint8_t*>(out);
    while (len) {
      uint8_t* page = host.ram_page(pa);
      if (!page) return false;
      const size_t n = std::min<size_t>(len, 4096 - (pa & 0xfff));
      std::memcpy(dst, page + (pa & 0xfff), n);
      dst += n;
      pa += n;
      len -= n;
    }
    return true;
  };
  env.caps = &core_.vmx_caps();
  env.launch = !launched_;
  env.current_vmcs = vmcs_hpa_;
  env.efer_valid_bits = core_.efer_valid_bits();
  return arch::check_guest_state(env).ok();
}

// L1's state cannot be entered (real mode, or segments protected mode does not allow, without
// "unrestricted guest"): run it a block at a time on the emulator's processor, a full core with
// the bus behind it, until the state can be entered again (KVM's emulate_invalid_guest_state).
bool Vcpu::emulate_invalid_guest_state() {
  constexpr uint64_t kBlock = 1024;
  ++vm_.mmu_stats().emulated_blocks;
  switch (emulator_->emulate_block(kBlock)) {
    case Emulator::Result::kHalted: halt(); break;
    case Emulator::Result::kShutdown:
      vm_.request_stop(StopReason::kShutdown, 1,
                       "vCPU " + std::to_string(index_) + ": triple fault at RIP " +
                           std::to_string(vmread(VmcsField::GUEST_RIP)) + " (emulated)");
      return false;
    default: break;
  }
  state_dirty_ = true;
  return true;
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

// SDM §11.4.4.1 (and §26.2): a SIPI is taken only in the wait-for-SIPI state, which an INIT
// enters at once; the MP protocol's second SIPI reaches a running processor and is dropped.
void Vcpu::deliver_sipi(uint8_t vector) {
  {
    std::lock_guard lock(mu_);
    if (!waiting_sipi_ && !init_pending_.load() && !l2_waits_sipi_.load()) return;
    sipi_vector_.store(vector, std::memory_order_release);
  }
  kick();
}

// SMP start-up (SDM Vol. 3 §10.4): an application processor waits for a SIPI, then starts in
// real mode at vector << 12.
bool Vcpu::wait_sipi() {
  std::unique_lock lock(mu_);
  waiting_sipi_ = true;
  cv_.wait(lock, [&] { return vm_.stopping() || sipi_vector_.load() >= 0; });
  waiting_sipi_ = false;
  if (vm_.stopping()) return false;
  const int v = sipi_vector_.exchange(-1);
  init_pending_.store(false);  // an INIT while waiting leaves the processor waiting: absorbed
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
  for (;;) {
    // Cleared before looking, so that a kick after the look ends the wait; what a kick before
    // it announced, the look sees. The interrupt controllers are asked without mu_ held: their
    // deliveries kick vCPUs, which takes mu_. The NMI stays pending for inject_pending_event.
    kicked_.exchange(false, std::memory_order_acq_rel);
    // An INIT that VMX root operation blocks (L1 under VMXON, outside L2) does not wake it.
    if (vm_.stopping() || (init_pending_.load() && (!nested_->vmxon || nested_->guest_mode))) break;
    if (chip) {
      chip->expire_timers(index_, host_tsc());
      // L2 halted under an L1 that takes interrupts as VM exits wakes whatever L2's IF says.
      const bool can_take = (vmread(VmcsField::GUEST_RFLAGS) & rflags::kIF) || nested_->interrupts_exit_l2();
      if ((can_take && chip->has_interrupt(index_)) || chip->has_nmi(index_)) break;
    }
    const uint64_t deadline = chip ? chip->next_deadline(index_) : ~0ull;
    std::unique_lock lock(mu_);
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

// L2 halted in non-root operation (activity state HLT or wait-for-SIPI, which vmcs12 may give
// it): wait as halt() does for a kick, a timer of L1's or an INIT/SIPI, then let the silicon look
// at them: a kick is an EXTERNAL_INTERRUPT exit to L0, INIT and SIPI exit to L1 (SDM §26.2).
void Vcpu::wait_l2_halted() {
  const auto t0 = std::chrono::steady_clock::now();
  IrqChip* chip = vm_.irqchip();
  const bool wait_sipi = core_.state.activity == cpu::Activity::kWaitForSipi;
  l2_waits_sipi_.store(wait_sipi);
  for (;;) {
    kicked_.exchange(false, std::memory_order_acq_rel);
    if (vm_.stopping() || init_pending_.load() || (wait_sipi && sipi_vector_.load() >= 0)) break;
    if (chip) chip->expire_timers(index_, host_tsc());
    if (kicked_.load()) break;
    const uint64_t deadline = chip ? chip->next_deadline(index_) : ~0ull;
    std::unique_lock lock(mu_);
    auto woken = [&] { return kicked_.load() || vm_.stopping() || init_pending_.load() || sipi_vector_.load() >= 0; };
    if (deadline == ~0ull) {
      cv_.wait(lock, woken);
    } else {
      const uint64_t now = host_tsc();
      if (deadline > now) cv_.wait_for(lock, std::chrono::nanoseconds(tsc_to_ns(deadline - now)), woken);
    }
  }
  l2_waits_sipi_.store(false);
  if (init_pending_.exchange(false)) core_.raise_init();
  const int v = sipi_vector_.exchange(-1);
  if (wait_sipi && v >= 0) core_.raise_sipi(uint8_t(v));
  core_.kick();  // the silicon looks at its events again and leaves with an exit if any
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
  uint64_t proc_ctl = vmread(VmcsField::CPU_BASED_VM_EXEC_CONTROL) & ~uint64_t(proc::kNmiWindowExiting);
  const uint32_t blocking = uint32_t(vmread(VmcsField::GUEST_INTERRUPTIBILITY_INFO));
  if (chip->has_nmi(index_)) {
    // A blocked NMI stays pending; the NMI-window exit says when it can go in (SDM §26.7.6).
    if (!(blocking & (interruptibility::kBlockingByNmi | interruptibility::kBlockingByMovSs | interruptibility::kBlockingBySti)) &&
        chip->take_nmi(index_)) {
      vmwrite(VmcsField::CPU_BASED_VM_EXEC_CONTROL, proc_ctl);
      vmwrite(VmcsField::VM_ENTRY_INTR_INFO_FIELD, intr_info::make(2, unsigned(EventType::kNmi), false));
      return;
    }
    proc_ctl |= proc::kNmiWindowExiting;
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
  const RunningVcpuScope running(this);
  if (wait_for_sipi_ && !wait_sipi()) return;
  using Clock = std::chrono::steady_clock;
  while (!vm_.stopping()) {
    // INIT is blocked in VMX root operation (SDM §24.8): under L1's VMXON it waits for L2,
    // where it is an INIT_SIGNAL exit to L1 (raised just before the entry to L2, below).
    if (!nested_->vmxon && init_pending_.exchange(false)) {
      // INIT (SDM §10.4.7.3): the processor waits for a SIPI again.
      launched_ = false;
      core_.vmclear(vmcs_hpa_);
      core_.vmptrld(vmcs_hpa_);
      if (IrqChip* chip = vm_.irqchip()) chip->reset_vcpu(index_, true);
      if (!wait_sipi()) return;
    }
    if (requests_.load(std::memory_order_relaxed)) service_requests();
    if (shadow_paging_) {
      if (!prepare_shadow_entry()) return;
      if (emulation_required_) {
        if (!emulate_invalid_guest_state()) return;
        continue;
      }
    }
    // While L2 runs, an event for L1 may end its turn first (nested/nested_exit.cpp).
    if (nested_->guest_mode && !nested_->check_nested_events()) return;
    inject_pending_event();
    arm_preemption_timer();
    const bool l2 = nested_->guest_mode;  // vmcs02 is current: L2 runs
    if (l2) nested_->finish_l2_entry();
    kicked_.store(false, std::memory_order_relaxed);
    // In the guest from here (KVM's vcpu->mode = IN_GUEST_MODE): a request made from now on
    // kicks, one made before is seen here.
    guest_mode_.store((++entries_ << 1) | 1, std::memory_order_seq_cst);
    if (requests_.load(std::memory_order_seq_cst)) {
      guest_mode_.store(entries_ << 1, std::memory_order_release);
      continue;
    }
    const auto t0 = Clock::now();
    const cpu::VmxResult r = core_.vm_enter(l2 ? vmcs().launched() : launched_);
    if (r.kind == cpu::VmxResult::Kind::kFailInvalid || r.kind == cpu::VmxResult::Kind::kFailValid) {
      vm_.request_stop(StopReason::kError, 1,
                       std::string("VM entry to L1 failed: VMfail error ") + std::to_string(uint32_t(r.error)) + " (" +
                           r.rule + ")");
      return;
    }
    cpu::RunExit e = cpu::RunExit::kVmExit;
    if (r.kind == cpu::VmxResult::Kind::kSucceed) {
      if (!l2) launched_ = true;
      const uint64_t before = core_.instructions_retired();
      if (l2 && init_pending_.exchange(false)) core_.raise_init();
      e = core_.run();
      // L2 in HLT or wait-for-SIPI without an exit (its activity state): L0 waits for it.
      while (l2 && e == cpu::RunExit::kHalted && !vm_.stopping()) {
        wait_l2_halted();
        e = core_.run();
      }
      stats_.instructions += core_.instructions_retired() - before;
    }
    guest_mode_.store(entries_ << 1, std::memory_order_release);
    const auto t1 = Clock::now();
    stats_.guest_ns += uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    if (e != cpu::RunExit::kVmExit) {
      vm_.request_stop(StopReason::kError, 1, "the silicon returned without a VM exit");
      return;
    }
    const uint32_t reason = uint32_t(vmread(VmcsField::VM_EXIT_REASON));
    if (l2) {
      // An exit from L2: L0 handles it or reflects it to L1 (nested/nested_exit.cpp).
      if (!(reason & kExitReasonFailedEntry)) reinject_idt_vectoring();
      const bool go_on = nested_->handle_l2_exit(reason);
      stats_.l0_ns += uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t1).count());
      if (!go_on) return;
      continue;
    }
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
