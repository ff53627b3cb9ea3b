// Instruction class: far JMP/CALL/RET, IRET, INT n/INT3/INTO/INT1.
#include "cpu/insn/delegates.h"
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

Handler select_far_transfer(const DecodeInput&, Insn&) { return nullptr; }

void register_far(SelectorTable& t) {}

}  // namespace nestvm::cpu
