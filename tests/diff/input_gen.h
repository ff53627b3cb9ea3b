// Random input states for one instance: GPRs and memory biased toward edge values, random status
// flags and direction, and then the constraints that keep the run meaningful: the stack pointer
// and every pointer the instruction dereferences land in the scratch area (explicit memory
// operands are solved for their base/index registers), string counts stay small, shift counts,
// divisors and compare-exchange operands lean toward the interesting cases, and indirect branch
// targets land on the code page.
#pragma once
#include "diff/instance_gen.h"
#include "diff/machine_state.h"
#include "diff/rng.h"

namespace nestvm::diff {

// Whether the host may run an instruction that accesses [la, la + len): false when that memory
// is mapped in the test process outside the test region (the access would succeed natively,
// fault in the core, and scribble on the host).
using AddressCheck = bool (*)(uint64_t la, uint64_t len);

class InputGen {
 public:
  InputGen(const Instance& inst, Rng& rng, AddressCheck safe) : inst_(inst), rng_(rng), safe_(safe) {}
  void next(InputState& in);

 private:
  void draw(InputState& in);
  bool safe_for_host(const InputState& in) const;
  uint16_t address_registers() const;
  uint64_t& reg(InputState& in, ZydisRegister r);
  uint64_t read_operand(const InputState& in, const ZydisDecodedOperand& op) const;
  void write_mem(InputState& in, uint64_t la, uint64_t v, unsigned size);
  uint64_t scratch_target(unsigned size, bool allow_edges);
  void place_memory_operand(InputState& in, const ZydisDecodedOperand& op);
  void string_policy(InputState& in);
  void divide_policy(InputState& in);
  void compare_exchange_policy(InputState& in);
  void branch_target_policy(InputState& in);

  const Instance& inst_;
  Rng& rng_;
  AddressCheck safe_;
};

}  // namespace nestvm::diff
