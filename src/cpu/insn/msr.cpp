// Instruction class: RDMSR WRMSR RDTSC RDTSCP RDPID RDPMC (SDM Vol. 2, each instruction's
// "Operation" and "Protected Mode Exceptions"). The MSRs themselves are in cpu/msr_file.cpp.
#include "cpu/insn/operand.h"
#include "cpu/msr_file.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

// EDX:EAX <- v, each write zero-extending into RDX/RAX.
void set_edx_eax(Cpu& c, uint64_t v) {
  c.set_reg(4, kRax, uint32_t(v));
  c.set_reg(4, kRdx, uint32_t(v >> 32));
}

// RDMSR/WRMSR: CPL 0 only (virtual-8086 mode runs at CPL 3); ECX selects the MSR.
Status rdmsr(Cpu& c, const Insn&) {
  if (c.cpl() != 0) return c.fault(Vector::kGP, 0);
  uint64_t v;
  if (read_msr(c, uint32_t(c.state.gpr[kRcx]), v) != MsrResult::kOk) return c.fault(Vector::kGP, 0);
  set_edx_eax(c, v);
  return Status::kNext;
}

Status wrmsr(Cpu& c, const Insn&) {
  if (c.cpl() != 0) return c.fault(Vector::kGP, 0);
  const uint64_t v = (c.state.gpr[kRdx] << 32) | uint32_t(c.state.gpr[kRax]);
  if (write_msr(c, uint32_t(c.state.gpr[kRcx]), v) != MsrResult::kOk) return c.fault(Vector::kGP, 0);
  return Status::kEndBlock;  // EFER, segment bases, ...: WRMSR is serializing anyway
}

// RDTSC/RDTSCP: #GP(0) if CR4.TSD = 1 and CPL > 0 (in protected mode; real mode is CPL 0).
bool tsc_denied(const Cpu& c) { return (c.state.cr4 & cr4::kTSD) && c.cpl() > 0; }

Status rdtsc(Cpu& c, const Insn&) {
  if (tsc_denied(c)) return c.fault(Vector::kGP, 0);
  set_edx_eax(c, guest_tsc(c));
  return Status::kNext;
}

Status rdtscp(Cpu& c, const Insn&) {
  if (tsc_denied(c)) return c.fault(Vector::kGP, 0);
  set_edx_eax(c, guest_tsc(c));
  c.set_reg(4, kRcx, uint32_t(c.state.msr.tsc_aux));
  return Status::kNext;
}

// RDPID r32/r64: IA32_TSC_AUX at any privilege level (64-bit operand in 64-bit mode).
template <unsigned N> struct Rdpid {
  static Status run(Cpu& c, const Insn& i) {
    c.set_reg(N, i.reg, c.state.msr.tsc_aux);
    return Status::kNext;
  }
};

// RDPMC: nestvm's models have no performance-monitoring counters (CPUID.0AH reports none), so
// no ECX value selects a valid counter, and "#GP(0) if ECX does not specify a valid counter"
// applies before the CR4.PCE/CPL test would matter.
Status rdpmc(Cpu& c, const Insn&) { return c.fault(Vector::kGP, 0); }

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
