// Decoding: Zydis turns bytes into a decoded instruction; a selector chosen by mnemonic turns
// that into the core's Insn (handler + operand fields). Each instruction-class file in
// cpu/insn/ registers the selectors for its mnemonics.
#pragma once
#include <Zydis/Zydis.h>

#include <array>
#include <cstddef>
#include <cstdint>

#include "cpu/cpu_model.h"
#include "cpu/insn.h"

namespace nestvm::cpu {

// What a selector sees: Zydis's full decode of the instruction and the CPU model.
struct DecodeInput {
  const ZydisDecodedInstruction& zi;
  const ZydisDecodedOperand* ops;  // zi.operand_count operands, visible ones first
  const CpuModel& model;
  ZydisMachineMode mode;
  bool in_64bit() const { return mode == ZYDIS_MACHINE_MODE_LONG_64; }
  unsigned visible() const { return zi.operand_count_visible; }
};

// Returns the handler for the exact form and fills the form-specific Insn fields, or nullptr
// when the form is not supported by the model (the instruction then raises #UD).
using Selector = Handler (*)(const DecodeInput& in, Insn& out);

class SelectorTable {
 public:
  void add(ZydisMnemonic m, Selector s) { table_[m] = s; }
  Selector at(ZydisMnemonic m) const { return m <= ZYDIS_MNEMONIC_MAX_VALUE ? table_[m] : nullptr; }

 private:
  std::array<Selector, ZYDIS_MNEMONIC_MAX_VALUE + 1> table_{};
};

// The table with every instruction class registered (built once).
const SelectorTable& selector_table();

enum class DecodeError : uint8_t {
  kNone,
  kUndefined,  // #UD: not a valid instruction (or not one this model implements)
  kTooLong,    // #GP(0): longer than 15 bytes
  kNeedMore,   // the bytes ended inside the instruction
};

class Decoder {
 public:
  explicit Decoder(const CpuModel& model);
  // Decodes one instruction for `mode` (a ZydisMachineMode).
  DecodeError decode(uint8_t mode, const uint8_t* bytes, size_t avail, Insn& out) const;

 private:
  const CpuModel& model_;
  std::array<ZydisDecoder, ZYDIS_MACHINE_MODE_MAX_VALUE + 1> dec_{};
};

// ---- helpers for selectors -------------------------------------------------------------
// GPR number 0-15 of a 16/32/64-bit Zydis register.
uint8_t gpr_index(ZydisRegister r);
// Byte offset into the GPR array of an 8-bit Zydis register (AH = 1, CH = 9, ...).
uint8_t reg8_offset(ZydisRegister r);
// The encoding of a register operand in Insn::reg/rm for an operand of its size.
uint8_t reg_operand(const ZydisDecodedOperand& op);
inline bool is_reg(const ZydisDecodedOperand& op) { return op.type == ZYDIS_OPERAND_TYPE_REGISTER; }
inline bool is_mem(const ZydisDecodedOperand& op) { return op.type == ZYDIS_OPERAND_TYPE_MEMORY; }
inline bool is_imm(const ZydisDecodedOperand& op) { return op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE; }
// Index 0-3 for operand sizes 1, 2, 4, 8 bytes.
inline unsigned size_index(unsigned bytes) { return bytes == 1 ? 0 : bytes == 2 ? 1 : bytes == 4 ? 2 : 3; }

// Registration functions, one per instruction-class file in cpu/insn/.
void register_alu(SelectorTable&);
void register_shift(SelectorTable&);
void register_muldiv(SelectorTable&);
void register_bcd(SelectorTable&);
void register_bit(SelectorTable&);
void register_bmi(SelectorTable&);
void register_mov(SelectorTable&);
void register_atomic(SelectorTable&);
void register_string(SelectorTable&);
void register_stack(SelectorTable&);
void register_branch(SelectorTable&);
void register_far(SelectorTable&);
void register_system(SelectorTable&);
void register_segment(SelectorTable&);
void register_syscall(SelectorTable&);
void register_msr(SelectorTable&);
void register_io(SelectorTable&);
void register_misc(SelectorTable&);
void register_fpu_state(SelectorTable&);
void register_sse_move(SelectorTable&);
// cpu/vmx/vmx_instructions.cpp: the VMX instructions executed by guest code.
void register_vmx(SelectorTable&);
// cpu/vmx/vmcs_shadowing.cpp: VMREAD and VMWRITE.
void register_vmcs_shadowing(SelectorTable&);

}  // namespace nestvm::cpu
