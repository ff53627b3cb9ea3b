// Instruction class: DAA DAS AAA AAS AAM AAD.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_bcd(SelectorTable& t) {}

}  // namespace nestvm::cpu
