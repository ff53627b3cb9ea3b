// The block translator's driver: instructions in order, handler calls for the forms not
// emitted inline, the exits (execute_block's bookkeeping), and near control transfers with
// block chaining.
#include <cstddef>

#include "cpu/cpu.h"
#include "cpu/jit/translator.h"

namespace nestvm::cpu::jit {

namespace {
constexpr ZydisRegister RAX = ZYDIS_REGISTER_RAX, RCX = ZYDIS_REGISTER_RCX, RDX = ZYDIS_REGISTER_RDX,
                        RBX = ZYDIS_REGISTER_RBX, RSI = ZYDIS_REGISTER_RSI, RDI = ZYDIS_REGISTER_RDI,
                        R8 = ZYDIS_REGISTER_R8, R12 = ZYDIS_REGISTER_R12, R13 = ZYDIS_REGISTER_R13,
                        NONE = ZYDIS_REGISTER_NONE;
constexpr unsigned kRcxHost = 1, kR8Host = 8;

int64_t ptr(const void* p) { return int64_t(reinterpret_cast<uintptr_t>(p)); }

bool is_gpr(const ZydisDecodedOperand& o) {
  if (o.type != ZYDIS_OPERAND_TYPE_REGISTER) return false;
  const ZydisRegisterClass c = ZydisRegisterGetClass(o.reg.value);
  return c == ZYDIS_REGCLASS_GPR8 || c == ZYDIS_REGCLASS_GPR16 || c == ZYDIS_REGCLASS_GPR32 ||
         c == ZYDIS_REGCLASS_GPR64;
}
}  // namespace

Translator::Translator(Jit& jit, const Block& b, Emitter& e)
    : jit_(jit), cpu_(jit.cpu()), b_(b), e_(e), L_(jit.layout()) {
  const ZydisMachineMode mode = ZydisMachineMode(b.mode);
  code_size_ = mode == ZYDIS_MACHINE_MODE_LONG_64 ? 8
             : (mode == ZYDIS_MACHINE_MODE_LONG_COMPAT_32 || mode == ZYDIS_MACHINE_MODE_LEGACY_32) ? 4 : 2;
  long64_ = code_size_ == 8;
  // The decoder of cpu/decoder.cpp for this mode, to name each instruction's operation.
  const ZydisStackWidth width = code_size_ == 8 ? ZYDIS_STACK_WIDTH_64 : code_size_ == 4 ? ZYDIS_STACK_WIDTH_32 : ZYDIS_STACK_WIDTH_16;
  ZydisDecoderInit(&dec_, mode, width);
  ZydisDecoderEnableMode(&dec_, ZYDIS_DECODER_MODE_MPX, ZYAN_FALSE);
  ZydisDecoderEnableMode(&dec_, ZYDIS_DECODER_MODE_CET, ZYAN_FALSE);
  ZydisDecoderEnableMode(&dec_, ZYDIS_DECODER_MODE_CLDEMOTE, ZYAN_FALSE);
  ZydisDecoderEnableMode(&dec_, ZYDIS_DECODER_MODE_LZCNT, cpu_.model().has(Feature::kAbm) ? ZYAN_TRUE : ZYAN_FALSE);
  ZydisDecoderEnableMode(&dec_, ZYDIS_DECODER_MODE_TZCNT, cpu_.model().has(Feature::kBmi1) ? ZYAN_TRUE : ZYAN_FALSE);
}

Operand Translator::G(unsigned r, unsigned n) const {
  return mem(RBX, L_.gpr + int32_t(n == 1 ? r : r * 8), n);
}

void Translator::load(unsigned host, const Operand& src, unsigned n) {
  if (n == 8) emit(ZYDIS_MNEMONIC_MOV, {reg(gpr(host, 8)), src});
  else if (n == 4) emit(ZYDIS_MNEMONIC_MOV, {reg(gpr(host, 4)), src});
  else emit(ZYDIS_MNEMONIC_MOVZX, {reg(gpr(host, 4)), src});
}

void Translator::store_guest(unsigned r, unsigned n, unsigned host) {
  // 32-bit writes zero the upper half: the host register holds the zero-extended value.
  emit(ZYDIS_MNEMONIC_MOV, {G(r, n == 4 ? 8 : n), reg(gpr(host, n == 4 ? 8 : n))});
}

// RIP is the instruction's own address while its handler runs (as in execute_block).
void Translator::set_rip_of_insn() {
  emit(ZYDIS_MNEMONIC_LEA, {reg(RAX), mem(R12, i_->off, 8)});
  emit(ZYDIS_MNEMONIC_MOV, {C(L_.rip, 8), reg(RAX)});
}

void Translator::mask_ip(ZydisRegister r) {
  const ZydisRegister r32 = ZydisRegister(r - ZYDIS_REGISTER_RAX + ZYDIS_REGISTER_EAX);
  if (code_size_ == 4) emit(ZYDIS_MNEMONIC_MOV, {reg(r32), reg(r32)});
  else if (code_size_ == 2) emit(ZYDIS_MNEMONIC_MOVZX, {reg(r32), reg(ZydisRegister(r - ZYDIS_REGISTER_RAX + ZYDIS_REGISTER_AX))});
}

bool Translator::translate() {
  entry_ = e_.label();
  e_.bind(entry_);
  // The block is valid while its page's code generation is the one it was decoded in.
  Label stale = e_.label();
  emit(ZYDIS_MNEMONIC_MOV, {reg(RCX), imm(ptr(&b_.meta->code_gen))});
  emit(ZYDIS_MNEMONIC_CMP, {mem(RCX, 0, 4), imm(int32_t(b_.gen))});
  e_.jcc(5, stale);
  emit(ZYDIS_MNEMONIC_MOV, {C(L_.stop_block, 1), imm(0)});
  emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_R13D), C(L_.tlb_epoch, 4)});
  for (unsigned k = 0; k < b_.n && !failed_; ++k) instruction(k);
  // Fell off the end (execute_block: kNext with RIP after the last instruction).
  emit(ZYDIS_MNEMONIC_LEA, {reg(R12), mem(R12, b_.bytes, 8)});
  mask_ip(R12);
  chain(Status::kNext, b_.n, false);
  // Stale: nothing ran; the caller looks the block up again. RAX is the exit record that led
  // here (0 when entered from Cpu::run), kept so that the link can be remade.
  e_.bind(stale);
  emit(ZYDIS_MNEMONIC_MOV, {C(L_.jit_exit, 8), reg(RAX)});
  emit(ZYDIS_MNEMONIC_MOV, {C(L_.rip, 8), reg(R12)});
  emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_EAX), imm(int32_t(Status::kJumped))});
  e_.jmp(jit_.epilogue());
  for (size_t c = 0; c < cold_.size() && !failed_; ++c) cold_[c]();  // may append more
  if (failed_ || !e_.finish()) return false;
  for (const Pending& p : records_) {
    p.rec->target = e_.address(p.out);
    p.rec->epoch = ~0u;
    p.rec->rip = ~0ull;
  }
  return true;
}

void Translator::instruction(unsigned k) {
  k_ = k;
  i_ = &b_.insns[k];
  has_slow_ = has_status_exit_ = false;
  ZydisDecodedInstruction zi;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  const bool decoded = ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec_, b_.host + i_->off, b_.bytes - i_->off, &zi, ops));
  const size_t before = e_.size();
  if (!decoded || zi.length != i_->len || (i_->flags & insn_flags::kLock) || !inline_insn(zi, ops)) {
    if (e_.size() != before) { failed_ = true; return; }  // an inline form bailed out after emitting
    call_handler();
    return;
  }
  if (has_slow_) {
    e_.bind(done_);
    const FlagState after = fs_;
    const Label slow_label = slow_, done_label = done_, status = status_exit();
    const unsigned k_insn = k_;
    cold_.push_back([this, after, slow_label, done_label, status, k_insn] {
      k_ = k_insn;
      i_ = &b_.insns[k_insn];
      e_.bind(slow_label);
      set_rip_of_insn();
      emit(ZYDIS_MNEMONIC_MOV, {reg(RDI), reg(RBX)});
      emit(ZYDIS_MNEMONIC_MOV, {reg(RSI), imm(ptr(i_))});
      e_.call(reinterpret_cast<const void*>(i_->fn));
      emit(ZYDIS_MNEMONIC_TEST, {reg(ZYDIS_REGISTER_AL), reg(ZYDIS_REGISTER_AL)});
      e_.jcc(5, status);
      emit(ZYDIS_MNEMONIC_CMP, {C(L_.stop_block, 1), imm(0)});
      e_.jcc(5, status);  // AL = 0 (kNext): finish() ends the block after the instruction
      if (after.host_live) {
        const FlagState keep = fs_;
        fs_ = after;
        regenerate();
        fs_ = keep;
      }
      e_.jmp(done_label);
    });
  }
}

Label Translator::slow() {
  if (!has_slow_) {
    slow_ = e_.label();
    done_ = e_.label();
    has_slow_ = true;
  }
  return slow_;
}

// Leaves generated code with the Status in AL through Runtime::finish.
Label Translator::status_exit() {
  if (!has_status_exit_) {
    status_exit_ = e_.label();
    has_status_exit_ = true;
    const Label l = status_exit_;
    const unsigned k = k_;
    cold_.push_back([this, l, k] {
      e_.bind(l);
      emit(ZYDIS_MNEMONIC_MOVZX, {reg(ZYDIS_REGISTER_ESI), reg(ZYDIS_REGISTER_AL)});
      emit(ZYDIS_MNEMONIC_MOV, {reg(RDI), reg(RBX)});
      emit(ZYDIS_MNEMONIC_MOV, {reg(RDX), imm(ptr(&b_))});
      emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_ECX), imm(k)});
      e_.call(reinterpret_cast<const void*>(&Runtime::finish));
      e_.jmp(jit_.epilogue());
    });
  }
  return status_exit_;
}

// The instruction's handler, as execute_block calls it.
void Translator::call_handler() {
  set_rip_of_insn();
  emit(ZYDIS_MNEMONIC_MOV, {reg(RDI), reg(RBX)});
  emit(ZYDIS_MNEMONIC_MOV, {reg(RSI), imm(ptr(i_))});
  e_.call(reinterpret_cast<const void*>(i_->fn));
  fs_ = FlagState{};
  Label nonzero = e_.label();
  emit(ZYDIS_MNEMONIC_TEST, {reg(ZYDIS_REGISTER_AL), reg(ZYDIS_REGISTER_AL)});
  e_.jcc(5, nonzero);
  emit(ZYDIS_MNEMONIC_CMP, {C(L_.stop_block, 1), imm(0)});
  const Label status = status_exit();
  e_.jcc(5, status);
  const unsigned k = k_;
  cold_.push_back([this, nonzero, status, k] {
    // kJumped: the handler set RIP; chain from there as from any taken branch.
    e_.bind(nonzero);
    emit(ZYDIS_MNEMONIC_CMP, {reg(ZYDIS_REGISTER_AL), imm(int32_t(Status::kJumped))});
    e_.jcc(5, status);
    emit(ZYDIS_MNEMONIC_MOV, {reg(R12), C(L_.rip, 8)});
    mask_ip(R12);
    chain(Status::kJumped, k + 1, false);
  });
}

// Leaves the block for the one at R12 after `retired` of its instructions: straight into its
// code when this exit was linked to it in the current TLB epoch and nothing needs Cpu::run's
// attention (the checks of run()'s chaining loop), otherwise back to Cpu::run.
void Translator::chain(Status st, unsigned retired, bool self_loop) {
  Label out = e_.label();
  emit(ZYDIS_MNEMONIC_ADD, {C(L_.retired, 8), imm(retired)});
  emit(ZYDIS_MNEMONIC_CMP, {C(L_.attention, 4), imm(0)});
  e_.jcc(5, out);
  emit(ZYDIS_MNEMONIC_MOV, {reg(RAX), C(L_.retired, 8)});
  emit(ZYDIS_MNEMONIC_CMP, {reg(RAX), C(L_.stop_at, 8)});
  e_.jcc(3, out);  // AE: the budget is spent
  emit(ZYDIS_MNEMONIC_CMP, {C(L_.timer_armed, 1), imm(0)});
  e_.jcc(5, out);
  ExitRecord* rec = nullptr;
  if (self_loop) {
    // Back to this block's own start: the same block at the same RIP, valid while the epoch
    // is the one its entry saw.
    emit(ZYDIS_MNEMONIC_CMP, {reg(ZYDIS_REGISTER_R13D), C(L_.tlb_epoch, 4)});
    e_.jcc(5, out);
    e_.jmp(entry_);
  } else {
    rec = jit_.new_record();
    if (!rec) { failed_ = true; return; }
    emit(ZYDIS_MNEMONIC_MOV, {reg(RAX), imm(ptr(rec))});
    emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_ECX), C(L_.tlb_epoch, 4)});
    emit(ZYDIS_MNEMONIC_CMP, {reg(ZYDIS_REGISTER_ECX), mem(RAX, offsetof(ExitRecord, epoch), 4)});
    e_.jcc(5, out);
    emit(ZYDIS_MNEMONIC_CMP, {reg(R12), mem(RAX, offsetof(ExitRecord, rip), 8)});
    e_.jcc(5, out);
    emit(ZYDIS_MNEMONIC_JMP, {mem(RAX, offsetof(ExitRecord, target), 8)});
    records_.push_back({rec, out});
  }
  e_.bind(out);
  emit(ZYDIS_MNEMONIC_MOV, {reg(RAX), imm(ptr(rec))});
  emit(ZYDIS_MNEMONIC_MOV, {C(L_.jit_exit, 8), reg(RAX)});
  emit(ZYDIS_MNEMONIC_MOV, {C(L_.rip, 8), reg(R12)});
  emit(ZYDIS_MNEMONIC_MOV, {reg(RAX), imm(ptr(&b_))});
  emit(ZYDIS_MNEMONIC_MOV, {C(L_.jit_last, 8), reg(RAX)});
  emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_EAX), imm(int32_t(st))});
  e_.jmp(jit_.epilogue());
}

// Cpu::near_target_ok for the target in r: canonical in 64-bit mode, within the CS limit
// otherwise.
void Translator::check_target(ZydisRegister r, Label bad) {
  if (long64_) {
    emit(ZYDIS_MNEMONIC_MOV, {reg(RCX), reg(r)});
    emit(ZYDIS_MNEMONIC_SAR, {reg(RCX), imm(47)});
    emit(ZYDIS_MNEMONIC_ADD, {reg(RCX), imm(1)});
    emit(ZYDIS_MNEMONIC_CMP, {reg(RCX), imm(1)});
    e_.jcc(7, bad);  // A
  } else {
    emit(ZYDIS_MNEMONIC_CMP, {reg(r), C(L_.fetch_limit, 8)});
    e_.jcc(7, bad);
  }
}

// R12 = the target of a relative branch of operand size n (SDM Vol. 2 Jcc/JMP: truncated to
// the operand size), checked; RIP wraps to the code size as execute_block wraps it.
void Translator::branch_target(int64_t rel, unsigned n, Label bad) {
  emit(ZYDIS_MNEMONIC_LEA, {reg(R8), mem(R12, rel, 8)});
  if (n == 2) emit(ZYDIS_MNEMONIC_MOVZX, {reg(ZYDIS_REGISTER_R8D), reg(ZYDIS_REGISTER_R8W)});
  if (n == 4) emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_R8D), reg(ZYDIS_REGISTER_R8D)});
  check_target(R8, bad);
  emit(ZYDIS_MNEMONIC_MOV, {reg(R12), reg(R8)});
  mask_ip(R12);
}

// The displacement of a relative branch's target from the block's RIP.
bool Translator::direct_target(unsigned n, int64_t& rel) {
  rel = int64_t(i_->off) + i_->len + int64_t(i_->imm);
  return rel == int64_t(int32_t(rel)) && (n == 8 || n == 4 || n == 2);
}

bool Translator::translate_jcc(const ZydisDecodedInstruction& zi) {
  const unsigned n = zi.operand_width / 8;
  int64_t rel;
  if (!direct_target(n, rel)) return false;
  const unsigned cc = condition(i_->cond);
  Label taken = e_.label();
  e_.jcc(cc, taken);
  const Label bad = slow();  // the handler raises #GP(0) for a bad target
  const unsigned k = k_;
  const bool self = rel == 0 && n >= code_size_;
  cold_.push_back([this, taken, bad, rel, n, k, self] {
    e_.bind(taken);
    if (!self) branch_target(rel, n, bad);
    chain(Status::kJumped, k + 1, self);
  });
  return true;
}

bool Translator::translate_jmp(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  if (zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR || ops[0].type != ZYDIS_OPERAND_TYPE_IMMEDIATE) return false;
  const unsigned n = zi.operand_width / 8;
  int64_t rel;
  if (!direct_target(n, rel)) return false;
  const bool self = rel == 0 && n >= code_size_;
  if (!self) branch_target(rel, n, slow());
  fs_.host_live = false;
  chain(Status::kJumped, k_ + 1, self);
  return true;
}

// CALL rel in 64-bit mode: target checked, return address pushed, then RIP.
bool Translator::translate_call(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  if (!long64_ || zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR || ops[0].type != ZYDIS_OPERAND_TYPE_IMMEDIATE ||
      zi.operand_width != 64)
    return false;
  int64_t rel;
  if (!direct_target(8, rel)) return false;
  const Label s = slow();
  emit(ZYDIS_MNEMONIC_LEA, {reg(R8), mem(R12, rel, 8)});
  check_target(R8, s);
  emit(ZYDIS_MNEMONIC_MOV, {reg(RSI), G(kRsp, 8)});
  emit(ZYDIS_MNEMONIC_LEA, {reg(RSI), mem(RSI, -8, 8)});
  emit(ZYDIS_MNEMONIC_MOV, {reg(RDI), reg(RSI)});
  access(Access::kWrite, 8, unsigned(SegReg::kSS), s);
  emit(ZYDIS_MNEMONIC_LEA, {reg(RAX), mem(R12, i_->off + i_->len, 8)});
  emit(ZYDIS_MNEMONIC_MOV, {mem(RSI, 0, 8), reg(RAX)});
  emit(ZYDIS_MNEMONIC_MOV, {G(kRsp, 8), reg(RDI)});
  emit(ZYDIS_MNEMONIC_MOV, {reg(R12), reg(R8)});
  chain(Status::kJumped, k_ + 1, rel == 0);
  return true;
}

// RET / RET imm16 in 64-bit mode.
bool Translator::translate_ret(const ZydisDecodedInstruction& zi) {
  if (!long64_ || zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR || zi.operand_width != 64) return false;
  const Label s = slow();
  emit(ZYDIS_MNEMONIC_MOV, {reg(RSI), G(kRsp, 8)});
  emit(ZYDIS_MNEMONIC_MOV, {reg(RDI), reg(RSI)});
  access(Access::kRead, 8, unsigned(SegReg::kSS), s);
  emit(ZYDIS_MNEMONIC_MOV, {reg(R8), mem(RSI, 0, 8)});
  check_target(R8, s);
  emit(ZYDIS_MNEMONIC_LEA, {reg(RDI), mem(RDI, 8 + int64_t(uint16_t(i_->imm)), 8)});
  emit(ZYDIS_MNEMONIC_MOV, {G(kRsp, 8), reg(RDI)});
  emit(ZYDIS_MNEMONIC_MOV, {reg(R12), reg(R8)});
  chain(Status::kJumped, k_ + 1, false);
  return true;
}

// PUSH r64 / PUSH imm in 64-bit mode: the value is read before RSP changes (PUSH RSP pushes
// the old value).
bool Translator::translate_push(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  if (!long64_ || zi.operand_width != 64) return false;
  if (is_gpr(ops[0])) emit(ZYDIS_MNEMONIC_MOV, {reg(R8), G(i_->reg, 8)});
  else if (ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE) emit(ZYDIS_MNEMONIC_MOV, {reg(R8), imm(int64_t(i_->imm))});
  else return false;
  const Label s = slow();
  emit(ZYDIS_MNEMONIC_MOV, {reg(RSI), G(kRsp, 8)});
  emit(ZYDIS_MNEMONIC_LEA, {reg(RSI), mem(RSI, -8, 8)});
  emit(ZYDIS_MNEMONIC_MOV, {reg(RDI), reg(RSI)});
  access(Access::kWrite, 8, unsigned(SegReg::kSS), s);
  emit(ZYDIS_MNEMONIC_MOV, {mem(RSI, 0, 8), reg(R8)});
  emit(ZYDIS_MNEMONIC_MOV, {G(kRsp, 8), reg(RDI)});
  return true;
}

// POP r64 in 64-bit mode: RSP is written first, so POP RSP leaves the popped value.
bool Translator::translate_pop(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  if (!long64_ || zi.operand_width != 64 || !is_gpr(ops[0])) return false;
  const Label s = slow();
  emit(ZYDIS_MNEMONIC_MOV, {reg(RSI), G(kRsp, 8)});
  emit(ZYDIS_MNEMONIC_MOV, {reg(RDI), reg(RSI)});
  access(Access::kRead, 8, unsigned(SegReg::kSS), s);
  emit(ZYDIS_MNEMONIC_MOV, {reg(R8), mem(RSI, 0, 8)});
  emit(ZYDIS_MNEMONIC_LEA, {reg(RDI), mem(RDI, 8, 8)});
  emit(ZYDIS_MNEMONIC_MOV, {G(kRsp, 8), reg(RDI)});
  emit(ZYDIS_MNEMONIC_MOV, {G(i_->reg, 8), reg(R8)});
  return true;
}

bool Translator::inline_insn(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  switch (zi.mnemonic) {
    case ZYDIS_MNEMONIC_NOP: return true;
    case ZYDIS_MNEMONIC_MOV: return translate_mov(zi, ops);
    case ZYDIS_MNEMONIC_MOVZX: case ZYDIS_MNEMONIC_MOVSX: case ZYDIS_MNEMONIC_MOVSXD: return translate_extend(zi, ops);
    case ZYDIS_MNEMONIC_LEA: return translate_lea(ops);
    case ZYDIS_MNEMONIC_ADD: case ZYDIS_MNEMONIC_OR: case ZYDIS_MNEMONIC_AND: case ZYDIS_MNEMONIC_SUB:
    case ZYDIS_MNEMONIC_XOR: case ZYDIS_MNEMONIC_CMP: case ZYDIS_MNEMONIC_TEST:
      return translate_alu(zi, ops);
    case ZYDIS_MNEMONIC_INC: case ZYDIS_MNEMONIC_DEC: case ZYDIS_MNEMONIC_NEG: case ZYDIS_MNEMONIC_NOT:
      return translate_unary(zi, ops);
    case ZYDIS_MNEMONIC_SHL: case ZYDIS_MNEMONIC_SHR: case ZYDIS_MNEMONIC_SAR: return translate_shift(zi, ops);
    case ZYDIS_MNEMONIC_JMP: return translate_jmp(zi, ops);
    case ZYDIS_MNEMONIC_CALL: return translate_call(zi, ops);
    case ZYDIS_MNEMONIC_RET: return translate_ret(zi);
    case ZYDIS_MNEMONIC_PUSH: return translate_push(zi, ops);
    case ZYDIS_MNEMONIC_POP: return translate_pop(zi, ops);
    case ZYDIS_MNEMONIC_JO: case ZYDIS_MNEMONIC_JNO: case ZYDIS_MNEMONIC_JB: case ZYDIS_MNEMONIC_JNB:
    case ZYDIS_MNEMONIC_JZ: case ZYDIS_MNEMONIC_JNZ: case ZYDIS_MNEMONIC_JBE: case ZYDIS_MNEMONIC_JNBE:
    case ZYDIS_MNEMONIC_JS: case ZYDIS_MNEMONIC_JNS: case ZYDIS_MNEMONIC_JP: case ZYDIS_MNEMONIC_JNP:
    case ZYDIS_MNEMONIC_JL: case ZYDIS_MNEMONIC_JNL: case ZYDIS_MNEMONIC_JLE: case ZYDIS_MNEMONIC_JNLE:
      return translate_jcc(zi);
    case ZYDIS_MNEMONIC_CMOVO: case ZYDIS_MNEMONIC_CMOVNO: case ZYDIS_MNEMONIC_CMOVB: case ZYDIS_MNEMONIC_CMOVNB:
    case ZYDIS_MNEMONIC_CMOVZ: case ZYDIS_MNEMONIC_CMOVNZ: case ZYDIS_MNEMONIC_CMOVBE: case ZYDIS_MNEMONIC_CMOVNBE:
    case ZYDIS_MNEMONIC_CMOVS: case ZYDIS_MNEMONIC_CMOVNS: case ZYDIS_MNEMONIC_CMOVP: case ZYDIS_MNEMONIC_CMOVNP:
    case ZYDIS_MNEMONIC_CMOVL: case ZYDIS_MNEMONIC_CMOVNL: case ZYDIS_MNEMONIC_CMOVLE: case ZYDIS_MNEMONIC_CMOVNLE:
      return translate_cmov(ops);
    case ZYDIS_MNEMONIC_SETO: case ZYDIS_MNEMONIC_SETNO: case ZYDIS_MNEMONIC_SETB: case ZYDIS_MNEMONIC_SETNB:
    case ZYDIS_MNEMONIC_SETZ: case ZYDIS_MNEMONIC_SETNZ: case ZYDIS_MNEMONIC_SETBE: case ZYDIS_MNEMONIC_SETNBE:
    case ZYDIS_MNEMONIC_SETS: case ZYDIS_MNEMONIC_SETNS: case ZYDIS_MNEMONIC_SETP: case ZYDIS_MNEMONIC_SETNP:
    case ZYDIS_MNEMONIC_SETL: case ZYDIS_MNEMONIC_SETNL: case ZYDIS_MNEMONIC_SETLE: case ZYDIS_MNEMONIC_SETNLE:
      return translate_setcc(ops);
    default: return false;
  }
}

}  // namespace nestvm::cpu::jit
