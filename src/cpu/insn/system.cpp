// Instruction class: system instructions. MOV to/from CRn and DRn, LGDT/LIDT/LLDT/LTR,
// SGDT/SIDT/SLDT/STR, CLTS, LMSW, SMSW, INVLPG, INVPCID, HLT, CLI, STI, WBINVD, INVD,
// MONITOR, MWAIT, SWAPGS.
#include "cpu/insn/delegates.h"
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

// HLT: CPL 0 only; the processor stops until an interrupt, NMI or reset (SDM Vol. 2, HLT).
Status hlt(Cpu& c, const Insn& i) {
  if (c.cpl() != 0) return c.fault(Vector::kGP, 0);
  c.state.rip += i.len;
  c.state.activity = Activity::kHlt;
  return Status::kExit;
}

}  // namespace

Handler select_mov_cr(const DecodeInput&, Insn&) { return nullptr; }
Handler select_mov_dr(const DecodeInput&, Insn&) { return nullptr; }

void register_system(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_HLT, [](const DecodeInput&, Insn&) -> Handler { return &hlt; });
}

}  // namespace nestvm::cpu
