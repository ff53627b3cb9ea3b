// Instruction class: fast system calls. SYSCALL, SYSRET, SYSENTER, SYSEXIT (SDM Vol. 2, each
// instruction's "Operation"), with Intel's rules: SYSCALL/SYSRET exist only in 64-bit mode,
// SYSENTER/SYSEXIT in every protected mode including IA-32e mode. None of them reads a
// descriptor: CS and SS get fixed flat attributes, and the selectors come from MSRs.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

// Flat segment with a 4-GByte limit (limit FFFFFH, G = 1), accessed, present.
void load_flat(Cpu& c, SegReg s, uint16_t selector, uint32_t access_rights) {
  c.state.seg[unsigned(s)] = Segment{selector, 0, 0xffffffffu, access_rights};
}

// Execute/read code (type 11), S = 1, present, G = 1; L = 1 (D = 0) for 64-bit code, else D = 1.
constexpr uint32_t code_ar(unsigned dpl, bool l) {
  return ar::kAccessed | ar::kReadable | ar::kCode | ar::kS | (dpl << ar::kDplShift) | ar::kP |
         (l ? ar::kL : ar::kDB) | ar::kG;
}
// Read/write data (type 3), S = 1, present, B = 1, G = 1.
constexpr uint32_t data_ar(unsigned dpl) {
  return ar::kAccessed | ar::kWritable | ar::kS | (dpl << ar::kDplShift) | ar::kP | ar::kDB | ar::kG;
}

// ---- SYSCALL / SYSRET -----------------------------------------------------------------------
// The selectors only reach 64-bit mode: Zydis decodes them in every mode, and outside 64-bit
// mode Intel processors raise #UD (the selector returns nullptr).
Status syscall(Cpu& c, const Insn& i) {
  if (!(c.state.msr.efer & efer::kSCE)) return c.fault(Vector::kUD);
  const uint64_t flags = c.rflags();
  const uint16_t sel = uint16_t(c.state.msr.star >> 32);
  c.state.gpr[kRcx] = c.next_rip(i);
  c.state.gpr[kR11] = flags & ~rflags::kRF;
  load_flat(c, SegReg::kCS, sel & 0xfffc, code_ar(0, true));  // RPL forced to 0
  load_flat(c, SegReg::kSS, uint16_t(sel + 8), data_ar(0));  // "SS just above CS"
  c.set_rflags(flags & ~c.state.msr.fmask & ~rflags::kRF);
  c.state.rip = c.state.msr.lstar;
  c.refresh_mode();
  return Status::kJumped;
}

// SYSRET: REX.W returns to 64-bit mode at RCX (which must be canonical: Intel checks it at
// CPL 0, before anything changes), otherwise to compatibility mode at ECX. RFLAGS comes from
// R11 without RF, VM and the reserved bits.
template <bool k64> Status sysret(Cpu& c, const Insn&) {
  if (!(c.state.msr.efer & efer::kSCE)) return c.fault(Vector::kUD);
  if (c.cpl() != 0) return c.fault(Vector::kGP, 0);
  const uint64_t rcx = c.state.gpr[kRcx];
  if (k64 && !is_canonical(rcx)) return c.fault(Vector::kGP, 0);
  const uint16_t base = uint16_t(c.state.msr.star >> 48);
  load_flat(c, SegReg::kCS, uint16_t((k64 ? base + 16 : base) | 3), code_ar(3, k64));
  load_flat(c, SegReg::kSS, uint16_t((base + 8) | 3), data_ar(3));
  c.set_rflags((c.state.gpr[kR11] & 0x3c7fd7) | rflags::kFixed1);
  c.state.rip = k64 ? rcx : uint32_t(rcx);
  c.refresh_mode();
  return Status::kJumped;
}

Handler select_syscall(const DecodeInput& in, Insn&) {
  return in.in_64bit() && in.model.has(Feature::kSyscall) ? &syscall : nullptr;
}

Handler select_sysret(const DecodeInput& in, Insn&) {
  if (!in.in_64bit() || !in.model.has(Feature::kSyscall)) return nullptr;
  return in.zi.operand_width == 64 ? &sysret<true> : &sysret<false>;
}

// ---- SYSENTER / SYSEXIT ---------------------------------------------------------------------
// "#GP(0) if IA32_SYSENTER_CS[15:2] = 0" and in real mode.
inline bool sysenter_cs_ok(const Cpu& c) { return c.protected_mode() && (c.state.msr.sysenter_cs & 0xfffc); }

// SYSENTER enters CPL 0 from any protected mode, virtual-8086 mode included; in IA-32e mode
// it enters 64-bit mode with the full RSP/RIP from the MSRs.
Status sysenter(Cpu& c, const Insn&) {
  if (!sysenter_cs_ok(c)) return c.fault(Vector::kGP, 0);
  const bool lma = c.long_mode();
  const uint16_t cs = uint16_t(c.state.msr.sysenter_cs & 0xfffc);
  c.set_rflags(c.rflags() & ~(rflags::kVM | rflags::kIF | rflags::kRF));
  load_flat(c, SegReg::kCS, cs, code_ar(0, lma));
  load_flat(c, SegReg::kSS, uint16_t(cs + 8), data_ar(0));
  c.state.gpr[kRsp] = lma ? c.state.msr.sysenter_esp : uint32_t(c.state.msr.sysenter_esp);
  c.state.rip = lma ? c.state.msr.sysenter_eip : uint32_t(c.state.msr.sysenter_eip);
  c.refresh_mode();
  return Status::kJumped;
}

// SYSEXIT returns to CPL 3: with REX.W to 64-bit mode (CS = SYSENTER_CS + 32, RSP = RCX,
// RIP = RDX, both canonical), otherwise to 32-bit protected or compatibility mode
// (CS = SYSENTER_CS + 16, ESP = ECX, EIP = EDX). SS is CS + 8; RPLs are forced to 3.
template <bool k64> Status sysexit(Cpu& c, const Insn&) {
  if (!sysenter_cs_ok(c) || c.cpl() != 0) return c.fault(Vector::kGP, 0);
  const uint64_t rcx = c.state.gpr[kRcx], rdx = c.state.gpr[kRdx];
  if (k64 && (!is_canonical(rcx) || !is_canonical(rdx))) return c.fault(Vector::kGP, 0);
  const uint16_t cs = uint16_t((c.state.msr.sysenter_cs + (k64 ? 32 : 16)) | 3);
  load_flat(c, SegReg::kCS, cs, code_ar(3, k64));
  load_flat(c, SegReg::kSS, uint16_t(cs + 8), data_ar(3));
  c.state.gpr[kRsp] = k64 ? rcx : uint32_t(rcx);
  c.state.rip = k64 ? rdx : uint32_t(rdx);
  c.refresh_mode();
  return Status::kJumped;
}

Handler select_sysenter(const DecodeInput& in, Insn&) {
  return in.model.has(Feature::kSep) ? &sysenter : nullptr;
}

Handler select_sysexit(const DecodeInput& in, Insn&) {
  if (!in.model.has(Feature::kSep)) return nullptr;
  return in.in_64bit() && in.zi.operand_width == 64 ? &sysexit<true> : &sysexit<false>;
}

}  // namespace

void register_syscall(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_SYSCALL, &select_syscall);
  t.add(ZYDIS_MNEMONIC_SYSRET, &select_sysret);
  t.add(ZYDIS_MNEMONIC_SYSENTER, &select_sysenter);
  t.add(ZYDIS_MNEMONIC_SYSEXIT, &select_sysexit);
}

}  // namespace nestvm::cpu
