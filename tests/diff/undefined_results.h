// What an instruction leaves undefined for given inputs, and so what the comparison skips:
// the RFLAGS bits Zydis's tables mark undefined, refined by the count- and operand-dependent
// rules of the SDM that a per-instruction table cannot express (a zero count changes no flags,
// OF is defined for one-bit shifts, CF after SHL/SHR by the operand width or more is not, BSF/BSR
// of zero and BSWAP of a 16-bit register leave the destination undefined, SHLD/SHRD past the
// operand width leave destination and flags undefined).
#pragma once
#include "diff/instance_gen.h"
#include "diff/machine_state.h"
#include "diff/outcome_compare.h"

namespace nestvm::diff {

CompareScope compare_scope(const Instance& inst, const InputState& in);

}  // namespace nestvm::diff
