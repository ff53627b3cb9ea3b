// Instruction class: RDMSR WRMSR RDTSC RDTSCP RDPID RDPMC (SDM Vol. 2, each instruction's
// "Operation" and "Protected Mode Exceptions"). The MSRs themselves are in cpu/msr_file.cpp.
#include "cpu/insn/operand.h"
#include "cpu/msr_file.h"
#include "cpu/vmx/nonroot.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

// EDX:EAX <- v, each write zero-extending into RDX/RAX.
void set_edx_eax(Cpu& c, uint64_t v) {
  c.set_reg(4, kRax, uint32_t(v));
  c.set_reg(4, kRdx, uint32_t(v >> 32));
}

// RDMSR/WRMSR: CPL 0 only (virtual-8086 mode runs at CPL 3); ECX selects the MSR. In VMX
// non-root operation the MSR bitmaps decide after the CPL check (vmx/io_msr_bitmaps.cpp).
Status rdmsr(Cpu& c, const Insn& i) {
  if (c.cpl() != 0) return c.fault(Vector::kGP, 0);
  const uint32_t index = uint32_t(c.state.gpr[kRcx]);
  uint64_t v;
  if (c.vmx_non_root()) {
    const Status st = vmx::rdmsr(c, i, index, v);
    if (st != Status::kNext) return st;
  } else if (read_msr(c, index, v) != MsrResult::kOk) {
    return c.fault(Vector::kGP, 0);
  }
  set_edx_eax(c, v);
  return Status::kNext;
}

Status wrmsr(Cpu& c, const Insn& i) {
  if (c.cpl() != 0) return c.fault(Vector::kGP, 0);
  const uint32_t index = uint32_t(c.state.gpr[kRcx]);
  const uint64_t v = (c.state.gpr[kRdx] << 32) | uint32_t(c.state.gpr[kRax]);
  if (c.vmx_non_root()) return vmx::wrmsr(c, i, index, v);
  if (write_msr(c, index, v) != MsrResult::kOk) return c.fault(Vector::kGP, 0);
  return Status::kEndBlock;  // EFER, segment bases, ...: WRMSR is serializing anyway
}

// RDTSC/RDTSCP: #GP(0) if CR4.TSD = 1 and CPL > 0 (in protected mode; real mode is CPL 0).
bool tsc_denied(const Cpu& c) { return (c.state.cr4 & cr4::kTSD) && c.cpl() > 0; }

// SDM §26.3 RDTSCP, RDPID: #UD in VMX non-root operation unless "enable RDTSCP" is 1, before
// any other exception.
bool rdtscp_disabled(const Cpu& c) { return c.vmx_non_root() && !c.vmx_controls().has2(proc2::kEnableRdtscp); }

// In VMX non-root operation "RDTSC exiting" comes after the CR4.TSD check (SDM §26.1.1); without
// it the value is offset by TSC_OFFSET when "use TSC offsetting" is 1 (§26.3).
Status rdtsc(Cpu& c, const Insn& i) {
  if (tsc_denied(c)) return c.fault(Vector::kGP, 0);
  uint64_t tsc = guest_tsc(c);
  if (c.vmx_non_root()) {
    if (c.vmx_controls().has(proc::kRdtscExiting)) return c.vm_exit_for(i, ExitReason::RDTSC);
    tsc += vmx::guest_tsc_offset(c);
  }
  set_edx_eax(c, tsc);
  return Status::kNext;
}

Status rdtscp(Cpu& c, const Insn& i) {
  if (rdtscp_disabled(c)) return c.fault(Vector::kUD);
  if (tsc_denied(c)) return c.fault(Vector::kGP, 0);
  uint64_t tsc = guest_tsc(c);
  if (c.vmx_non_root()) {
    if (c.vmx_controls().has(proc::kRdtscExiting)) return c.vm_exit_for(i, ExitReason::RDTSCP);
    tsc += vmx::guest_tsc_offset(c);
  }
  set_edx_eax(c, tsc);
  c.set_reg(4, kRcx, uint32_t(c.state.msr.tsc_aux));
  return Status::kNext;
}

// RDPID r32/r64: IA32_TSC_AUX at any privilege level (64-bit operand in 64-bit mode).
template <unsigned N> struct Rdpid {
  static Status run(Cpu& c, const Insn& i) {
    if (rdtscp_disabled(c)) return c.fault(Vector::kUD);
    c.set_reg(N, i.reg, c.state.msr.tsc_aux);
    return Status::kNext;
  }
};

// RDPMC: nestvm's models have no performance-monitoring counters (CPUID.0AH reports none), so
// no ECX value selects a valid counter. The CR4.PCE/CPL test is a privilege check and comes
// before "RDPMC exiting" (SDM §26.1.1); the invalid-counter #GP comes after it.
Status rdpmc(Cpu& c, const Insn& i) {
  if (!(c.state.cr4 & cr4::kPCE) && c.cpl() > 0) return c.fault(Vector::kGP, 0);
  if (c.vmx_non_root() && c.vmx_controls().has(proc::kRdpmcExiting)) return c.vm_exit_for(i, ExitReason::RDPMC);
  return c.fault(Vector::kGP, 0);
}

Handler select_rdmsr(const DecodeInput& in, Insn&) { return in.model.has(Feature::kMsr) ? &rdmsr : nullptr; }
Handler select_wrmsr(const DecodeInput& in, Insn&) { return in.model.has(Feature::kMsr) ? &wrmsr : nullptr; }
Handler select_rdtsc(const DecodeInput& in, Insn&) { return in.model.has(Feature::kTsc) ? &rdtsc : nullptr; }
Handler select_rdtscp(const DecodeInput& in, Insn&) { return in.model.has(Feature::kRdtscp) ? &rdtscp : nullptr; }
Handler select_rdpmc(const DecodeInput&, Insn&) { return &rdpmc; }
Handler select_rdpid(const DecodeInput& in, Insn& i) {
  if (!in.model.has(Feature::kRdpid) || !is_reg(in.ops[0])) return nullptr;
  i.reg = reg_operand(in.ops[0]);
  return in.ops[0].size == 64 ? &Rdpid<8>::run : &Rdpid<4>::run;
}

}  // namespace

void register_msr(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_RDMSR, &select_rdmsr);
  t.add(ZYDIS_MNEMONIC_WRMSR, &select_wrmsr);
  t.add(ZYDIS_MNEMONIC_RDTSC, &select_rdtsc);
  t.add(ZYDIS_MNEMONIC_RDTSCP, &select_rdtscp);
  t.add(ZYDIS_MNEMONIC_RDPID, &select_rdpid);
  t.add(ZYDIS_MNEMONIC_RDPMC, &select_rdpmc);
}

}  // namespace nestvm::cpu
