// The VM-exit instruction-information field (VMX_INSTRUCTION_INFO) for the instructions that
// report one (SDM Vol. 3 §28.2.4, "Information for VM Exits Due to Instruction Execution", the
// tables "Format of the VM-Exit Instruction-Information Field as Used for ..."). Every memory
// format shares the layout of its operand's addressing; the tables differ in the bits around it.
#pragma once
#include <cstdint>

namespace nestvm::arch::insn_info {

// Address size (bits 9:7) and operand size (RDRAND/RDSEED bits 12:11): 0 = 16, 1 = 32, 2 = 64 bits.
constexpr uint32_t size_code(unsigned bytes) { return bytes == 2 ? 0 : bytes == 4 ? 1 : 2; }

// A memory operand as the formats describe it: segment register in the VMX order (ES = 0 ... GS
// = 5), base and index as GPR numbers 0-15 or -1 for none, scale as log2 of the factor.
struct MemOperand {
  unsigned scale = 0;
  unsigned address_size = 8;  // bytes
  unsigned segment = 3;
  int base = -1;
  int index = -1;
};

// Bits 1:0 scaling, 9:7 address size, 10 = 0 (memory), 17:15 segment, 21:18 index register,
// 22 index invalid, 26:23 base register, 27 base invalid. The scaling is 0 without an index
// (the field is "undefined" then; hardware stores 0).
constexpr uint32_t memory(const MemOperand& m) {
  uint32_t v = (size_code(m.address_size) << 7) | (m.segment << 15);
  if (m.index >= 0) v |= (m.scale & 3) | (uint32_t(m.index) << 18);
  else v |= 1u << 22;
  if (m.base >= 0) v |= uint32_t(m.base) << 23;
  else v |= 1u << 27;
  return v;
}

// Bit 10 in the LLDT/LTR/SLDT/STR format: the operand is a register (Reg1 in bits 6:3).
inline constexpr uint32_t kRegisterOperand = 1u << 10;
constexpr uint32_t reg1(unsigned gpr) { return (gpr & 0xf) << 3; }
// INVEPT, INVPCID, INVVPID (and VMREAD/VMWRITE): Reg2 in bits 31:28.
constexpr uint32_t reg2(unsigned gpr) { return (gpr & 0xf) << 28; }

// LGDT/LIDT/SGDT/SIDT: bit 11 operand size (0 = 16-bit, 1 = 32-bit), bits 29:28 identity.
enum class DescriptorTableInsn : uint32_t { kSgdt = 0, kSidt = 1, kLgdt = 2, kLidt = 3 };
inline constexpr uint32_t kOperandSize32 = 1u << 11;
constexpr uint32_t identity(DescriptorTableInsn id) { return uint32_t(id) << 28; }
// LLDT/LTR/SLDT/STR: bits 29:28 identity.
enum class SystemSelectorInsn : uint32_t { kSldt = 0, kStr = 1, kLldt = 2, kLtr = 3 };
constexpr uint32_t identity(SystemSelectorInsn id) { return uint32_t(id) << 28; }

// RDRAND/RDSEED: destination register in bits 6:3, operand size in bits 12:11.
constexpr uint32_t rdrand(unsigned gpr, unsigned operand_bytes) { return reg1(gpr) | (size_code(operand_bytes) << 11); }

// INS/OUTS (when IA32_VMX_BASIC[54] = 1): address size in bits 9:7, segment in bits 17:15
// (undefined for INS, whose operand is always ES).
constexpr uint32_t string_io(unsigned address_bytes, unsigned segment) {
  return (size_code(address_bytes) << 7) | (segment << 15);
}

}  // namespace nestvm::arch::insn_info
