// Arithmetic in generated code (alu.cpp, shift.cpp): the host instruction of the same size
// computes the result, LazyFlags are stored exactly as the handlers' set_lazy stores them, and
// the translator remembers when the host's flags are the guest's, so that a following Jcc,
// SETcc or CMOVcc tests them directly (lazy_flags.h defines the same flags as the hardware).
#include <cstddef>

#include "cpu/cpu.h"
#include "cpu/jit/translator.h"

namespace nestvm::cpu::jit {

namespace {
constexpr ZydisRegister RAX = ZYDIS_REGISTER_RAX, RCX = ZYDIS_REGISTER_RCX, RSI = ZYDIS_REGISTER_RSI,
                        RDI = ZYDIS_REGISTER_RDI, RBX = ZYDIS_REGISTER_RBX, R8 = ZYDIS_REGISTER_R8,
                        R10 = ZYDIS_REGISTER_R10, R11 = ZYDIS_REGISTER_R11, NONE = ZYDIS_REGISTER_NONE;
constexpr unsigned kRax = 0, kRcx = 1, kR10 = 10;

bool is_gpr(const ZydisDecodedOperand& o) {
  if (o.type != ZYDIS_OPERAND_TYPE_REGISTER) return false;
  const ZydisRegisterClass c = ZydisRegisterGetClass(o.reg.value);
  return c == ZYDIS_REGCLASS_GPR8 || c == ZYDIS_REGCLASS_GPR16 || c == ZYDIS_REGCLASS_GPR32 ||
         c == ZYDIS_REGCLASS_GPR64;
}
bool is_mem(const ZydisDecodedOperand& o) { return o.type == ZYDIS_OPERAND_TYPE_MEMORY; }
bool is_imm(const ZydisDecodedOperand& o) { return o.type == ZYDIS_OPERAND_TYPE_IMMEDIATE; }

// Conditions that read CF: B, AE, BE, A.
bool reads_cf(unsigned cc) { return (cc >> 1) == 1 || (cc >> 1) == 3; }

// LazyFlags::op, ::size and ::carry are adjacent bytes, stored as one 32-bit word.
static_assert(offsetof(LazyFlags, size) == offsetof(LazyFlags, op) + 1 &&
              offsetof(LazyFlags, carry) == offsetof(LazyFlags, op) + 2 && sizeof(LazyFlags) >= offsetof(LazyFlags, op) + 4);
int32_t op_word(FlagOp op, unsigned size, unsigned carry) { return int32_t(uint32_t(op) | size << 8 | carry << 16); }
}  // namespace

void Translator::set_lazy(FlagOp op, unsigned size, ZydisRegister res, ZydisRegister src1, ZydisRegister src2,
                          unsigned carry) {
  emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, res), 8), reg(res)});
  if (src1 == NONE) emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, src1), 8), imm(0)});
  else emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, src1), 8), reg(src1)});
  if (src2 == NONE) emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, src2), 8), imm(0)});
  else emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, src2), 8), reg(src2)});
  if (carry <= 1) emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, op), 4), imm(op_word(op, size, carry))});
  fs_.known = true;
  fs_.op = op;
  fs_.size = uint8_t(size);
}

bool Translator::regenerable(FlagOp op) {
  switch (op) {
    case FlagOp::kAdd: case FlagOp::kSub: case FlagOp::kLogic: case FlagOp::kInc: case FlagOp::kDec:
    case FlagOp::kNeg:
      return true;
    default:
      return false;
  }
}

// Host flags = the guest's, recomputed from LazyFlags by the host instruction that defines
// them (the operands are stored zero-extended, so the sized host operation sees the guest's).
void Translator::regenerate() {
  const unsigned n = fs_.size;
  const ZydisRegister r = gpr(kR10, n);
  switch (fs_.op) {
    case FlagOp::kSub:
      emit(ZYDIS_MNEMONIC_MOV, {reg(R10), LF(offsetof(LazyFlags, src1), 8)});
      emit(ZYDIS_MNEMONIC_CMP, {reg(r), LF(offsetof(LazyFlags, src2), n)});
      break;
    case FlagOp::kAdd:
      emit(ZYDIS_MNEMONIC_MOV, {reg(R10), LF(offsetof(LazyFlags, src1), 8)});
      emit(ZYDIS_MNEMONIC_ADD, {reg(r), LF(offsetof(LazyFlags, src2), n)});
      break;
    case FlagOp::kLogic:
      emit(ZYDIS_MNEMONIC_MOV, {reg(R10), LF(offsetof(LazyFlags, res), 8)});
      emit(ZYDIS_MNEMONIC_TEST, {reg(r), reg(r)});
      break;
    case FlagOp::kInc: case FlagOp::kDec:
      // INC/DEC keep CF: load it from LazyFlags::carry first.
      emit(ZYDIS_MNEMONIC_MOVZX, {reg(ZYDIS_REGISTER_R11D), LF(offsetof(LazyFlags, carry), 1)});
      emit(ZYDIS_MNEMONIC_BT, {reg(ZYDIS_REGISTER_R11D), imm(0)});
      emit(ZYDIS_MNEMONIC_MOV, {reg(R10), LF(offsetof(LazyFlags, src1), 8)});
      emit(fs_.op == FlagOp::kInc ? ZYDIS_MNEMONIC_INC : ZYDIS_MNEMONIC_DEC, {reg(r)});
      break;
    case FlagOp::kNeg:
      emit(ZYDIS_MNEMONIC_MOV, {reg(R10), LF(offsetof(LazyFlags, src2), 8)});
      emit(ZYDIS_MNEMONIC_NEG, {reg(r)});
      break;
    default:
      return;
  }
  fs_.host_live = true;
  fs_.host_cf = true;
}

bool Translator::condition_without_call(unsigned cc, bool after_access) const {
  if (!after_access && fs_.host_live && (fs_.host_cf || !reads_cf(cc))) return true;
  return fs_.known && regenerable(fs_.op);
}

unsigned Translator::condition(unsigned cc) {
  if (fs_.host_live && (fs_.host_cf || !reads_cf(cc))) return cc;
  if (fs_.known && regenerable(fs_.op)) {
    regenerate();
    return cc;
  }
  // Cpu::condition, from whatever the lazy state is at run time.
  emit(ZYDIS_MNEMONIC_MOV, {reg(RDI), reg(RBX)});
  emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_ESI), imm(cc)});
  e_.call(reinterpret_cast<const void*>(&Runtime::condition));
  emit(ZYDIS_MNEMONIC_TEST, {reg(ZYDIS_REGISTER_AL), reg(ZYDIS_REGISTER_AL)});
  fs_.host_live = false;
  return 5;  // NZ
}

void Translator::carry_to_r8() {
  if (!(fs_.host_live && fs_.host_cf) && fs_.known && regenerable(fs_.op)) regenerate();
  if (fs_.host_live && fs_.host_cf) {
    emit(ZYDIS_MNEMONIC_SETB, {reg(ZYDIS_REGISTER_R8B)});
    emit(ZYDIS_MNEMONIC_MOVZX, {reg(ZYDIS_REGISTER_R8D), reg(ZYDIS_REGISTER_R8B)});
    return;
  }
  emit(ZYDIS_MNEMONIC_MOV, {reg(RDI), reg(RBX)});
  e_.call(reinterpret_cast<const void*>(&Runtime::carry));
  emit(ZYDIS_MNEMONIC_MOVZX, {reg(ZYDIS_REGISTER_R8D), reg(ZYDIS_REGISTER_AL)});
  fs_.host_live = false;
}

// ADD OR AND SUB XOR CMP TEST: reg/reg, reg/imm, reg/mem, mem/reg, mem/imm (alu.cpp Alu<Op>).
bool Translator::translate_alu(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  const ZydisDecodedOperand& d = ops[0];
  const ZydisDecodedOperand& s = ops[1];
  const unsigned n = d.size / 8;
  ZydisMnemonic host;
  FlagOp op;
  bool writes = true;
  switch (zi.mnemonic) {
    case ZYDIS_MNEMONIC_ADD: host = ZYDIS_MNEMONIC_ADD; op = FlagOp::kAdd; break;
    case ZYDIS_MNEMONIC_SUB: host = ZYDIS_MNEMONIC_SUB; op = FlagOp::kSub; break;
    case ZYDIS_MNEMONIC_CMP: host = ZYDIS_MNEMONIC_SUB; op = FlagOp::kSub; writes = false; break;
    case ZYDIS_MNEMONIC_AND: host = ZYDIS_MNEMONIC_AND; op = FlagOp::kLogic; break;
    case ZYDIS_MNEMONIC_TEST: host = ZYDIS_MNEMONIC_AND; op = FlagOp::kLogic; writes = false; break;
    case ZYDIS_MNEMONIC_OR: host = ZYDIS_MNEMONIC_OR; op = FlagOp::kLogic; break;
    case ZYDIS_MNEMONIC_XOR: host = ZYDIS_MNEMONIC_XOR; op = FlagOp::kLogic; break;
    default: return false;
  }
  const bool dst_reg = is_gpr(d), dst_mem = is_mem(d);
  if (!(dst_reg && (is_gpr(s) || is_mem(s) || is_imm(s))) && !(dst_mem && (is_gpr(s) || is_imm(s)))) return false;
  const ZydisRegister a = gpr(kRax, n), b = gpr(kRcx, n);
  // Operands: RAX = destination value, RCX = source, both zero-extended from n bytes.
  if (dst_mem) {
    effective_address();
    access(writes ? Access::kRmw : Access::kRead, n, i_->seg, slow());
    load(kRax, mem(RSI, 0, n), n);
  } else if (is_mem(s)) {
    effective_address();
    access(Access::kRead, n, i_->seg, slow());
    load(kRcx, mem(RSI, 0, n), n);
  }
  if (dst_reg) load(kRax, G(i_->reg, n), n);
  if (is_gpr(s)) load(kRcx, G(i_->rm, n), n);
  else if (is_imm(s)) emit(ZYDIS_MNEMONIC_MOV, {reg(RCX), imm(int64_t(i_->imm & size_mask(n)))});
  if (op == FlagOp::kLogic) {
    emit(host, {reg(a), reg(b)});
    set_lazy(op, n, RAX, NONE, NONE, 0);
  } else {
    emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, src1), 8), reg(RAX)});
    emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, src2), 8), reg(RCX)});
    emit(host, {reg(a), reg(b)});
    emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, res), 8), reg(RAX)});
    emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, op), 4), imm(op_word(op, n, 0))});
    fs_.known = true;
    fs_.op = op;
    fs_.size = uint8_t(n);
  }
  // The host result register is zero-extended from n bytes (movzx loads, 32-bit ops).
  if (writes) {
    if (dst_mem) emit(ZYDIS_MNEMONIC_MOV, {mem(RSI, 0, n), reg(a)});
    else store_guest(i_->reg, n, kRax);
  }
  fs_.host_live = true;
  fs_.host_cf = true;
  return true;
}

// INC DEC NEG NOT on a register or memory (alu.cpp Unary<Op>). INC and DEC keep CF, which they
// record in LazyFlags::carry.
bool Translator::translate_unary(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  const ZydisDecodedOperand& d = ops[0];
  const unsigned n = d.size / 8;
  if (!is_gpr(d) && !is_mem(d)) return false;
  const ZydisMnemonic m = zi.mnemonic;
  const bool incdec = m == ZYDIS_MNEMONIC_INC || m == ZYDIS_MNEMONIC_DEC;
  if (incdec) carry_to_r8();  // before anything that changes the host flags or calls out
  const ZydisRegister a = gpr(kRax, n);
  if (is_mem(d)) {
    effective_address();
    access(Access::kRmw, n, i_->seg, slow());
    load(kRax, mem(RSI, 0, n), n);
  } else {
    load(kRax, G(i_->reg, n), n);
  }
  if (m == ZYDIS_MNEMONIC_NOT) {
    emit(ZYDIS_MNEMONIC_NOT, {reg(a)});  // no flags
  } else if (m == ZYDIS_MNEMONIC_NEG) {
    emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, src2), 8), reg(RAX)});
    emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, src1), 8), imm(0)});
    emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, op), 4), imm(op_word(FlagOp::kNeg, n, 0))});
    emit(ZYDIS_MNEMONIC_NEG, {reg(a)});
    emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, res), 8), reg(RAX)});
    fs_ = {true, FlagOp::kNeg, uint8_t(n), true, true};
  } else {
    const FlagOp op = m == ZYDIS_MNEMONIC_INC ? FlagOp::kInc : FlagOp::kDec;
    emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_ECX), reg(ZYDIS_REGISTER_R8D)});
    emit(ZYDIS_MNEMONIC_SHL, {reg(ZYDIS_REGISTER_ECX), imm(16)});
    emit(ZYDIS_MNEMONIC_OR, {reg(ZYDIS_REGISTER_ECX), imm(op_word(op, n, 0))});
    emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, op), 4), reg(ZYDIS_REGISTER_ECX)});
    emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, src1), 8), reg(RAX)});
    emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, src2), 8), imm(1)});
    emit(ZYDIS_MNEMONIC_BT, {reg(ZYDIS_REGISTER_R8D), imm(0)});  // host CF = the guest's, kept by INC/DEC
    emit(op == FlagOp::kInc ? ZYDIS_MNEMONIC_INC : ZYDIS_MNEMONIC_DEC, {reg(a)});
    emit(ZYDIS_MNEMONIC_MOV, {LF(offsetof(LazyFlags, res), 8), reg(RAX)});
    fs_ = {true, op, uint8_t(n), true, true};
  }
  // 32-bit host operations zero-extend, as the guest's do.
  if (is_mem(d)) emit(ZYDIS_MNEMONIC_MOV, {mem(RSI, 0, n), reg(a)});
  else store_guest(i_->reg, n, kRax);
  return true;
}

// SHR/SAR by an immediate, SHL by 1 (shift.cpp: lazy kShr/kSar/kShl); a masked count of 0
// changes no flags but still writes a 32-bit destination. Other counts of SHL materialize the
// flags and stay with the handler.
bool Translator::translate_shift(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  const ZydisDecodedOperand& d = ops[0];
  const unsigned n = d.size / 8;
  if (!is_gpr(d) || !is_imm(ops[1])) return false;
  const unsigned count = unsigned(i_->imm) & (n == 8 ? 0x3f : 0x1f);
  const ZydisMnemonic m = zi.mnemonic;
  if (m == ZYDIS_MNEMONIC_SHL && count > 1) return false;
  if (n < 4 && count >= 8 * n) return false;  // host results for counts past the size differ
  load(kRax, G(i_->reg, n), n);
  if (count) {
    emit(ZYDIS_MNEMONIC_MOV, {reg(RCX), reg(RAX)});
    const ZydisRegister a = gpr(kRax, n);
    FlagOp op;
    if (m == ZYDIS_MNEMONIC_SHL) { emit(ZYDIS_MNEMONIC_SHL, {reg(a), imm(count)}); op = FlagOp::kShl; }
    else if (m == ZYDIS_MNEMONIC_SHR) { emit(ZYDIS_MNEMONIC_SHR, {reg(a), imm(count)}); op = FlagOp::kShr; }
    else { emit(ZYDIS_MNEMONIC_SAR, {reg(a), imm(count)}); op = FlagOp::kSar; }
    if (n < 4) emit(ZYDIS_MNEMONIC_MOVZX, {reg(ZYDIS_REGISTER_EAX), reg(a)});
    emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_EDX), imm(count)});
    set_lazy(op, n, RAX, RCX, ZYDIS_REGISTER_RDX, 0);
    fs_.host_live = false;
  }
  store_guest(i_->reg, n, kRax);
  return true;
}

}  // namespace nestvm::cpu::jit
