// Memory operands in generated code: the effective address (Cpu::effective_address), the
// segment range check outside 64-bit mode and the TLB fast path (cpu/memory.h), and the data
// movement forms built on them: MOV, MOVZX/MOVSX/MOVSXD, LEA, CMOVcc, SETcc.
#include "cpu/cpu.h"
#include "cpu/jit/translator.h"

namespace nestvm::cpu::jit {

namespace {
constexpr ZydisRegister RAX = ZYDIS_REGISTER_RAX, RCX = ZYDIS_REGISTER_RCX, RDX = ZYDIS_REGISTER_RDX,
                        RBX = ZYDIS_REGISTER_RBX, RSI = ZYDIS_REGISTER_RSI, R9 = ZYDIS_REGISTER_R9,
                        R12 = ZYDIS_REGISTER_R12, NONE = ZYDIS_REGISTER_NONE;
constexpr unsigned kRax = 0, kRcx = 1, kRdx = 2;

bool is_gpr(const ZydisDecodedOperand& o) {
  if (o.type != ZYDIS_OPERAND_TYPE_REGISTER) return false;
  const ZydisRegisterClass c = ZydisRegisterGetClass(o.reg.value);
  return c == ZYDIS_REGCLASS_GPR8 || c == ZYDIS_REGCLASS_GPR16 || c == ZYDIS_REGCLASS_GPR32 ||
         c == ZYDIS_REGCLASS_GPR64;
}
bool is_mem(const ZydisDecodedOperand& o) { return o.type == ZYDIS_OPERAND_TYPE_MEMORY; }
}  // namespace

// RSI = the offset of the instruction's memory operand, truncated to the address size. Uses R9.
bool Translator::effective_address() {
  const Insn& i = *i_;
  if (!(i.flags & insn_flags::kHasMem)) return false;
  if (i.base == kRegRip) {
    const int64_t d = int64_t(i.off) + i.len + i.disp;
    emit(ZYDIS_MNEMONIC_LEA, {reg(RSI), mem(R12, d, 8)});
  } else if (i.base < kRegNone) {
    emit(ZYDIS_MNEMONIC_MOV, {reg(RSI), G(i.base, 8)});
    if (i.index < kRegNone) {
      emit(ZYDIS_MNEMONIC_MOV, {reg(R9), G(i.index, 8)});
      emit(ZYDIS_MNEMONIC_LEA, {reg(RSI), mem(RSI, R9, 1u << i.scale, i.disp, 8)});
    } else if (i.disp) {
      emit(ZYDIS_MNEMONIC_LEA, {reg(RSI), mem(RSI, i.disp, 8)});
    }
  } else if (i.index < kRegNone) {
    emit(ZYDIS_MNEMONIC_MOV, {reg(R9), G(i.index, 8)});
    emit(ZYDIS_MNEMONIC_LEA, {reg(RSI), mem(NONE, R9, 1u << i.scale, i.disp, 8)});
  } else {
    emit(ZYDIS_MNEMONIC_MOV, {reg(RSI), imm(int64_t(i.disp))});
  }
  if (i.asz == 4) emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_ESI), reg(ZYDIS_REGISTER_ESI)});
  else if (i.asz == 2) emit(ZYDIS_MNEMONIC_MOVZX, {reg(ZYDIS_REGISTER_ESI), reg(ZYDIS_REGISTER_SI)});
  return true;
}

// RSI: segment offset in, host address out; jumps to `slow` where Cpu::read/write/rmw_ref would
// leave their fast path (cpu/memory.h): a segment range violation, a TLB miss, an access that
// crosses a page, a non-canonical address. Uses RAX, RCX, RDX; the host flags are lost.
void Translator::access(Access kind, unsigned size, unsigned seg, Label slow) {
  fs_.host_live = false;
  const int32_t sc = L_.seg_cache + int32_t(seg * sizeof(SegCache));
  if (!long64_) {
    auto range = [&](size_t lo, size_t hi) {
      emit(ZYDIS_MNEMONIC_CMP, {reg(RSI), C(sc + int32_t(lo), 8)});
      e_.jcc(2, slow);  // B
      emit(ZYDIS_MNEMONIC_LEA, {reg(RAX), mem(RSI, size - 1, 8)});
      emit(ZYDIS_MNEMONIC_CMP, {reg(RAX), C(sc + int32_t(hi), 8)});
      e_.jcc(7, slow);  // A
    };
    if (kind != Access::kWrite) range(offsetof(SegCache, rd_lo), offsetof(SegCache, rd_hi));
    if (kind != Access::kRead) range(offsetof(SegCache, wr_lo), offsetof(SegCache, wr_hi));
    emit(ZYDIS_MNEMONIC_ADD, {reg(RSI), C(sc + int32_t(offsetof(SegCache, base)), 8)});
    emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_ESI), reg(ZYDIS_REGISTER_ESI)});  // la_mask_
  } else if (seg == unsigned(SegReg::kFS) || seg == unsigned(SegReg::kGS)) {
    emit(ZYDIS_MNEMONIC_ADD, {reg(RSI), C(sc + int32_t(offsetof(SegCache, base)), 8)});
  }
  // Entry: tlb.e_[mmu_idx_][(la >> 12) & 511], 32 bytes each.
  emit(ZYDIS_MNEMONIC_MOV, {reg(RAX), reg(RSI)});
  emit(ZYDIS_MNEMONIC_SHR, {reg(RAX), imm(7)});
  emit(ZYDIS_MNEMONIC_AND, {reg(ZYDIS_REGISTER_EAX), imm(int32_t((kTlbSize - 1) << 5))});
  emit(ZYDIS_MNEMONIC_MOVZX, {reg(ZYDIS_REGISTER_ECX), C(L_.mmu_idx, 1)});
  emit(ZYDIS_MNEMONIC_SHL, {reg(ZYDIS_REGISTER_ECX), imm(14)});
  emit(ZYDIS_MNEMONIC_ADD, {reg(ZYDIS_REGISTER_EAX), reg(ZYDIS_REGISTER_ECX)});
  // Key: the page of the access's last byte (an access that crosses a page never matches the
  // entry of its first page) with the address-space tag.
  emit(ZYDIS_MNEMONIC_LEA, {reg(RDX), mem(RSI, size - 1, 8)});
  emit(ZYDIS_MNEMONIC_AND, {reg(RDX), imm(int32_t(kPageMask))});
  emit(ZYDIS_MNEMONIC_MOVZX, {reg(ZYDIS_REGISTER_ECX), C(L_.tlb_tag, 2)});
  emit(ZYDIS_MNEMONIC_OR, {reg(RDX), reg(RCX)});
  const size_t tag = kind == Access::kRead ? offsetof(TlbEntry, tag_read) : offsetof(TlbEntry, tag_write);
  emit(ZYDIS_MNEMONIC_CMP, {reg(RDX), mem(RBX, RAX, 1, L_.tlb_entries + int32_t(tag), 8)});
  e_.jcc(5, slow);
  if (long64_) {
    // Non-canonical addresses must not match an invalid entry (kTlbInvalid).
    emit(ZYDIS_MNEMONIC_MOV, {reg(RCX), reg(RSI)});
    emit(ZYDIS_MNEMONIC_SAR, {reg(RCX), imm(47)});
    emit(ZYDIS_MNEMONIC_ADD, {reg(RCX), imm(1)});
    emit(ZYDIS_MNEMONIC_CMP, {reg(RCX), imm(1)});
    e_.jcc(7, slow);
  }
  emit(ZYDIS_MNEMONIC_ADD, {reg(RSI), mem(RBX, RAX, 1, L_.tlb_entries + int32_t(offsetof(TlbEntry, addend)), 8)});
}

bool Translator::translate_mov(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  const ZydisDecodedOperand& d = ops[0];
  const ZydisDecodedOperand& s = ops[1];
  const unsigned n = d.size / 8;
  const Insn& i = *i_;
  if (is_gpr(d) && is_gpr(s)) {
    load(kRax, G(i.rm, n), n);
    store_guest(i.reg, n, kRax);
    return true;
  }
  if (is_gpr(d) && s.type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
    const uint64_t v = i.imm & size_mask(n);
    if (n == 8 && int64_t(v) == int64_t(int32_t(v))) {
      emit(ZYDIS_MNEMONIC_MOV, {G(i.reg, 8), imm(int64_t(v))});
    } else if (n >= 4) {
      emit(ZYDIS_MNEMONIC_MOV, {reg(RAX), imm(int64_t(v))});
      emit(ZYDIS_MNEMONIC_MOV, {G(i.reg, 8), reg(RAX)});
    } else {
      emit(ZYDIS_MNEMONIC_MOV, {G(i.reg, n), imm(int64_t(v))});
    }
    return true;
  }
  // moffs64 forms keep their address in imm (mov.cpp MovRMoffs): left to the handler.
  const ZydisDecodedOperand& m = is_mem(d) ? d : s;
  if (!is_mem(m) || (m.mem.base == ZYDIS_REGISTER_NONE && m.mem.index == ZYDIS_REGISTER_NONE &&
                     m.mem.disp.value != int64_t(i_->disp)))
    return false;
  if (is_gpr(d)) {
    effective_address();
    access(Access::kRead, n, i.seg, slow());
    load(kRax, mem(RSI, 0, n), n);
    store_guest(i.reg, n, kRax);
    return true;
  }
  if (is_gpr(s)) {
    effective_address();
    access(Access::kWrite, n, i.seg, slow());
    load(kRax, G(i.rm, n), n);
    emit(ZYDIS_MNEMONIC_MOV, {mem(RSI, 0, n), reg(gpr(kRax, n))});
    return true;
  }
  if (s.type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
    const uint64_t v = i.imm & size_mask(n);
    if (n == 8 && int64_t(v) != int64_t(int32_t(v))) return false;  // MOV r/m64 takes a simm32
    effective_address();
    access(Access::kWrite, n, i.seg, slow());
    emit(ZYDIS_MNEMONIC_MOV, {mem(RSI, 0, n), imm(n == 8 ? int64_t(v) : n == 4 ? int64_t(int32_t(uint32_t(v))) : int64_t(v))});
    return true;
  }
  return false;
}

// MOVZX/MOVSX/MOVSXD (mov.cpp extend): source of S bytes, destination of D bytes.
bool Translator::translate_extend(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  const unsigned dn = ops[0].size / 8;
  unsigned sn = ops[1].size / 8;
  if (zi.mnemonic == ZYDIS_MNEMONIC_MOVSXD && dn == 2) sn = 2;
  if (!is_gpr(ops[0]) || dn < 2 || sn > dn) return false;
  const bool sign = zi.mnemonic != ZYDIS_MNEMONIC_MOVZX;
  Operand src;
  if (is_mem(ops[1])) {
    effective_address();
    access(Access::kRead, sn, i_->seg, slow());
    src = mem(RSI, 0, sn);
  } else if (is_gpr(ops[1])) {
    src = G(i_->rm, sn);
  } else {
    return false;
  }
  if (sn == dn || (!sign && sn == 4)) load(kRax, src, sn);
  else if (!sign) emit(ZYDIS_MNEMONIC_MOVZX, {reg(dn == 8 ? RAX : ZYDIS_REGISTER_EAX), src});
  else if (sn == 4) emit(ZYDIS_MNEMONIC_MOVSXD, {reg(RAX), src});
  else emit(ZYDIS_MNEMONIC_MOVSX, {reg(dn == 8 ? RAX : ZYDIS_REGISTER_EAX), src});
  // MOVSX r32: EAX holds the 32-bit result with the upper half zero, as store_guest wants.
  store_guest(i_->reg, dn, kRax);
  return true;
}

// LEA: the effective address (already truncated to the address size), then to the operand size.
bool Translator::translate_lea(const ZydisDecodedOperand* ops) {
  const unsigned n = ops[0].size / 8;
  if (!is_gpr(ops[0]) || n < 2) return false;
  if (!effective_address()) return false;
  if (n == 4) emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_ESI), reg(ZYDIS_REGISTER_ESI)});
  store_guest(i_->reg, n, 6);
  return true;
}

// CMOVcc: the source is read (and may fault) whatever the condition; a 32-bit destination is
// written (upper half zeroed) even when the condition is false.
bool Translator::translate_cmov(const ZydisDecodedOperand* ops) {
  const unsigned n = ops[0].size / 8;
  const bool m = is_mem(ops[1]);
  if (!is_gpr(ops[0]) || n < 2 || (!m && !is_gpr(ops[1])) || !condition_without_call(i_->cond, m)) return false;
  if (m) {
    effective_address();
    access(Access::kRead, n, i_->seg, slow());
    load(kRcx, mem(RSI, 0, n), n);
  } else {
    load(kRcx, G(i_->rm, n), n);
  }
  load(kRdx, G(i_->reg, n), n);
  const unsigned cc = condition(i_->cond);
  static constexpr ZydisMnemonic kCmov[16] = {
      ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVNO, ZYDIS_MNEMONIC_CMOVB,  ZYDIS_MNEMONIC_CMOVNB,
      ZYDIS_MNEMONIC_CMOVZ, ZYDIS_MNEMONIC_CMOVNZ, ZYDIS_MNEMONIC_CMOVBE, ZYDIS_MNEMONIC_CMOVNBE,
      ZYDIS_MNEMONIC_CMOVS, ZYDIS_MNEMONIC_CMOVNS, ZYDIS_MNEMONIC_CMOVP,  ZYDIS_MNEMONIC_CMOVNP,
      ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVNL, ZYDIS_MNEMONIC_CMOVLE, ZYDIS_MNEMONIC_CMOVNLE,
  };
  emit(kCmov[cc], {reg(RDX), reg(RCX)});  // both zero-extended: a 64-bit move is exact
  store_guest(i_->reg, n, kRdx);
  return true;
}

bool Translator::translate_setcc(const ZydisDecodedOperand* ops) {
  const bool m = is_mem(ops[0]);
  if ((!m && !is_gpr(ops[0])) || !condition_without_call(i_->cond, m)) return false;
  static constexpr ZydisMnemonic kSet[16] = {
      ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETNO, ZYDIS_MNEMONIC_SETB,  ZYDIS_MNEMONIC_SETNB,
      ZYDIS_MNEMONIC_SETZ, ZYDIS_MNEMONIC_SETNZ, ZYDIS_MNEMONIC_SETBE, ZYDIS_MNEMONIC_SETNBE,
      ZYDIS_MNEMONIC_SETS, ZYDIS_MNEMONIC_SETNS, ZYDIS_MNEMONIC_SETP,  ZYDIS_MNEMONIC_SETNP,
      ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETNL, ZYDIS_MNEMONIC_SETLE, ZYDIS_MNEMONIC_SETNLE,
  };
  if (m) {
    effective_address();
    access(Access::kWrite, 1, i_->seg, slow());
    const unsigned cc = condition(i_->cond);
    emit(kSet[cc], {mem(RSI, 0, 1)});
  } else {
    const unsigned cc = condition(i_->cond);
    emit(kSet[cc], {G(i_->reg, 1)});
  }
  return true;
}

}  // namespace nestvm::cpu::jit
