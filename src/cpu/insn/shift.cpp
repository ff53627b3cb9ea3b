// Instruction class: SHL SHR SAR ROL ROR RCL RCR SHLD SHRD.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_shift(SelectorTable& t) {}

}  // namespace nestvm::cpu
