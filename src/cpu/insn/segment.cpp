// Instruction class: segment-register loads and descriptor instructions: MOV Sreg, POP Sreg, LDS/LES/LFS/LGS/LSS, LAR, LSL, VERR, VERW, ARPL.
#include "cpu/insn/delegates.h"
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

Handler select_mov_sreg(const DecodeInput&, Insn&) { return nullptr; }
Handler select_push_sreg(const DecodeInput&, Insn&) { return nullptr; }
Handler select_pop_sreg(const DecodeInput&, Insn&) { return nullptr; }

void register_segment(SelectorTable& t) {}

}  // namespace nestvm::cpu
