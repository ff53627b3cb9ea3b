#include "hv/exit_handlers.h"

#include <array>
#include <string>

#include "arch/msr_index.h"
#include "arch/vmx.h"
#include "cpu/msr_file.h"
#include "hv/clock.h"
#include "hv/emulator.h"
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
  const uint64_t value = (v.reg(cpu::kRdx) << 32) | uint32_t(v.reg(cpu::kRax));
  IrqChip* chip = v.vm().irqchip();
  bool ok;
  uint64_t out = 0;
  const bool apic = (index >> 8) == 0x8 || index == msr_index(Msr::kIA32_APIC_BASE);
  const bool vmx_cap = index >= msr_index(Msr::kIA32_VMX_BASIC) && index <= msr_index(Msr::kIA32_VMX_VMFUNC);
  if (apic && chip) {
    ok = write ? chip->msr_write(v.index(), index, value) : chip->msr_read(v.index(), index, out);
  } else if (vmx_cap) {
    ok = false;  // nested VMX is not offered yet: the capability MSRs do not exist for L1
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

// VMX instructions: nested VMX is not offered to L1 yet, so they are undefined (#UD).
bool handle_vmx_instruction(Vcpu& v) {
  v.inject_exception(uint8_t(Vector::kUD));
  return true;
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
  set(ExitReason::TRIPLE_FAULT, handle_triple_fault);
  set(ExitReason::INTERRUPT_WINDOW, handle_interrupt_window);
  set(ExitReason::NMI_WINDOW, handle_nothing);
  set(ExitReason::CPUID, emulate);  // answered from the VM's CPU model (-cpu)
  set(ExitReason::HLT, handle_hlt);
  set(ExitReason::INVD, handle_skip);
  set(ExitReason::WBINVD, handle_skip);
  set(ExitReason::CR_ACCESS, emulate);
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
  return t;
}

constexpr std::array<ExitHandler, kNumExitReasons> kHandlers = make_table();

}  // namespace

bool handle_exit(Vcpu& vcpu, unsigned basic_reason) {
  if (basic_reason >= kNumExitReasons) return stop_unexpected(vcpu, "exit reason out of range");
  return kHandlers[basic_reason](vcpu);
}

}  // namespace nestvm::hv
