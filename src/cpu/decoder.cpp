#include "cpu/decoder.h"

#include "arch/segment.h"

namespace nestvm::cpu {

const SelectorTable& selector_table() {
  static const SelectorTable table = [] {
    SelectorTable t;
    register_alu(t);
    register_shift(t);
    register_muldiv(t);
    register_bcd(t);
    register_bit(t);
    register_bmi(t);
    register_mov(t);
    register_atomic(t);
    register_string(t);
    register_stack(t);
    register_branch(t);
    register_far(t);
    register_system(t);
    register_segment(t);
    register_syscall(t);
    register_msr(t);
    register_io(t);
    register_misc(t);
    register_fpu_state(t);
    register_sse_move(t);
    register_vmx(t);
    register_vmcs_shadowing(t);
    return t;
  }();
  return table;
}

uint8_t gpr_index(ZydisRegister r) {
  if (r >= ZYDIS_REGISTER_AX && r <= ZYDIS_REGISTER_R15W) return uint8_t(r - ZYDIS_REGISTER_AX);
  if (r >= ZYDIS_REGISTER_EAX && r <= ZYDIS_REGISTER_R15D) return uint8_t(r - ZYDIS_REGISTER_EAX);
  if (r >= ZYDIS_REGISTER_RAX && r <= ZYDIS_REGISTER_R15) return uint8_t(r - ZYDIS_REGISTER_RAX);
  if (r >= ZYDIS_REGISTER_AL && r <= ZYDIS_REGISTER_BL) return uint8_t(r - ZYDIS_REGISTER_AL);
  if (r >= ZYDIS_REGISTER_SPL && r <= ZYDIS_REGISTER_R15B) return uint8_t(r - ZYDIS_REGISTER_SPL + 4);
  return kRegNone;
}

uint8_t reg8_offset(ZydisRegister r) {
  if (r >= ZYDIS_REGISTER_AL && r <= ZYDIS_REGISTER_BL) return uint8_t(8 * (r - ZYDIS_REGISTER_AL));
  if (r >= ZYDIS_REGISTER_AH && r <= ZYDIS_REGISTER_BH) return uint8_t(8 * (r - ZYDIS_REGISTER_AH) + 1);
  if (r >= ZYDIS_REGISTER_SPL && r <= ZYDIS_REGISTER_R15B) return uint8_t(8 * (r - ZYDIS_REGISTER_SPL + 4));
  return 0;
}

uint8_t reg_operand(const ZydisDecodedOperand& op) {
  const ZydisRegister r = op.reg.value;
  if (r >= ZYDIS_REGISTER_AL && r <= ZYDIS_REGISTER_R15B) return reg8_offset(r);
  return gpr_index(r);
}

namespace {

uint8_t seg_of(ZydisRegister r) {
  switch (r) {
    case ZYDIS_REGISTER_ES: return uint8_t(arch::SegReg::kES);
    case ZYDIS_REGISTER_CS: return uint8_t(arch::SegReg::kCS);
    case ZYDIS_REGISTER_SS: return uint8_t(arch::SegReg::kSS);
    case ZYDIS_REGISTER_FS: return uint8_t(arch::SegReg::kFS);
    case ZYDIS_REGISTER_GS: return uint8_t(arch::SegReg::kGS);
    default: return uint8_t(arch::SegReg::kDS);
  }
}

}  // namespace

Decoder::Decoder(const CpuModel& model) : model_(model) {
  static constexpr struct { ZydisMachineMode mode; ZydisStackWidth width; } kModes[] = {
      {ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64},
      {ZYDIS_MACHINE_MODE_LONG_COMPAT_32, ZYDIS_STACK_WIDTH_32},
      {ZYDIS_MACHINE_MODE_LONG_COMPAT_16, ZYDIS_STACK_WIDTH_16},
      {ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32},
      {ZYDIS_MACHINE_MODE_LEGACY_16, ZYDIS_STACK_WIDTH_16},
      {ZYDIS_MACHINE_MODE_REAL_16, ZYDIS_STACK_WIDTH_16},
  };
  for (const auto& m : kModes) {
    ZydisDecoder& d = dec_[m.mode];
    ZydisDecoderInit(&d, m.mode, m.width);
    // Without MPX and CET, their opcodes are the hint NOPs they were before (SDM Vol. 2, NOP).
    ZydisDecoderEnableMode(&d, ZYDIS_DECODER_MODE_MPX, ZYAN_FALSE);
    ZydisDecoderEnableMode(&d, ZYDIS_DECODER_MODE_CET, ZYAN_FALSE);
    ZydisDecoderEnableMode(&d, ZYDIS_DECODER_MODE_CLDEMOTE, ZYAN_FALSE);
    // F3 0F BD / F3 0F BC are LZCNT / TZCNT only on processors that have them; else BSR / BSF.
    ZydisDecoderEnableMode(&d, ZYDIS_DECODER_MODE_LZCNT, model.has(Feature::kAbm) ? ZYAN_TRUE : ZYAN_FALSE);
    ZydisDecoderEnableMode(&d, ZYDIS_DECODER_MODE_TZCNT, model.has(Feature::kBmi1) ? ZYAN_TRUE : ZYAN_FALSE);
  }
}

DecodeError Decoder::decode(uint8_t mode, const uint8_t* bytes, size_t avail, Insn& out) const {
  ZydisDecodedInstruction zi;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  ZyanStatus st = ZydisDecoderDecodeFull(&dec_[mode], bytes, avail, &zi, ops);
  if (!ZYAN_SUCCESS(st) && mode == ZYDIS_MACHINE_MODE_REAL_16) {
    // Zydis treats SYSENTER/SYSEXIT as invalid in real mode; the processor decodes them and
    // raises #GP(0) there (SDM Vol. 2 SYSENTER, "Real-Address Mode Exceptions").
    const ZyanStatus st16 = ZydisDecoderDecodeFull(&dec_[ZYDIS_MACHINE_MODE_LEGACY_16], bytes, avail, &zi, ops);
    if (ZYAN_SUCCESS(st16) && (zi.mnemonic == ZYDIS_MNEMONIC_SYSENTER || zi.mnemonic == ZYDIS_MNEMONIC_SYSEXIT))
      st = st16;
  }
  if (!ZYAN_SUCCESS(st)) {
    if (st == ZYDIS_STATUS_NO_MORE_DATA) return avail >= 15 ? DecodeError::kTooLong : DecodeError::kNeedMore;
    if (st == ZYDIS_STATUS_INSTRUCTION_TOO_LONG) return DecodeError::kTooLong;
    return DecodeError::kUndefined;
  }
  if (zi.encoding != ZYDIS_INSTRUCTION_ENCODING_LEGACY && zi.encoding != ZYDIS_INSTRUCTION_ENCODING_VEX)
    return DecodeError::kUndefined;  // no 3DNow!, XOP, EVEX or MVEX on the models nestvm offers

  Insn i;
  i.len = zi.length;
  i.osz = uint8_t(zi.operand_width / 8 ? zi.operand_width / 8 : 1);
  i.asz = uint8_t(zi.address_width / 8);
  const auto attr = zi.attributes;
  if (attr & ZYDIS_ATTRIB_HAS_LOCK) i.flags |= insn_flags::kLock;
  if (attr & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE)) i.flags |= insn_flags::kRep;
  if (attr & ZYDIS_ATTRIB_HAS_REPNE) i.flags |= insn_flags::kRepne;
  if (attr & ZYDIS_ATTRIB_HAS_SEGMENT) i.flags |= insn_flags::kSegOverride;
  if (zi.raw.rex.W) i.flags |= insn_flags::kRexW;
  // Segment for memory operands (explicit or string source): the override or DS.
  i.seg = uint8_t(arch::SegReg::kDS);
  bool have_imm = false;
  for (unsigned k = 0; k < zi.operand_count; ++k) {
    const ZydisDecodedOperand& op = ops[k];
    if (op.type == ZYDIS_OPERAND_TYPE_MEMORY && !(i.flags & insn_flags::kHasMem) &&
        op.visibility == ZYDIS_OPERAND_VISIBILITY_EXPLICIT) {
      i.flags |= insn_flags::kHasMem;
      if (k == 0) i.flags |= insn_flags::kMemIsDst;
      i.seg = seg_of(op.mem.segment);
      const ZydisRegister b = op.mem.base;
      i.base = b == ZYDIS_REGISTER_NONE ? kRegNone
             : (b == ZYDIS_REGISTER_RIP || b == ZYDIS_REGISTER_EIP) ? kRegRip : gpr_index(b);
      i.index = op.mem.index == ZYDIS_REGISTER_NONE ? kRegNone : gpr_index(op.mem.index);
      i.scale = op.mem.scale == 8 ? 3 : op.mem.scale == 4 ? 2 : op.mem.scale == 2 ? 1 : 0;
      i.disp = int32_t(op.mem.disp.value);
      if (op.mem.disp.value != int64_t(i.disp)) i.imm = uint64_t(op.mem.disp.value);  // moffs64
    } else if (op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
      if (!have_imm) { i.imm = op.imm.value.u; have_imm = true; }
      else i.imm2 = uint16_t(op.imm.value.u);
    } else if (op.type == ZYDIS_OPERAND_TYPE_POINTER) {
      i.imm = op.ptr.offset;
      i.imm2 = op.ptr.segment;
    }
  }
  if (i.flags & insn_flags::kSegOverride) {
    // String instructions: the override applies to the source; record it from the prefix.
    for (unsigned k = 0; k < zi.operand_count; ++k)
      if (ops[k].type == ZYDIS_OPERAND_TYPE_MEMORY && ops[k].mem.base != ZYDIS_REGISTER_NONE &&
          (ops[k].mem.base == ZYDIS_REGISTER_SI || ops[k].mem.base == ZYDIS_REGISTER_ESI || ops[k].mem.base == ZYDIS_REGISTER_RSI)) {
        i.seg = seg_of(ops[k].mem.segment);
        break;
      }
  }
  switch (zi.meta.category) {
    case ZYDIS_CATEGORY_UNCOND_BR: case ZYDIS_CATEGORY_CALL: case ZYDIS_CATEGORY_RET:
    case ZYDIS_CATEGORY_INTERRUPT: case ZYDIS_CATEGORY_SYSCALL: case ZYDIS_CATEGORY_SYSRET:
    case ZYDIS_CATEGORY_SYSTEM:
      i.flags |= insn_flags::kEndsBlock;
      break;
    default:
      break;
  }
  const Selector sel = selector_table().at(zi.mnemonic);
  if (!sel) return DecodeError::kUndefined;
  const DecodeInput in{zi, ops, model_, ZydisMachineMode(mode)};
  i.fn = sel(in, i);
  if (!i.fn) return DecodeError::kUndefined;
  out = i;
  return DecodeError::kNone;
}

}  // namespace nestvm::cpu
