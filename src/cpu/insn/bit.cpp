// Instruction class: BT BTS BTR BTC BSF BSR POPCNT LZCNT TZCNT.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_bit(SelectorTable& t) {}

}  // namespace nestvm::cpu
