// Instruction class: MOVAPS MOVUPS MOVDQA MOVDQU MOVD MOVQ LDMXCSR STMXCSR.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_sse_move(SelectorTable& t) {}

}  // namespace nestvm::cpu
