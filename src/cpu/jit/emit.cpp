#include "cpu/jit/emit.h"

#include <cstring>

namespace nestvm::cpu::jit {

ZydisRegister gpr(unsigned num, unsigned size) {
  switch (size) {
    case 8: return ZydisRegister(ZYDIS_REGISTER_RAX + num);
    case 4: return ZydisRegister(ZYDIS_REGISTER_EAX + num);
    case 2: return ZydisRegister(ZYDIS_REGISTER_AX + num);
    default: return num < 4 ? ZydisRegister(ZYDIS_REGISTER_AL + num) : ZydisRegister(ZYDIS_REGISTER_SPL + num - 4);
  }
}

ZydisMnemonic Emitter::jcc_mnemonic(unsigned cc) {
  static constexpr ZydisMnemonic kJcc[16] = {
      ZYDIS_MNEMONIC_JO, ZYDIS_MNEMONIC_JNO, ZYDIS_MNEMONIC_JB,  ZYDIS_MNEMONIC_JNB,
      ZYDIS_MNEMONIC_JZ, ZYDIS_MNEMONIC_JNZ, ZYDIS_MNEMONIC_JBE, ZYDIS_MNEMONIC_JNBE,
      ZYDIS_MNEMONIC_JS, ZYDIS_MNEMONIC_JNS, ZYDIS_MNEMONIC_JP,  ZYDIS_MNEMONIC_JNP,
      ZYDIS_MNEMONIC_JL, ZYDIS_MNEMONIC_JNL, ZYDIS_MNEMONIC_JLE, ZYDIS_MNEMONIC_JNLE,
  };
  return kJcc[cc & 15];
}

void Emitter::encode(ZydisEncoderRequest& req, const void* absolute_target) {
  if (!ok_) return;
  uint8_t tmp[ZYDIS_MAX_INSTRUCTION_LENGTH];
  ZyanUSize len = sizeof tmp;
  const ZyanStatus st =
      absolute_target ? ZydisEncoderEncodeInstructionAbsolute(&req, tmp, &len, reinterpret_cast<ZyanU64>(buf_ + pos_))
                      : ZydisEncoderEncodeInstruction(&req, tmp, &len);
  if (!ZYAN_SUCCESS(st) || pos_ + len > cap_) {
    ok_ = false;
    return;
  }
  std::memcpy(buf_ + pos_, tmp, len);
  pos_ += len;
}

void Emitter::emit(ZydisMnemonic m, std::initializer_list<Operand> ops) {
  ZydisEncoderRequest req;
  std::memset(&req, 0, sizeof req);
  req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
  req.mnemonic = m;
  for (const Operand& o : ops) req.operands[req.operand_count++] = o.z;
  encode(req, nullptr);
}

Label Emitter::label() {
  labels_.push_back(-1);
  return Label{int(labels_.size() - 1)};
}

void Emitter::bind(Label l) { labels_[l.id] = ptrdiff_t(pos_); }

const uint8_t* Emitter::address(Label l) const { return buf_ + labels_[l.id]; }

void Emitter::branch_to_label(ZydisMnemonic m, Label l) {
  ZydisEncoderRequest req;
  std::memset(&req, 0, sizeof req);
  req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
  req.mnemonic = m;
  req.branch_type = ZYDIS_BRANCH_TYPE_NEAR;
  req.branch_width = ZYDIS_BRANCH_WIDTH_32;
  req.operand_count = 1;
  req.operands[0] = imm(0).z;
  encode(req, nullptr);
  if (ok_) fixups_.push_back({pos_, l.id});
}

void Emitter::jmp(Label l) { branch_to_label(ZYDIS_MNEMONIC_JMP, l); }
void Emitter::jcc(unsigned cc, Label l) { branch_to_label(jcc_mnemonic(cc), l); }

void Emitter::jmp(const void* target) {
  ZydisEncoderRequest req;
  std::memset(&req, 0, sizeof req);
  req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
  req.mnemonic = ZYDIS_MNEMONIC_JMP;
  req.branch_type = ZYDIS_BRANCH_TYPE_NEAR;
  req.branch_width = ZYDIS_BRANCH_WIDTH_32;
  req.operand_count = 1;
  req.operands[0] = imm(int64_t(reinterpret_cast<uintptr_t>(target))).z;
  encode(req, target);
}

void Emitter::call(const void* fn) {
  emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_RAX), imm(int64_t(reinterpret_cast<uintptr_t>(fn)))});
  emit(ZYDIS_MNEMONIC_CALL, {reg(ZYDIS_REGISTER_RAX)});
}

bool Emitter::finish() {
  if (!ok_) return false;
  for (const Fixup& f : fixups_) {
    const ptrdiff_t target = labels_[f.label];
    if (target < 0) return ok_ = false;
    const int32_t rel = int32_t(target - ptrdiff_t(f.end));
    std::memcpy(buf_ + f.end - 4, &rel, 4);
  }
  fixups_.clear();
  return true;
}

}  // namespace nestvm::cpu::jit
