#include "diff/instance_gen.h"

#include <cstring>
#include <set>

#include "diff/layout.h"

namespace nestvm::diff {

namespace {

ZydisRegister gpr64(unsigned n) { return ZydisRegisterEncode(ZYDIS_REGCLASS_GPR64, uint8_t(n)); }

// A register of `cls`; often one whose number another operand already uses.
ZydisRegister pick_register(ZydisRegisterClass cls, Rng& rng, std::vector<unsigned>& used) {
  unsigned count = cls == ZYDIS_REGCLASS_GPR8 ? 20 : 16;  // GPR8 includes AH, CH, DH, BH
  unsigned id = unsigned(rng.below(count));
  if (!used.empty() && rng.chance(3, 10)) {
    const ZydisRegister same = gpr64(used[rng.below(used.size())]);
    const ZydisRegister r = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, same);
    for (unsigned k = 0; k < count; ++k)
      if (ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, ZydisRegisterEncode(cls, uint8_t(k))) == r) {
        id = k;
        break;
      }
  }
  const ZydisRegister r = ZydisRegisterEncode(cls, uint8_t(id));
  used.push_back(unsigned(ZydisRegisterGetId(ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r))));
  return r;
}

int64_t sign_extend(uint64_t v, unsigned bits) {
  return bits >= 64 ? int64_t(v) : int64_t(v << (64 - bits)) >> (64 - bits);
}

// A random memory operand: any base, often an index, any scale, a displacement of any length.
void pick_address(ZydisEncoderOperand& o, Rng& rng, std::vector<unsigned>& used) {
  if (rng.chance(1, 10)) {
    o.mem.base = ZYDIS_REGISTER_RIP;  // displacement set once the length is known
    o.mem.index = ZYDIS_REGISTER_NONE;
    o.mem.scale = 0;
    o.mem.displacement = 0;
    return;
  }
  const unsigned b = used.empty() || rng.chance(1, 2) ? unsigned(rng.below(16)) : used[rng.below(used.size())];
  o.mem.base = gpr64(b);
  used.push_back(b);
  o.mem.index = ZYDIS_REGISTER_NONE;
  o.mem.scale = 0;
  if (rng.chance(1, 2)) {
    unsigned i = rng.chance(1, 4) ? b : unsigned(rng.below(16));
    if (i == 4) i = 5;  // RSP cannot be an index
    o.mem.index = gpr64(i);
    o.mem.scale = uint8_t(1u << rng.below(4));
    used.push_back(i);
  }
  const bool rsp_based = b == 4;
  switch (rng.below(4)) {
    case 0: o.mem.displacement = 0; break;
    case 1: o.mem.displacement = rng.range(-128, 127); break;
    case 2: o.mem.displacement = rsp_based ? rng.range(-128, 127) : rng.range(-0x800, 0x800); break;
    default: o.mem.displacement = rsp_based ? rng.range(-128, 127) : int64_t(edge_value(rng) & 0x7ff) - 0x400; break;
  }
}

bool encode(const ZydisEncoderRequest& req, std::vector<uint8_t>& out) {
  uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
  ZyanUSize len = sizeof buf;
  if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, buf, &len))) return false;
  out.assign(buf, buf + len);
  return true;
}

// One random variant of the prototype's request; false if Zydis will not encode it.
bool variant(const Form& form, const ZydisDecoder& dec, Rng& rng, Instance& inst) {
  const Decoded& p = form.proto;
  ZydisEncoderRequest req;
  if (!ZYAN_SUCCESS(ZydisEncoderDecodedInstructionToEncoderRequest(&p.zi, p.ops, p.zi.operand_count_visible, &req)))
    return false;
  std::vector<unsigned> used;
  int rip_operand = -1;
  unsigned imm_index = 0;
  for (unsigned k = 0; k < req.operand_count; ++k) {
    const ZydisDecodedOperand& op = p.ops[k];
    ZydisEncoderOperand& o = req.operands[k];
    switch (op.type) {
      case ZYDIS_OPERAND_TYPE_REGISTER:
        if (op.encoding != ZYDIS_OPERAND_ENCODING_NONE) {
          const ZydisRegisterClass cls = ZydisRegisterGetClass(op.reg.value);
          if (cls >= ZYDIS_REGCLASS_GPR8 && cls <= ZYDIS_REGCLASS_GPR64) o.reg.value = pick_register(cls, rng, used);
        }
        break;
      case ZYDIS_OPERAND_TYPE_MEMORY:
        if (op.encoding == ZYDIS_OPERAND_ENCODING_DISP16_32_64) {
          // moffs: an absolute address in the scratch area.
          o.mem.displacement = int64_t(kScratch + rng.below(kScratchSize - 16));
        } else if (op.mem.type == ZYDIS_MEMOP_TYPE_MEM || op.mem.type == ZYDIS_MEMOP_TYPE_AGEN) {
          pick_address(o, rng, used);
          if (o.mem.base == ZYDIS_REGISTER_RIP) rip_operand = int(k);
        }
        break;
      case ZYDIS_OPERAND_TYPE_IMMEDIATE: {
        const unsigned width = p.zi.raw.imm[imm_index < 2 ? imm_index : 1].size;
        ++imm_index;
        if (op.encoding == ZYDIS_OPERAND_ENCODING_NONE) break;  // a fixed 1 (shift by one)
        if (op.imm.is_relative) {
          // A branch target on the code page, never the instruction itself or the next one
          // (taken and not taken must be told apart by RIP).
          const int64_t lim = width == 8 ? 127 : 0x300;
          int64_t d;
          do d = rng.range(width == 8 ? -128 : -lim, lim); while (d == 0 || (d < 0 && d > -16));
          o.imm.s = d;
        } else if (is_shift(p.zi)) {
          o.imm.u = shift_count(rng);
        } else if (p.zi.mnemonic == ZYDIS_MNEMONIC_ENTER) {
          o.imm.u = imm_index == 1 ? (rng.chance(3, 4) ? rng.below(64) : rng.below(0x10000)) : (rng.chance(3, 4) ? rng.below(4) : rng.below(256));
        } else if (p.zi.mnemonic == ZYDIS_MNEMONIC_RET) {
          o.imm.u = rng.chance(3, 4) ? rng.below(64) : rng.below(0x10000);
        } else {
          const uint64_t v = edge_value(rng);
          o.imm.s = op.imm.is_signed ? sign_extend(v, width) : int64_t(width >= 64 ? v : v & ((1ull << width) - 1));
        }
        break;
      }
      default:
        break;
    }
  }
  if (!encode(req, inst.bytes)) return false;
  if (rip_operand >= 0) {
    // RIP-relative: aim at the scratch area from the end of the instruction (always disp32, so
    // the length does not change with the value).
    const uint64_t target = kScratch + rng.below(kScratchSize - 64);
    req.operands[rip_operand].mem.displacement = int64_t(target - (kInsn + inst.bytes.size()));
    if (!encode(req, inst.bytes)) return false;
  }
  if (!decode(dec, inst.bytes.data(), inst.bytes.size(), inst.d)) return false;
  return inst.d.zi.length == inst.bytes.size() && form_key(inst.d) == form.key;
}

}  // namespace

bool is_shift(const ZydisDecodedInstruction& zi) {
  return zi.meta.category == ZYDIS_CATEGORY_SHIFT || zi.meta.category == ZYDIS_CATEGORY_ROTATE;
}

uint64_t edge_value(Rng& rng) {
  const unsigned width = 8u << rng.below(4);
  const uint64_t mask = width == 64 ? ~0ull : (1ull << width) - 1;
  uint64_t v;
  switch (rng.below(12)) {
    case 0: v = 0; break;
    case 1: v = 1; break;
    case 2: v = mask; break;                                      // -1
    case 3: v = 1ull << (width - 1); break;                       // sign bit alone
    case 4: v = (1ull << (width - 1)) - 1; break;                 // largest positive
    case 5: v = 1ull << rng.below(width); break;                  // a power of two
    case 6: v = (1ull << rng.below(width)) - 1; break;            // a run of ones
    case 7: v = uint64_t(rng.range(-16, 16)); break;              // small
    case 8: v = (1ull << (width - 1)) + uint64_t(rng.range(-2, 2)); break;
    default: return rng.next();                                   // uniform, all 64 bits
  }
  v &= mask;
  // The bits above the width: zero, ones, or random, so narrow operands see dirty upper halves.
  switch (rng.below(3)) {
    case 0: return v;
    case 1: return v | ~mask;
    default: return v | (rng.next() & ~mask);
  }
}

uint8_t shift_count(Rng& rng) {
  static constexpr uint8_t kCounts[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 255};
  return rng.chance(3, 4) ? kCounts[rng.below(sizeof kCounts)] : uint8_t(rng.next());
}

std::vector<Instance> make_instances(const Form& form, const ZydisDecoder& dec, Rng& rng, unsigned count) {
  std::vector<Instance> out;
  std::set<uint64_t> seen;  // encodings by hash (FNV-1a over the bytes)
  for (unsigned attempt = 0; attempt < count * 8 && out.size() < count; ++attempt) {
    Instance inst;
    if (!variant(form, dec, rng, inst)) continue;
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint8_t b : inst.bytes) h = (h ^ b) * 0x100000001b3ull;
    if (seen.insert(h).second) out.push_back(std::move(inst));
  }
  if (out.empty()) {
    Instance inst;
    inst.bytes = form.bytes;
    inst.d = form.proto;
    out.push_back(std::move(inst));
  }
  return out;
}

}  // namespace nestvm::diff
