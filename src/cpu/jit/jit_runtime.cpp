// The C++ side of generated code: what it calls on its cold paths.
#include "cpu/cpu.h"
#include "cpu/jit/translator.h"

namespace nestvm::cpu::jit {

// Mirrors the end of Cpu::execute_block for a block left at instruction k.
uint8_t Runtime::finish(Cpu* c, uint8_t st, const Block* b, uint32_t k) {
  const Insn& i = b->insns[k];
  switch (Status(st)) {
    case Status::kNext:  // stop_block_: the instruction completed and ends the block
      c->state.rip += i.len;
      ++k;
      break;
    case Status::kEndBlock: c->state.rip += i.len; ++k; break;
    case Status::kJumped: case Status::kExit: ++k; break;
    default: break;  // kFault: the instruction did not complete
  }
  c->retired_ += k;
  c->state.rip &= c->ip_mask_;
  c->jit_last_ = b;
  c->jit_exit_ = nullptr;
  return st;
}

uint8_t Runtime::condition(const Cpu* c, uint32_t cc) { return c->condition(cc); }

uint8_t Runtime::carry(const Cpu* c) { return c->cf(); }

}  // namespace nestvm::cpu::jit
