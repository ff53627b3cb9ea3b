// Instruction class: FXSAVE FXRSTOR XSAVE XSAVEOPT XRSTOR XGETBV XSETBV FNINIT FNSTSW FNSTCW FLDCW FWAIT EMMS.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_fpu_state(SelectorTable& t) {}

}  // namespace nestvm::cpu
