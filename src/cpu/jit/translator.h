// Translation of one decoded block into host code (used by jit.cpp only). The translator walks
// the block's Insns; Zydis decodes each instruction's bytes again to name its operation, and
// the Insn supplies the operand fields its handler uses. Common forms are emitted inline;
// everything else is a call to the handler (translate.cpp). Inline forms never change guest
// state before their last possible fault: a TLB miss or segment-check failure runs the handler
// instead ("the slow path"), which redoes the whole instruction exactly as the interpreter does.
#pragma once
#include <Zydis/Zydis.h>

#include <functional>
#include <vector>

#include "cpu/block_cache.h"
#include "cpu/jit/emit.h"
#include "cpu/jit/jit.h"
#include "cpu/lazy_flags.h"

namespace nestvm::cpu::jit {

// What the translator knows about the lazy flags at the current point of the block.
struct FlagState {
  bool known = false;      // LazyFlags::op and ::size are `op` and `size` at run time
  FlagOp op = FlagOp::kMaterialized;
  uint8_t size = 8;
  bool host_live = false;  // the host's OF SF ZF PF are the guest's (and CF when host_cf)
  bool host_cf = false;
};

// Memory access kinds of the inline fast path.
enum class Access : uint8_t { kRead, kWrite, kRmw };

class Translator {
 public:
  Translator(Jit& jit, const Block& b, Emitter& e);
  bool translate();

 private:
  // ---- translate.cpp: the block, handler calls, exits, control transfers ----------------------
  void instruction(unsigned k);
  bool inline_insn(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops);
  void set_rip_of_insn();
  void call_handler();
  Label slow();
  Label status_exit();
  void jumped_from_handler_exit();
  void mask_ip(ZydisRegister r);
  void chain(Status st, unsigned retired, bool self_loop);
  void check_target(ZydisRegister r, Label bad);
  bool direct_target(unsigned n, int64_t& rel);
  void branch_target(int64_t rel, unsigned n, Label bad);
  bool translate_jcc(const ZydisDecodedInstruction& zi);
  bool translate_jmp(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops);
  bool translate_call(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops);
  bool translate_ret(const ZydisDecodedInstruction& zi);
  bool translate_push(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops);
  bool translate_pop(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops);

  // ---- translate_mem.cpp: addresses, the TLB fast path, data movement -----------------------
  bool effective_address();
  void access(Access kind, unsigned size, unsigned seg, Label slow);
  bool translate_mov(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops);
  bool translate_extend(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops);
  bool translate_lea(const ZydisDecodedOperand* ops);
  bool translate_cmov(const ZydisDecodedOperand* ops);
  bool translate_setcc(const ZydisDecodedOperand* ops);

  // ---- translate_alu.cpp: arithmetic, lazy flags, conditions ---------------------------------
  bool translate_alu(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops);
  bool translate_unary(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops);
  bool translate_shift(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops);
  // Stores LazyFlags as Cpu::set_lazy does (a source of ZYDIS_REGISTER_NONE stores 0).
  void set_lazy(FlagOp op, unsigned size, ZydisRegister res, ZydisRegister src1, ZydisRegister src2, unsigned carry);
  static bool regenerable(FlagOp op);
  void regenerate();
  // Whether condition(cc) can be emitted without a helper call (after a memory access when
  // `after_access`, which destroys the host flags).
  bool condition_without_call(unsigned cc, bool after_access) const;
  // Makes the host flags answer condition cc; returns the host condition code to test.
  unsigned condition(unsigned cc);
  // R8 = guest CF (0 or 1).
  void carry_to_r8();

  // ---- operands -------------------------------------------------------------------------------
  // Guest GPR operand `r` (byte offset for 1-byte operands, see insn.h) of n bytes in CpuState.
  Operand G(unsigned r, unsigned n) const;
  Operand C(int32_t off, unsigned n) const { return mem(ZYDIS_REGISTER_RBX, off, n); }  // Cpu field
  Operand LF(size_t field, unsigned n) const { return C(L_.lf + int32_t(field), n); }
  // host = zero-extended n-byte value from `src` (a memory operand).
  void load(unsigned host, const Operand& src, unsigned n);
  // Guest register write with the architectural rules, from host register `host`, which holds
  // the value zero-extended from n bytes for n = 4.
  void store_guest(unsigned r, unsigned n, unsigned host);
  void emit(ZydisMnemonic m, std::initializer_list<Operand> ops) { e_.emit(m, ops); }

  Jit& jit_;
  Cpu& cpu_;
  const Block& b_;
  Emitter& e_;
  const Layout& L_;
  unsigned code_size_;   // 2, 4 or 8, from the block's decode mode
  bool long64_;
  ZydisDecoder dec_{};
  FlagState fs_;
  Label entry_;
  unsigned k_ = 0;
  const Insn* i_ = nullptr;
  Label slow_, done_, status_exit_;
  bool has_slow_ = false, has_status_exit_ = false;
  bool failed_ = false;
  std::vector<std::function<void()>> cold_;
  struct Pending { ExitRecord* rec; Label out; };
  std::vector<Pending> records_;
};

// Functions generated code calls (jit_runtime.cpp).
struct Runtime {
  // execute_block's bookkeeping for an instruction k of b that returned `st` (kNext: after it,
  // stop_block_ ended the block). Returns st.
  static uint8_t finish(Cpu* c, uint8_t st, const Block* b, uint32_t k);
  static uint8_t condition(const Cpu* c, uint32_t cc);
  static uint8_t carry(const Cpu* c);
};

}  // namespace nestvm::cpu::jit
