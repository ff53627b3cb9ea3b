// Instruction class: IN OUT.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_io(SelectorTable& t) {}

}  // namespace nestvm::cpu
