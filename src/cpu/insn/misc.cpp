// Instruction class: CPUID RDRAND RDSEED fences CLFLUSH CLFLUSHOPT PAUSE UD0 UD1 UD2 PREFETCH.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_misc(SelectorTable& t) {}

}  // namespace nestvm::cpu
