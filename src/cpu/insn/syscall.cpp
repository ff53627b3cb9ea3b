// Instruction class: SYSCALL SYSRET SYSENTER SYSEXIT.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_syscall(SelectorTable& t) {}

}  // namespace nestvm::cpu
