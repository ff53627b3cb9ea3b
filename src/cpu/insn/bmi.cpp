// Instruction class: BMI1, BMI2 and ADX: ANDN BEXTR BLSI BLSMSK BLSR BZHI MULX PDEP PEXT RORX SARX SHLX SHRX ADCX ADOX.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

void register_bmi(SelectorTable& t) {}

}  // namespace nestvm::cpu
