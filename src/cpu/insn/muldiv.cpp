// Instruction class: MUL IMUL DIV IDIV.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_muldiv(SelectorTable& t) {}

}  // namespace nestvm::cpu
