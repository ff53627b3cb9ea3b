// A thin x86-64 emitter over Zydis's encoder (ZydisEncoderEncodeInstruction): the translator
// names instructions and operands as the SDM does and Zydis chooses the encoding. Branches to
// labels are always rel32, resolved when their label is bound or at finish().
#pragma once
#include <Zydis/Zydis.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

namespace nestvm::cpu::jit {

struct Operand {
  ZydisEncoderOperand z{};
};

inline Operand reg(ZydisRegister r) {
  Operand o;
  o.z.type = ZYDIS_OPERAND_TYPE_REGISTER;
  o.z.reg.value = r;
  return o;
}
inline Operand imm(int64_t v) {
  Operand o;
  o.z.type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
  o.z.imm.s = v;
  return o;
}
// [base + index * scale + disp], `size` bytes (ZYDIS_REGISTER_NONE for no base or index).
inline Operand mem(ZydisRegister base, ZydisRegister index, unsigned scale, int64_t disp, unsigned size) {
  Operand o;
  o.z.type = ZYDIS_OPERAND_TYPE_MEMORY;
  o.z.mem.base = base;
  o.z.mem.index = index;
  o.z.mem.scale = uint8_t(index == ZYDIS_REGISTER_NONE ? 0 : scale);
  o.z.mem.displacement = disp;
  o.z.mem.size = uint16_t(size);
  return o;
}
inline Operand mem(ZydisRegister base, int64_t disp, unsigned size) { return mem(base, ZYDIS_REGISTER_NONE, 0, disp, size); }

// The host register `num` (0-15, SDM encoding order) as a `size`-byte register. For 1 byte,
// 4-7 are SPL BPL SIL DIL (REX forms), never AH-BH.
ZydisRegister gpr(unsigned num, unsigned size);

struct Label {
  int id = -1;
};

class Emitter {
 public:
  Emitter(uint8_t* buf, size_t cap) : buf_(buf), cap_(cap) {}

  // False once the buffer overflowed or Zydis refused an instruction; the code is then unusable.
  bool ok() const { return ok_; }
  size_t size() const { return pos_; }
  uint8_t* base() const { return buf_; }
  uint8_t* here() const { return buf_ + pos_; }

  void emit(ZydisMnemonic m, std::initializer_list<Operand> ops);

  Label label();
  void bind(Label l);
  const uint8_t* address(Label l) const;  // a bound label's address
  void jmp(Label l);
  // Jcc for the x86 condition code cc (0 = O ... 15 = NLE, SDM Vol. 1 Table B-1).
  void jcc(unsigned cc, Label l);
  void jmp(const void* target);            // rel32 to an absolute address (within +-2 GiB)
  void call(const void* fn);               // through RAX (clobbers it)
  // Resolves every branch to a label; returns ok().
  bool finish();

  static ZydisMnemonic jcc_mnemonic(unsigned cc);

 private:
  void encode(ZydisEncoderRequest& req, const void* absolute_target);
  void branch_to_label(ZydisMnemonic m, Label l);

  uint8_t* buf_;
  size_t cap_;
  size_t pos_ = 0;
  bool ok_ = true;
  std::vector<ptrdiff_t> labels_;  // bound position or -1
  struct Fixup { size_t end; int label; };
  std::vector<Fixup> fixups_;
};

}  // namespace nestvm::cpu::jit
