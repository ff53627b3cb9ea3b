// Event delivery through the IDT in protected, virtual-8086 and IA-32e mode (SDM Vol. 3 §6.12,
// §6.14, §21.3): gate checks, privilege changes with TSS stack switches, IST, frame layouts.
#include "cpu/memory.h"

namespace nestvm::cpu {

Status Cpu::deliver_protected(const Event& e) {
  // Not implemented yet: treated as an unrecoverable delivery failure.
  return fault(arch::Vector::kDF, 0);
}

}  // namespace nestvm::cpu
