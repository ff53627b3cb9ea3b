#include "hv/exit_handlers.h"

#include <array>
#include <string>

#include "arch/msr_index.h"
#include "arch/vmx.h"
#include "cpu/msr_file.h"
#include "hv/clock.h"
#include "hv/emulator.h"
#include "hv/nested/nested_vmx.h"
#include "hv/vcpu.h"
#include "hv/vm.h"

namespace nestvm::hv {

using namespace arch;

namespace {

using ExitHandler = bool (*)(Vcpu&);

bool stop_unexpected(Vcpu& v, const char* what) {
  v.vm().request_stop(StopReason::kError, 1,
                      std::string("vCPU ") + std::to_string(v.index()) + ": unexpected exit from L1: " + what);
  return false;
}

// Runs the instruction through the emulator; HLT there halts the vCPU.
bool emulate(Vcpu& v) {
  if (v.emulator().emulate_one() == Emulator::Result::kHalted) v.halt();
  return true;
}

bool handle_nothing(Vcpu&) { return true; }

// MOV to CR0/CR4 and LMSW from L1 in VMX operation: the bits IA32_VMX_CR0/CR4_FIXED0 fix to 1
// (and FIXED1 to 0) stay so, else #GP(0) (SDM Vol. 3 §24.8, restrictions on VMX operation; KVM's
// nested_host_cr0_valid / nested_cr4_valid). L0 sees these writes because it owns those bits
// while L1 is in VMX operation (Vcpu::update_vmx_root_cr_intercepts).
bool handle_cr_access(Vcpu& v) {
  nested::NestedVmx& n = v.nested();
  if (n.vmxon && !n.guest_mode) {
    const uint64_t q = v.vmread(VmcsField::EXIT_QUALIFICATION);
    const unsigned cr = q & 15, type = (q >> 4) & 3;
    const VmxCapabilities& caps = n.caps();
    bool valid = true;
    if (type == 0 && cr == 0) {
      const uint64_t value = v.reg(cpu::Gpr((q >> 8) & 15));
      valid = (value & caps.cr0_fixed0) == caps.cr0_fixed0 && !(value & ~caps.cr0_fixed1 & 0xffffffffull);
    } else if (type == 0 && cr == 4) {
      const uint64_t value = v.reg(cpu::Gpr((q >> 8) & 15));
      valid = (value & caps.cr4_fixed0) == caps.cr4_fixed0 && !(value & ~caps.cr4_fixed1);
    }
    // LMSW cannot clear PE and leaves PG and NE alone: it cannot break the fixed bits.
    if (!valid) {
      v.inject_exception(uint8_t(Vector::kGP), true, 0);
      return true;
    }
  }
  return emulate(v);
}

bool handle_triple_fault(Vcpu& v) {
  v.vm().request_stop(StopReason::kShutdown, 1,
                      "vCPU " + std::to_string(v.index()) + ": triple fault at RIP " +
                          std::to_string(v.vmread(VmcsField::GUEST_RIP)));
  return false;
}

bool handle_interrupt_window(Vcpu& v) {
  v.vmwrite(VmcsField::CPU_BASED_VM_EXEC_CONTROL,
            v.vmread(VmcsField::CPU_BASED_VM_EXEC_CONTROL) & ~uint64_t(proc::kIntrWindowExiting));
  return true;
}

bool handle_hlt(Vcpu& v) {
  v.skip_instruction();
  v.halt();
  return true;
}

bool handle_skip(Vcpu& v) {
  v.skip_instruction();
  return true;
}

// I/O instructions (SDM Table 28-5): IN/OUT go straight to the port bus; INS/OUTS through the
// emulator, which also does their memory accesses.
bool handle_io(Vcpu& v) {
  const uint64_t q = v.vmread(VmcsField::EXIT_QUALIFICATION);
  if (q & (1u << 4)) return emulate(v);
  const unsigned size = unsigned(q & 7) + 1;
  const bool in = q & (1u << 3);
  const uint16_t port = uint16_t(q >> 16);
  IoBuses& io = v.vm().io();
  const uint64_t rax = v.reg(cpu::kRax);
  if (in) {
    const uint32_t value = io.pio_read(port, size);
    const uint64_t mask = size == 4 ? 0xffffffffull : size == 2 ? 0xffffull : 0xffull;
    // A 32-bit IN zero-extends into RAX; 8/16-bit ones merge.
    v.set_reg(cpu::kRax, size == 4 ? value : ((rax & ~mask) | (value & mask)));
  } else {
    io.pio_write(port, size, uint32_t(rax) & (size == 4 ? 0xffffffffu : size == 2 ? 0xffffu : 0xffu));
  }
  v.skip_instruction();
  return !v.vm().stopping();
}

// MSRs L0 keeps (the APIC's, the VMX capabilities) or that no bitmap covers.
bool handle_msr(Vcpu& v, bool write) {
  const uint32_t index = uint32_t(v.reg(cpu::kRcx));
  // Under shadow paging L1's EFER is L0's to keep: the emulator applies WRMSR's rules to it.
  if (index == msr_index(Msr::kIA32_EFER) && v.shadow_paging()) return emulate(v);
  const uint64_t value = (v.reg(cpu::kRdx) << 32) | uint32_t(v.reg(cpu::kRax));
  IrqChip* chip = v.vm().irqchip();
  bool ok;
  uint64_t out = 0;
  const bool apic = (index >> 8) == 0x8 || index == msr_index(Msr::kIA32_APIC_BASE) ||
                    index == msr_index(Msr::kIA32_TSC_DEADLINE);
  const bool vmx_cap = nested::NestedVmx::handles_msr(index);  // VMX capabilities, IA32_FEATURE_CONTROL
  if (apic && chip) {
    ok = write ? chip->msr_write(v.index(), index, value) : chip->msr_read(v.index(), index, out);
  } else if (vmx_cap) {
    ok = write ? v.nested().set_msr(index, value) : v.nested().get_msr(index, out);
  } else {
    ok = write ? cpu::write_msr(v.core(), index, value) == cpu::MsrResult::kOk
               : cpu::read_msr(v.core(), index, out) == cpu::MsrResult::kOk;
  }
  if (!ok) {
    v.inject_exception(uint8_t(Vector::kGP), true, 0);
    return true;
  }
  if (!write) {
    v.set_reg(cpu::kRax, uint32_t(out));
    v.set_reg(cpu::kRdx, out >> 32);
  }
  v.skip_instruction();
  return true;
}
bool handle_rdmsr(Vcpu& v) { return handle_msr(v, false); }
bool handle_wrmsr(Vcpu& v) { return handle_msr(v, true); }

// VMX instructions from L1 but VMLAUNCH/VMRESUME: emulated by nested VMX (nested/vmx_insn.cpp).
bool handle_vmx_instruction(Vcpu& v) {
  return nested::handle_vmx_instruction(v, ExitReason(v.vmread(VmcsField::VM_EXIT_REASON) & 0xffff));
}

bool handle_ept_violation(Vcpu& v) {
  const uint64_t gpa = v.vmread(VmcsField::GUEST_PHYSICAL_ADDRESS);
  switch (v.vm().tdp().handle_ept_violation(gpa)) {
    case TdpMmu::Fault::kFixed: return true;
    case TdpMmu::Fault::kMmio: return emulate(v);
    case TdpMmu::Fault::kOutOfMemory:
      v.vm().request_stop(StopReason::kError, 1, "host memory exhausted");
      return false;
  }
  return false;
}

// A #PF under shadow paging (KVM's handle_exception_nmi and kvm_mmu_page_fault).
bool handle_page_fault(Vcpu& v, uint64_t la, uint32_t error) {
  // SMAP exempts explicit supervisor accesses with EFLAGS.AC = 1 (SDM §4.6.1); CPL is SS.DPL.
  const unsigned cpl = unsigned(v.vmread(VmcsField::GUEST_SS_AR_BYTES) >> 5) & 3;
  const bool smap_exempt = cpl < 3 && (v.vmread(VmcsField::GUEST_RFLAGS) & rflags::kAC);
  ShadowMmu& mmu = v.vm().shadow();
  const ShadowMmu::Fault f = mmu.page_fault(v.index(), la, error, smap_exempt);
  using K = ShadowMmu::Fault::Kind;
  switch (f.kind) {
    case K::kFixed:
      if (f.flush_address) v.flush_tlb_address(la);
      return true;
    case K::kRetry:
      v.make_request(req::kMmuReload);
      return true;
    case K::kSpurious:
      // The shadow allows the access: first drop what the silicon cached; if the same fault
      // comes straight back, the silicon judged L1's tables itself (e.g. an implicit
      // supervisor access under SMAP) and the fault is L1's.
      if (v.repeated_spurious_fault(la, error)) {
        ++v.vm().mmu_stats().guest_page_faults;
        v.inject_page_fault(la, error);
      } else {
        v.flush_tlb_address(la);
      }
      return true;
    case K::kInject:
      v.inject_page_fault(la, f.error_code);
      return true;
    case K::kMmio:
      return emulate(v);
    case K::kEmulateWrite: {
      // A write to a guest page table made while delivering an event is no instruction to
      // emulate: the table loses its protection and the delivery runs again.
      if (v.vmread(VmcsField::VM_ENTRY_INTR_INFO_FIELD) & intr_info::kValid) {
        mmu.unprotect(f.gfn);
        if (f.next_gfn != ~0ull) mmu.unprotect(f.next_gfn);
        return true;
      }
      const Emulator::Result r = mmu.emulate_write(f.gfn, f.next_gfn, [&v] { return v.emulator().emulate_one(); });
      if (r == Emulator::Result::kHalted) v.halt();
      return true;
    }
    case K::kOutOfMemory:
      v.vm().request_stop(StopReason::kError, 1, "host memory exhausted");
      return false;
  }
  return false;
}

// Exceptions and NMIs (SDM §28.2.2: VM_EXIT_INTR_INFO). Under shadow paging L0 intercepts #PF;
// an exception L0 did not ask for goes back to L1.
bool handle_exception_nmi(Vcpu& v) {
  const uint32_t info = uint32_t(v.vmread(VmcsField::VM_EXIT_INTR_INFO));
  const unsigned type = (info >> 8) & 7, vector = info & 0xff;
  if (type == unsigned(EventType::kNmi)) return true;  // L1's NMIs come from the irqchip
  const uint32_t error = uint32_t(v.vmread(VmcsField::VM_EXIT_INTR_ERROR_CODE));
  if (vector == unsigned(Vector::kPF) && v.shadow_paging())
    return handle_page_fault(v, v.vmread(VmcsField::EXIT_QUALIFICATION), error);
  if (vector == unsigned(Vector::kPF)) v.core().state.cr2 = v.vmread(VmcsField::EXIT_QUALIFICATION);
  v.inject_exception(uint8_t(vector), info & intr_info::kDeliverErrorCode, error);
  return true;
}

// INVLPG under shadow paging: the shadow tables follow L1's already (every write to a guest
// page table was trapped), so what remains is the silicon's cached translation.
bool handle_invlpg(Vcpu& v) {
  ++v.vm().mmu_stats().invlpg;
  v.flush_tlb_address(v.vmread(VmcsField::EXIT_QUALIFICATION));
  v.skip_instruction();
  return true;
}

// INVPCID exits with "INVLPG exiting" (SDM §26.1.3): the emulator applies its checks; L0 then
// drops every cached translation of the vCPU (more than asked, never less).
bool handle_invpcid(Vcpu& v) {
  if (v.emulator().emulate_one() == Emulator::Result::kDone) v.flush_tlb_current();
  return true;
}

bool handle_preemption_timer(Vcpu& v) {
  if (IrqChip* chip = v.vm().irqchip()) chip->expire_timers(v.index(), host_tsc());
  return true;
}

bool handle_unexpected(Vcpu& v) {
  const uint32_t r = uint32_t(v.vmread(VmcsField::VM_EXIT_REASON)) & 0xffff;
  return stop_unexpected(v, exit_reason_name(r));
}

constexpr std::array<ExitHandler, kNumExitReasons> make_table() {
  std::array<ExitHandler, kNumExitReasons> t{};
  for (auto& h : t) h = handle_unexpected;
  auto set = [&t](ExitReason r, ExitHandler h) { t[unsigned(r)] = h; };
  set(ExitReason::EXTERNAL_INTERRUPT, handle_nothing);  // a kick: the loop looks at events
  set(ExitReason::EXCEPTION_NMI, handle_exception_nmi);
  set(ExitReason::INVLPG, handle_invlpg);
  set(ExitReason::INVPCID, handle_invpcid);
  set(ExitReason::TRIPLE_FAULT, handle_triple_fault);
  set(ExitReason::INTERRUPT_WINDOW, handle_interrupt_window);
  set(ExitReason::NMI_WINDOW, handle_nothing);
  set(ExitReason::CPUID, emulate);  // answered from the VM's CPU model (-cpu)
  set(ExitReason::HLT, handle_hlt);
  set(ExitReason::INVD, handle_skip);
  set(ExitReason::WBINVD, handle_skip);
  set(ExitReason::CR_ACCESS, handle_cr_access);
  set(ExitReason::XSETBV, emulate);
  set(ExitReason::IO_INSTRUCTION, handle_io);
  set(ExitReason::MSR_READ, handle_rdmsr);
  set(ExitReason::MSR_WRITE, handle_wrmsr);
  set(ExitReason::EPT_VIOLATION, handle_ept_violation);
  set(ExitReason::PREEMPTION_TIMER, handle_preemption_timer);
  for (ExitReason r : {ExitReason::VMCALL, ExitReason::VMCLEAR, ExitReason::VMLAUNCH, ExitReason::VMPTRLD,
                       ExitReason::VMPTRST, ExitReason::VMREAD, ExitReason::VMRESUME, ExitReason::VMWRITE,
                       ExitReason::VMXOFF, ExitReason::VMXON, ExitReason::INVEPT, ExitReason::INVVPID})
    set(r, handle_vmx_instruction);
  // VMLAUNCH/VMRESUME: nested VMX enters L2 (hv/nested/nested_entry.cpp).
  set(ExitReason::VMLAUNCH, [](Vcpu& v) { return nested::handle_vmlaunch(v, true); });
  set(ExitReason::VMRESUME, [](Vcpu& v) { return nested::handle_vmlaunch(v, false); });
  return t;
}

constexpr std::array<ExitHandler, kNumExitReasons> kHandlers = make_table();

}  // namespace

bool handle_exit(Vcpu& vcpu, unsigned basic_reason) {
  if (basic_reason >= kNumExitReasons) return stop_unexpected(vcpu, "exit reason out of range");
  return kHandlers[basic_reason](vcpu);
}

}  // namespace nestvm::hv
