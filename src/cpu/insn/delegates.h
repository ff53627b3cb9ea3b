// Selectors for forms that share a Zydis mnemonic with another instruction class: the class
// that owns the mnemonic's common forms calls these for the rest.
#pragma once
#include "cpu/decoder.h"

namespace nestvm::cpu {

// far.cpp: JMP/CALL/RET whose zi.meta.branch_type is ZYDIS_BRANCH_TYPE_FAR (ptr16:xx, m16:xx, RETF).
Handler select_far_transfer(const DecodeInput& in, Insn& i);
// segment.cpp: MOV to/from a segment register, PUSH/POP of a segment register.
Handler select_mov_sreg(const DecodeInput& in, Insn& i);
Handler select_push_sreg(const DecodeInput& in, Insn& i);
Handler select_pop_sreg(const DecodeInput& in, Insn& i);
// system.cpp: MOV to/from CR0-CR8 and DR0-DR7.
Handler select_mov_cr(const DecodeInput& in, Insn& i);
Handler select_mov_dr(const DecodeInput& in, Insn& i);
// string.cpp: the string forms of MOVSD and CMPSD (no visible operands); the SSE2 forms of the
// same mnemonics belong to the SSE classes, whose selectors call these for the string forms.
Handler select_movsd_string(const DecodeInput& in, Insn& i);
Handler select_cmpsd_string(const DecodeInput& in, Insn& i);

}  // namespace nestvm::cpu
