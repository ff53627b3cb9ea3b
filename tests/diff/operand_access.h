// Reading an instance's operands out of an input state: which GPR slot a Zydis register lives in,
// the value of a register operand, a memory operand's effective address.
#pragma once
#include <Zydis/Zydis.h>

#include <cstdint>

#include "diff/layout.h"
#include "diff/machine_state.h"

namespace nestvm::diff {

inline bool is_gpr(ZydisRegister r) {
  const ZydisRegisterClass c = ZydisRegisterGetClass(r);
  return c >= ZYDIS_REGCLASS_GPR8 && c <= ZYDIS_REGCLASS_GPR64;
}
inline bool is_gpr(const ZydisDecodedOperand& op) { return op.type == ZYDIS_OPERAND_TYPE_REGISTER && is_gpr(op.reg.value); }
inline bool is_high_byte(ZydisRegister r) { return r >= ZYDIS_REGISTER_AH && r <= ZYDIS_REGISTER_BH; }

// GPR number 0-15 of a general-purpose register of any width.
inline unsigned slot(ZydisRegister r) {
  return unsigned(ZydisRegisterGetId(ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r)));
}

// A GPR operand's value, right-aligned (AH..BH shifted down), not truncated.
inline uint64_t register_value(const InputState& in, ZydisRegister r) {
  const uint64_t v = in.gpr[slot(r)];
  return is_high_byte(r) ? v >> 8 : v;
}

// The linear address of a memory operand of an instruction of length `len` at kInsn.
inline uint64_t effective_address(const InputState& in, const ZydisDecodedOperand& op, unsigned len) {
  uint64_t la = uint64_t(op.mem.disp.value);
  if (op.mem.base == ZYDIS_REGISTER_RIP) la += kInsn + len;
  else if (op.mem.base != ZYDIS_REGISTER_NONE) la += in.gpr[slot(op.mem.base)];
  if (op.mem.index != ZYDIS_REGISTER_NONE) la += in.gpr[slot(op.mem.index)] * op.mem.scale;
  return la;
}

}  // namespace nestvm::diff
