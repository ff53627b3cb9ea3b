// Instruction class: XADD CMPXCHG CMPXCHG8B CMPXCHG16B.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_atomic(SelectorTable& t) {}

}  // namespace nestvm::cpu
