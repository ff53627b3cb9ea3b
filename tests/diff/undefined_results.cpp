#include "diff/undefined_results.h"

#include "diff/operand_access.h"

namespace nestvm::diff {

namespace {

constexpr uint64_t kCF = 1u << 0, kPF = 1u << 2, kAF = 1u << 4, kZF = 1u << 6, kSF = 1u << 7, kOF = 1u << 11;

uint64_t operand_value(const InputState& in, const ZydisDecodedOperand& op) {
  if (op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE) return op.imm.value.u;
  return is_gpr(op) ? register_value(in, op.reg.value) : 0;
}

// The destination (first operand) has no defined result.
void skip_destination(const Instance& inst, const InputState& in, CompareScope& s) {
  const ZydisDecodedOperand& dst = inst.d.ops[0];
  if (is_gpr(dst)) {
    s.skip_gprs |= uint16_t(1u << slot(dst.reg.value));
  } else if (dst.type == ZYDIS_OPERAND_TYPE_MEMORY) {
    s.skip_mem_la = effective_address(in, dst, inst.d.zi.length);
    s.skip_mem_size = dst.size / 8;
  }
}

}  // namespace

CompareScope compare_scope(const Instance& inst, const InputState& in) {
  const ZydisDecodedInstruction& zi = inst.d.zi;
  const ZydisDecodedOperand* ops = inst.d.ops;
  CompareScope s;
  const uint64_t undefined = zi.cpu_flags ? zi.cpu_flags->undefined : 0;
  s.rflags_mask = kComparedFlags & ~undefined;

  switch (zi.mnemonic) {
    case ZYDIS_MNEMONIC_SHL: case ZYDIS_MNEMONIC_SHR: case ZYDIS_MNEMONIC_SAR: case ZYDIS_MNEMONIC_ROL:
    case ZYDIS_MNEMONIC_ROR: case ZYDIS_MNEMONIC_RCL: case ZYDIS_MNEMONIC_RCR: case ZYDIS_MNEMONIC_SHLD:
    case ZYDIS_MNEMONIC_SHRD: {
      // SDM Vol. 2, SAL/SAR/SHL/SHR, RCL/RCR/ROL/ROR, SHLD, SHRD: the count is masked to 5 bits
      // (6 with a 64-bit operand); a masked count of 0 affects no flags; OF is defined for a
      // masked count of 1.
      const unsigned bits = ops[0].size;
      const ZydisDecodedOperand& count_op = ops[zi.operand_count_visible - 1];
      const unsigned count = unsigned(operand_value(in, count_op) & (bits == 64 ? 0x3f : 0x1f));
      if (count == 0) {
        s.rflags_mask = kComparedFlags;
        break;
      }
      if (count == 1) s.rflags_mask |= kOF;
      // SHL/SHR: CF is undefined when the count is at least the operand width.
      if ((zi.mnemonic == ZYDIS_MNEMONIC_SHL || zi.mnemonic == ZYDIS_MNEMONIC_SHR) && count >= bits) s.rflags_mask &= ~kCF;
      // SHLD/SHRD: a count greater than the operand width leaves result and flags undefined.
      if ((zi.mnemonic == ZYDIS_MNEMONIC_SHLD || zi.mnemonic == ZYDIS_MNEMONIC_SHRD) && count > bits) {
        s.rflags_mask &= ~(kCF | kPF | kAF | kZF | kSF | kOF);
        skip_destination(inst, in, s);
      }
      break;
    }
    case ZYDIS_MNEMONIC_BSF: case ZYDIS_MNEMONIC_BSR: {
      // SDM Vol. 2, BSF/BSR: "If the content of the source operand is 0, the content of the
      // destination operand is undefined."
      const ZydisDecodedOperand& src = ops[1];
      uint64_t v = 0;
      if (src.type == ZYDIS_OPERAND_TYPE_MEMORY) {
        const uint64_t la = effective_address(in, src, inst.d.zi.length);
        for (unsigned k = 0; k < src.size / 8; ++k)
          if (in_scratch(la + k)) v |= uint64_t(in.mem[la + k - kScratch]) << (8 * k);
      } else {
        v = operand_value(in, src);
      }
      if (src.size < 64) v &= (1ull << src.size) - 1;
      if (v == 0) skip_destination(inst, in, s);
      break;
    }
    case ZYDIS_MNEMONIC_PUSH:
      // SDM Vol. 2, PUSH: a segment register pushed with a 32- or 64-bit operand size is either
      // zero-extended or written with a 16-bit move that leaves the rest of the slot unmodified.
      if (ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER && ZydisRegisterGetClass(ops[0].reg.value) == ZYDIS_REGCLASS_SEGMENT &&
          zi.operand_width > 16) {
        s.skip_mem_la = in.gpr[4] - zi.operand_width / 8 + 2;
        s.skip_mem_size = zi.operand_width / 8 - 2;
      }
      break;
    case ZYDIS_MNEMONIC_CALL:
      // A near CALL to a non-canonical target faults with RSP unchanged, but the host has
      // already stored the return address below RSP; the SDM does not say either way.
      s.fault_skip_la = in.gpr[4] - zi.operand_width / 8;
      s.fault_skip_size = zi.operand_width / 8;
      break;
    case ZYDIS_MNEMONIC_BSWAP:
      // SDM Vol. 2, BSWAP: with a 16-bit register "the result is undefined".
      if (ops[0].size == 16) skip_destination(inst, in, s);
      break;
    default:
      break;
  }
  return s;
}

}  // namespace nestvm::diff
