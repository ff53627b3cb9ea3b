// Instruction class: RDMSR WRMSR RDTSC RDTSCP RDPID RDPMC.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_msr(SelectorTable& t) {}

}  // namespace nestvm::cpu
