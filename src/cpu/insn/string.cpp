// Instruction class: MOVS CMPS SCAS LODS STOS INS OUTS with REP/REPE/REPNE.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_string(SelectorTable& t) {}

}  // namespace nestvm::cpu
