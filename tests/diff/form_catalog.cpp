#include "diff/form_catalog.h"

#include <algorithm>
#include <cstring>
#include <map>

namespace nestvm::diff {

namespace {

// "m32", "imm8": built by appending (GCC 12 misreports "literal" + std::string under -Wrestrict).
std::string with_number(const char* prefix, long n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

const char* register_class_kind(ZydisRegister r) {
  switch (ZydisRegisterGetClass(r)) {
    case ZYDIS_REGCLASS_GPR8: return "r8";
    case ZYDIS_REGCLASS_GPR16: return "r16";
    case ZYDIS_REGCLASS_GPR32: return "r32";
    case ZYDIS_REGCLASS_GPR64: return "r64";
    case ZYDIS_REGCLASS_SEGMENT: return "sreg";
    case ZYDIS_REGCLASS_X87: return "st";
    case ZYDIS_REGCLASS_MMX: return "mm";
    case ZYDIS_REGCLASS_XMM: return "xmm";
    case ZYDIS_REGCLASS_YMM: return "ymm";
    case ZYDIS_REGCLASS_ZMM: return "zmm";
    case ZYDIS_REGCLASS_TMM: return "tmm";
    case ZYDIS_REGCLASS_CONTROL: return "cr";
    case ZYDIS_REGCLASS_DEBUG: return "dr";
    case ZYDIS_REGCLASS_MASK: return "k";
    case ZYDIS_REGCLASS_BOUND: return "bnd";
    default: return "reg";
  }
}

// One visible operand's kind: an encoded register by class and size, a fixed register by name,
// memory by size (moffs and address-only forms marked), an immediate by its encoded width.
std::string operand_kind(const Decoded& d, const ZydisDecodedOperand& op, unsigned& imm_index) {
  switch (op.type) {
    case ZYDIS_OPERAND_TYPE_REGISTER:
      if (op.encoding == ZYDIS_OPERAND_ENCODING_NONE) return ZydisRegisterGetString(op.reg.value);
      return register_class_kind(op.reg.value);
    case ZYDIS_OPERAND_TYPE_MEMORY:
      if (op.mem.type == ZYDIS_MEMOP_TYPE_AGEN) return "m";
      if (op.mem.type == ZYDIS_MEMOP_TYPE_MIB) return "mib";
      if (op.encoding == ZYDIS_OPERAND_ENCODING_DISP16_32_64) return with_number("moffs", op.size);
      return with_number("m", op.size);
    case ZYDIS_OPERAND_TYPE_POINTER:
      return with_number("ptr16:", op.size - 16);
    case ZYDIS_OPERAND_TYPE_IMMEDIATE: {
      const unsigned width = imm_index < 2 ? d.zi.raw.imm[imm_index].size : 0;
      ++imm_index;
      if (op.encoding == ZYDIS_OPERAND_ENCODING_NONE) return std::to_string(op.imm.value.s);
      return with_number(op.imm.is_relative ? "rel" : "imm", width);
    }
    default:
      return "?";
  }
}

struct Candidate {
  uint8_t bytes[32];
  size_t len;
  uint8_t prefixes;  // legacy and REX prefix bytes placed before the opcode
};

// Legacy-encoding candidates: [66] [F2|F3] [REX.W] [0F [38|3A]] opcode ModRM, then zeros for any
// SIB, displacement or immediate the form needs.
template <typename Visit>
void enumerate_legacy(Visit&& visit) {
  static const std::vector<uint8_t> kPrefixes[] = {{}, {0x66}, {0xf2}, {0xf3}, {0x66, 0xf2}, {0x66, 0xf3}};
  static const std::vector<uint8_t> kMaps[] = {{}, {0x0f}, {0x0f, 0x38}, {0x0f, 0x3a}};
  for (const auto& map : kMaps)
    for (const auto& pfx : kPrefixes)
      for (int rex_w = 0; rex_w < 2; ++rex_w)
        for (int opcode = 0; opcode < 256; ++opcode) {
          Candidate c{};
          size_t n = 0;
          for (uint8_t b : pfx) c.bytes[n++] = b;
          if (rex_w) c.bytes[n++] = 0x48;
          c.prefixes = uint8_t(n);
          for (uint8_t b : map) c.bytes[n++] = b;
          c.bytes[n++] = uint8_t(opcode);
          c.len = n + 1 + 16;
          visit(c, n);  // ModRM goes at bytes[n]
        }
}

// VEX-encoding candidates (3-byte VEX, maps 0F/0F38/0F3A, L = 0, W = 0/1, every pp), which is
// where the general-purpose BMI1/BMI2 forms live.
template <typename Visit>
void enumerate_vex(Visit&& visit) {
  for (int map = 1; map <= 3; ++map)
    for (int w = 0; w < 2; ++w)
      for (int pp = 0; pp < 4; ++pp)
        for (int opcode = 0; opcode < 256; ++opcode) {
          Candidate c{};
          c.bytes[0] = 0xc4;
          c.bytes[1] = uint8_t(0xe0 | map);             // R, X, B inverted: no extension
          c.bytes[2] = uint8_t((w << 7) | 0x78 | pp);   // vvvv = 1111: register 0 or unused
          c.bytes[3] = uint8_t(opcode);
          c.len = 4 + 1 + 16;
          visit(c, 4);
        }
}

}  // namespace

ZydisDecoder make_decoder() {
  ZydisDecoder dec;
  ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  ZydisDecoderEnableMode(&dec, ZYDIS_DECODER_MODE_MPX, ZYAN_FALSE);
  ZydisDecoderEnableMode(&dec, ZYDIS_DECODER_MODE_CET, ZYAN_FALSE);
  ZydisDecoderEnableMode(&dec, ZYDIS_DECODER_MODE_CLDEMOTE, ZYAN_FALSE);
  ZydisDecoderEnableMode(&dec, ZYDIS_DECODER_MODE_LZCNT, ZYAN_TRUE);
  ZydisDecoderEnableMode(&dec, ZYDIS_DECODER_MODE_TZCNT, ZYAN_TRUE);
  return dec;
}

bool decode(const ZydisDecoder& dec, const uint8_t* bytes, size_t len, Decoded& out) {
  return ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, bytes, len, &out.zi, out.ops));
}

std::string form_name(const Decoded& d) {
  const ZydisDecodedInstruction& zi = d.zi;
  std::string key;
  if (zi.attributes & ZYDIS_ATTRIB_HAS_LOCK) key += "lock ";
  if (zi.attributes & ZYDIS_ATTRIB_HAS_REP) key += "rep ";
  if (zi.attributes & ZYDIS_ATTRIB_HAS_REPE) key += "repe ";
  if (zi.attributes & ZYDIS_ATTRIB_HAS_REPNE) key += "repne ";
  key += ZydisMnemonicGetString(zi.mnemonic);
  unsigned imm_index = 0;
  for (unsigned k = 0; k < zi.operand_count_visible; ++k) {
    const ZydisDecodedOperand& op = d.ops[k];
    key += k == 0 ? " " : ", ";
    key += operand_kind(d, op, imm_index);
  }
  if (zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) key += " far";
  return key;
}

std::string form_key(const Decoded& d) {
  // Hidden operands tell forms apart that differ only in what they access implicitly: PUSH imm8
  // with a 2- or 8-byte stack slot, RET with a 16- or 64-bit return address.
  std::string key = form_name(d) + " |";
  for (unsigned k = d.zi.operand_count_visible; k < d.zi.operand_count; ++k) {
    const ZydisDecodedOperand& op = d.ops[k];
    key += " ";
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) key += ZydisRegisterGetString(op.reg.value);
    else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) key += with_number("m", op.size);
    else key += "?";
  }
  return key;
}

Catalog build_catalog(const FeatureSupport& features) {
  const ZydisDecoder dec = make_decoder();
  Catalog cat;
  std::map<std::string, Form> forms;
  auto add = [&](const uint8_t* bytes, const Decoded& d) {
    std::string key = form_key(d);
    if (forms.count(key)) return;
    Form f;
    f.key = key;
    f.name = form_name(d);
    f.bytes.assign(bytes, bytes + d.zi.length);
    f.proto = d;
    forms.emplace(std::move(key), std::move(f));
  };
  // Register forms use every ModRM.reg/rm pair (group opcodes select by both); memory forms use
  // mod = 00, rm = 000 ([rax]) with every ModRM.reg.
  auto visit = [&](Candidate& c, size_t modrm_at) {
    Decoded d;
    for (int m = 0; m < 72; ++m) {
      c.bytes[modrm_at] = uint8_t(m < 64 ? 0xc0 | m : (m - 64) << 3);
      ++cat.candidates;
      if (!decode(dec, c.bytes, c.len, d)) continue;
      // An "opcode" byte Zydis consumed as one more prefix (segment, REX, ...) is not a form of
      // its own; the real opcode is enumerated anyway.
      if (d.zi.raw.prefix_count != c.prefixes) continue;
      add(c.bytes, d);
      if (!(d.zi.attributes & ZYDIS_ATTRIB_HAS_MODRM)) break;  // the byte was not a ModRM
    }
  };
  enumerate_legacy(visit);
  enumerate_vex(visit);

  // LOCK forms: every memory form that accepts the prefix.
  std::vector<std::pair<std::vector<uint8_t>, Decoded>> locked;
  for (const auto& [key, f] : forms) {
    if (!(f.proto.zi.attributes & ZYDIS_ATTRIB_ACCEPTS_LOCK)) continue;
    std::vector<uint8_t> b = {0xf0};
    b.insert(b.end(), f.bytes.begin(), f.bytes.end());
    Decoded d;
    ++cat.candidates;
    if (decode(dec, b.data(), b.size(), d) && (d.zi.attributes & ZYDIS_ATTRIB_HAS_LOCK)) locked.emplace_back(b, d);
  }
  for (const auto& [b, d] : locked) add(b.data(), d);

  // Display names: the operand size is added where the visible operands do not tell two forms
  // apart, the hidden operands where even that is not enough.
  std::map<std::string, int> uses;
  for (const auto& [key, f] : forms) ++uses[f.name];
  for (auto& [key, f] : forms)
    if (uses[f.name] > 1) f.name += with_number(" (o", f.proto.zi.operand_width) + ")";
  uses.clear();
  for (const auto& [key, f] : forms) ++uses[f.name];
  for (auto& [key, f] : forms)
    if (uses[f.name] > 1) f.name += " {" + key.substr(key.find('|') + 2) + "}";
  for (auto& [key, f] : forms) {
    f.skip = classify(f.proto, features, f.skip_detail);
    cat.forms.push_back(std::move(f));
  }
  std::sort(cat.forms.begin(), cat.forms.end(), [](const Form& a, const Form& b) { return a.name < b.name; });
  return cat;
}

}  // namespace nestvm::diff
