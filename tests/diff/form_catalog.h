// The list of instruction forms, taken from Zydis's decoder tables: every byte pattern of the
// opcode maps (one-byte, 0F, 0F38, 0F3A, and VEX maps 1-3) under the prefixes that select operand
// size and mandatory-prefix forms (none, 66, F2, F3, each with and without REX.W), with every ModRM
// register form and a memory form, is decoded in 64-bit mode. Decoded instructions are
// deduplicated into forms: mnemonic, LOCK/REP prefix, and operand kinds with their sizes
// ("add r32, m32", "shl m8, cl", "rep stosq"). Each form keeps one decoded prototype.
#pragma once
#include <Zydis/Zydis.h>

#include <cstdint>
#include <string>
#include <vector>

#include "diff/form_filter.h"

namespace nestvm::diff {

struct Decoded {
  ZydisDecodedInstruction zi{};
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT]{};
};

struct Form {
  std::string key;   // identity: name plus hidden operands
  std::string name;  // what reports show: "add r32, m32", "push imm8 (o16)"
  std::vector<uint8_t> bytes;  // the prototype's encoding
  Decoded proto;
  SkipReason skip = SkipReason::kNone;
  std::string skip_detail;  // e.g. the ISA set a host or model lacks
};

// The decoder configured as the core configures its own (decoder.cpp): MPX, CET and CLDEMOTE
// hints decode as NOPs; LZCNT/TZCNT are decoded as such (the host and the core model have them).
ZydisDecoder make_decoder();

// Decodes `bytes` in 64-bit mode; false if Zydis rejects them.
bool decode(const ZydisDecoder& dec, const uint8_t* bytes, size_t len, Decoded& out);

// The form a decoded instruction belongs to (form_key), and its visible part (form_name).
std::string form_key(const Decoded& d);
std::string form_name(const Decoded& d);

struct Catalog {
  std::vector<Form> forms;  // sorted by name
  uint64_t candidates = 0;  // byte patterns decoded
};

Catalog build_catalog(const FeatureSupport& features);

}  // namespace nestvm::diff
