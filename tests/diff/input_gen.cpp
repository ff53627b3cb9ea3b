#include "diff/input_gen.h"

#include <algorithm>
#include <cstring>

#include "diff/layout.h"
#include "diff/operand_access.h"

namespace nestvm::diff {

namespace {

constexpr uint64_t kStatusFlags = 0x8d5;  // CF PF AF ZF SF OF
constexpr uint64_t kDF = 1u << 10;

uint64_t size_mask(unsigned bytes) { return bytes >= 8 ? ~0ull : (1ull << (8 * bytes)) - 1; }
uint64_t sign_extend_bits(uint64_t v, unsigned bits) {
  return bits >= 64 ? v : uint64_t(int64_t(v << (64 - bits)) >> (64 - bits));
}

bool is_explicit_memory(const ZydisDecodedOperand& op) {
  return op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.type == ZYDIS_MEMOP_TYPE_MEM &&
         op.encoding != ZYDIS_OPERAND_ENCODING_DISP16_32_64 && op.mem.base != ZYDIS_REGISTER_RIP;
}

bool has_rep(const ZydisDecodedInstruction& zi) {
  return zi.attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE | ZYDIS_ATTRIB_HAS_REPNE);
}

// A code-page address for an indirect branch, sometimes a non-canonical one (#GP at the branch).
uint64_t branch_target(Rng& rng) {
  if (rng.chance(1, 20)) return 0x0000800000000000ull | rng.next();
  // Never into the instruction's own bytes (those would execute as another instruction).
  int64_t d;
  do d = rng.range(-0x300, 0x300); while (d >= 0 && d < 16);
  return kInsn + uint64_t(d);
}

}  // namespace

uint64_t& InputGen::reg(InputState& in, ZydisRegister r) { return in.gpr[slot(r)]; }

// The value an operand holds in `in` (registers by their width, memory in the scratch area).
uint64_t InputGen::read_operand(const InputState& in, const ZydisDecodedOperand& op) const {
  const unsigned bytes = op.size / 8;
  if (is_gpr(op)) return register_value(in, op.reg.value) & size_mask(bytes);
  if (op.type != ZYDIS_OPERAND_TYPE_MEMORY) return 0;
  const uint64_t la = effective_address(in, op, inst_.d.zi.length);
  uint64_t v = 0;
  if (in_scratch(la, std::min(bytes, 8u))) std::memcpy(&v, in.mem.data() + (la - kScratch), std::min(bytes, 8u));
  return v;
}

void InputGen::write_mem(InputState& in, uint64_t la, uint64_t v, unsigned size) {
  for (unsigned k = 0; k < size; ++k, v >>= 8)
    if (in_scratch(la + k)) in.mem[la + k - kScratch] = uint8_t(v);
}

// An address for a `size`-byte access: mostly inside the scratch area (often aligned), now and
// then straddling its start or end so that the access faults on the guard page.
uint64_t InputGen::scratch_target(unsigned size, bool allow_edges) {
  size = std::max(size, 1u);
  const unsigned margin = 0x100;
  if (allow_edges && rng_.chance(1, 25)) return kScratch - size + 1 + rng_.below(size);
  if (allow_edges && rng_.chance(1, 25)) return kScratch + kScratchSize - size + 1 + rng_.below(size);
  uint64_t t = kScratch + margin + rng_.below(kScratchSize - 2 * margin - size);
  if (rng_.chance(3, 5)) {
    const unsigned align = size >= 16 ? 16 : size >= 8 ? 8 : size >= 4 ? 4 : size >= 2 ? 2 : 1;
    t &= ~uint64_t(align - 1);
  }
  return t;
}

// Solves the base/index registers so that the operand's effective address is in the scratch area.
void InputGen::place_memory_operand(InputState& in, const ZydisDecodedOperand& op) {
  const unsigned size = op.size / 8;
  const int64_t disp = op.mem.disp.value;
  const ZydisRegister base = op.mem.base, index = op.mem.index;
  const int64_t scale = op.mem.scale ? op.mem.scale : 1;
  uint64_t target = scratch_target(size, true);
  if (inst_.d.zi.mnemonic == ZYDIS_MNEMONIC_CMPXCHG16B && rng_.chance(9, 10)) target &= ~0xfull;
  if (base != ZYDIS_REGISTER_NONE && slot(base) == 4) {
    // The stack pointer is already placed: keep the index small so the sum stays nearby.
    if (index != ZYDIS_REGISTER_NONE) reg(in, index) = uint64_t(rng_.range(-8, 8));
    return;
  }
  if (base == ZYDIS_REGISTER_NONE && index == ZYDIS_REGISTER_NONE) return;
  if (base == ZYDIS_REGISTER_NONE) {
    reg(in, index) = uint64_t(int64_t(target - disp) / scale);
    return;
  }
  if (index == ZYDIS_REGISTER_NONE) {
    reg(in, base) = target - uint64_t(disp);
    return;
  }
  if (slot(base) == slot(index)) {
    reg(in, base) = uint64_t(int64_t(target - disp) / (scale + 1));
    return;
  }
  // Distinct base and index: a small index, or any index with the base wrapping around.
  const uint64_t iv = rng_.chance(1, 2) ? uint64_t(rng_.range(-64, 64)) : edge_value(rng_);
  reg(in, index) = iv;
  reg(in, base) = target - uint64_t(disp) - iv * uint64_t(scale);
}

void InputGen::string_policy(InputState& in) {
  const ZydisDecodedInstruction& zi = inst_.d.zi;
  const unsigned size = zi.operand_width / 8;
  in.gpr[6] = scratch_target(8, false);  // RSI
  in.gpr[7] = scratch_target(8, false);  // RDI
  if (has_rep(zi)) in.gpr[1] = rng_.chance(17, 20) ? rng_.below(40) : edge_value(rng_);
  const bool dir_down = in.rflags & kDF;
  const unsigned n = unsigned(rng_.below(24)) + 1;
  auto element = [&](uint64_t start, unsigned k) { return dir_down ? start - uint64_t(k) * size : start + uint64_t(k) * size; };
  switch (zi.mnemonic) {
    case ZYDIS_MNEMONIC_CMPSB: case ZYDIS_MNEMONIC_CMPSW: case ZYDIS_MNEMONIC_CMPSD: case ZYDIS_MNEMONIC_CMPSQ:
      // Equal runs make REPE continue and REPNE stop.
      if (rng_.chance(1, 2))
        for (unsigned k = 0; k < n; ++k)
          for (unsigned b = 0; b < size; ++b) {
            const uint64_t src = element(in.gpr[6], k) + b, dst = element(in.gpr[7], k) + b;
            if (in_scratch(src) && in_scratch(dst)) in.mem[dst - kScratch] = in.mem[src - kScratch];
          }
      break;
    case ZYDIS_MNEMONIC_SCASB: case ZYDIS_MNEMONIC_SCASW: case ZYDIS_MNEMONIC_SCASD: case ZYDIS_MNEMONIC_SCASQ:
      if (rng_.chance(1, 2))
        for (unsigned k = 0; k < n; ++k) write_mem(in, element(in.gpr[7], k), in.gpr[0], size);
      break;
    default:
      break;
  }
}

// Mostly dividends whose quotient fits, so that DIV/IDIV compute instead of raising #DE.
void InputGen::divide_policy(InputState& in) {
  const ZydisDecodedInstruction& zi = inst_.d.zi;
  if (!rng_.chance(3, 4)) return;
  const ZydisDecodedOperand& src = inst_.d.ops[0];
  const unsigned bytes = src.size / 8;
  const uint64_t mask = size_mask(bytes);
  const uint64_t divisor = read_operand(in, src);
  const bool is_signed = zi.mnemonic == ZYDIS_MNEMONIC_IDIV;
  if ((address_registers() >> (bytes == 1 ? 0 : 2)) & 1) return;  // AH/RDX also forms the address
  uint64_t high;
  if (is_signed) {
    const uint64_t low = bytes == 1 ? in.gpr[0] & 0xff : in.gpr[0] & mask;
    high = (low >> (8 * bytes - 1)) & 1 ? mask : 0;
  } else {
    high = divisor ? rng_.below(divisor) : 0;
  }
  if (bytes == 1) in.gpr[0] = (in.gpr[0] & ~0xff00ull) | ((high & 0xff) << 8);
  else in.gpr[2] = (in.gpr[2] & ~mask) | (high & mask);
}

// The accumulator equal to the destination half of the time, so both outcomes are exercised.
void InputGen::compare_exchange_policy(InputState& in) {
  const ZydisDecodedInstruction& zi = inst_.d.zi;
  if (!rng_.chance(1, 2)) return;
  const ZydisDecodedOperand& dst = inst_.d.ops[0];
  if (address_registers() & 0x5) return;  // RAX or RDX also forms the address
  if (zi.mnemonic == ZYDIS_MNEMONIC_CMPXCHG) {
    const uint64_t mask = size_mask(dst.size / 8);
    in.gpr[0] = (in.gpr[0] & ~mask) | read_operand(in, dst);
    return;
  }
  // CMPXCHG8B/16B: EDX:EAX or RDX:RAX against the memory operand.
  const unsigned half = dst.size / 16;
  ZydisDecodedOperand hi = dst;
  hi.mem.disp.value += half;
  hi.size = uint16_t(half * 8);
  ZydisDecodedOperand lo = dst;
  lo.size = uint16_t(half * 8);
  const uint64_t mask = size_mask(half);
  in.gpr[0] = (in.gpr[0] & ~mask) | read_operand(in, lo);
  in.gpr[2] = (in.gpr[2] & ~mask) | read_operand(in, hi);
}

void InputGen::branch_target_policy(InputState& in) {
  const ZydisDecodedInstruction& zi = inst_.d.zi;
  if (zi.meta.category == ZYDIS_CATEGORY_RET) {
    write_mem(in, in.gpr[4], branch_target(rng_), zi.operand_width / 8);
    return;
  }
  const ZydisDecodedOperand& op = inst_.d.ops[0];
  if (zi.operand_count_visible == 0 || (op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE)) return;
  const uint64_t target = branch_target(rng_);
  if (is_gpr(op)) {
    reg(in, op.reg.value) = target;
  } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) {
    write_mem(in, effective_address(in, op, zi.length), target, op.size / 8);
  }
}

// GPRs that form the address of an explicit memory operand (a policy must not move them).
uint16_t InputGen::address_registers() const {
  uint16_t mask = 0;
  for (unsigned k = 0; k < inst_.d.zi.operand_count_visible; ++k) {
    const ZydisDecodedOperand& op = inst_.d.ops[k];
    if (op.type != ZYDIS_OPERAND_TYPE_MEMORY) continue;
    if (is_gpr(op.mem.base)) mask |= uint16_t(1u << slot(op.mem.base));
    if (is_gpr(op.mem.index)) mask |= uint16_t(1u << slot(op.mem.index));
  }
  return mask;
}

// Every explicit memory access either stays in the test region or cannot reach host memory.
// (Implicit accesses use RSP, RSI, RDI, RBX, RBP, which the policies place in the region.)
bool InputGen::safe_for_host(const InputState& in) const {
  const ZydisDecodedInstruction& zi = inst_.d.zi;
  for (unsigned k = 0; k < zi.operand_count_visible; ++k) {
    const ZydisDecodedOperand& op = inst_.d.ops[k];
    if (op.type != ZYDIS_OPERAND_TYPE_MEMORY || op.mem.type != ZYDIS_MEMOP_TYPE_MEM) continue;
    uint64_t la = effective_address(in, op, zi.length);
    const uint64_t len = std::max(op.size / 8u, 1u);
    // BT family with a register bit offset: the operand is found relative to the offset
    // (SDM Vol. 2, BT: the offset is signed, in units of the operand size).
    if (k == 0 && zi.operand_count_visible > 1 && is_gpr(inst_.d.ops[1]) &&
        (zi.mnemonic == ZYDIS_MNEMONIC_BT || zi.mnemonic == ZYDIS_MNEMONIC_BTS || zi.mnemonic == ZYDIS_MNEMONIC_BTR ||
         zi.mnemonic == ZYDIS_MNEMONIC_BTC)) {
      const unsigned bits = inst_.d.ops[1].size;
      const int64_t off = bits == 64 ? int64_t(in.gpr[slot(inst_.d.ops[1].reg.value)])
                                     : int64_t(sign_extend_bits(register_value(in, inst_.d.ops[1].reg.value), bits));
      la += uint64_t((off >> 3) & ~int64_t(len - 1));
    }
    if (!safe_(la, len)) return false;
  }
  return true;
}

void InputGen::next(InputState& in) {
  // Inputs that would make the host touch its own memory are drawn again; after a few tries the
  // explicit memory operands are pinned to the scratch area.
  for (int attempt = 0; attempt < 16; ++attempt) {
    draw(in);
    if (safe_for_host(in)) return;
  }
  for (uint64_t& r : in.gpr) r &= 0xff;
  in.gpr[4] = kStackLow;
  for (unsigned k = 0; k < inst_.d.zi.operand_count_visible; ++k)
    if (is_explicit_memory(inst_.d.ops[k])) place_memory_operand(in, inst_.d.ops[k]);
}

void InputGen::draw(InputState& in) {
  const ZydisDecodedInstruction& zi = inst_.d.zi;
  const ZydisDecodedOperand* ops = inst_.d.ops;
  const ZydisMnemonic m = zi.mnemonic;

  for (uint64_t& r : in.gpr) r = edge_value(rng_);
  in.rflags = 0x202 | (rng_.next() & kStatusFlags) | (rng_.chance(1, 4) ? kDF : 0);
  const unsigned fill = unsigned(rng_.below(10));
  for (size_t k = 0; k < kScratchSize; k += 8) {
    const uint64_t v = fill == 0 ? 0 : fill == 1 ? ~0ull : rng_.next();
    std::memcpy(in.mem.data() + k, &v, 8);
  }
  in.gpr[4] = kStackLow + rng_.below(kStackHigh - kStackLow);
  if (rng_.chance(4, 5)) in.gpr[4] &= ~7ull;

  // Two register operands with one value: equal compares, x - x, x ^ x.
  if (zi.operand_count_visible >= 2 && rng_.chance(1, 6) && is_gpr(ops[0]) && is_gpr(ops[1]) &&
      slot(ops[1].reg.value) != 4)
    in.gpr[slot(ops[1].reg.value)] = in.gpr[slot(ops[0].reg.value)];

  // Counts in registers: CL for shifts and rotates, the count/index operand of the BMI forms.
  for (unsigned k = 0; k < zi.operand_count_visible; ++k)
    if (ops[k].type == ZYDIS_OPERAND_TYPE_REGISTER && ops[k].reg.value == ZYDIS_REGISTER_CL && is_shift(zi))
      in.gpr[1] = (in.gpr[1] & ~0xffull) | shift_count(rng_);
  switch (m) {
    case ZYDIS_MNEMONIC_SARX: case ZYDIS_MNEMONIC_SHLX: case ZYDIS_MNEMONIC_SHRX: case ZYDIS_MNEMONIC_BZHI:
      if (is_gpr(ops[zi.operand_count_visible - 1]) && rng_.chance(3, 4)) {
        uint64_t& r = reg(in, ops[zi.operand_count_visible - 1].reg.value);
        r = (r & ~0xffull) | shift_count(rng_);
      }
      break;
    case ZYDIS_MNEMONIC_BEXTR:
      if (is_gpr(ops[2]) && rng_.chance(3, 4)) {
        uint64_t& r = reg(in, ops[2].reg.value);
        r = (r & ~0xffffull) | shift_count(rng_) | uint64_t(shift_count(rng_)) << 8;
      }
      break;
    case ZYDIS_MNEMONIC_LOOP: case ZYDIS_MNEMONIC_LOOPE: case ZYDIS_MNEMONIC_LOOPNE: case ZYDIS_MNEMONIC_JRCXZ:
      if (rng_.chance(1, 2)) in.gpr[1] = rng_.below(3);
      break;
    case ZYDIS_MNEMONIC_LEAVE: case ZYDIS_MNEMONIC_ENTER:
      in.gpr[5] = kStackLow - 0x400 + rng_.below(kStackHigh - kStackLow + 0x400);
      if (rng_.chance(4, 5)) in.gpr[5] &= ~7ull;
      break;
    case ZYDIS_MNEMONIC_BT: case ZYDIS_MNEMONIC_BTS: case ZYDIS_MNEMONIC_BTR: case ZYDIS_MNEMONIC_BTC:
      // A register bit offset addresses memory beyond the operand: keep it near (SDM Vol. 2, BT).
      if (ops[0].type == ZYDIS_OPERAND_TYPE_MEMORY && is_gpr(ops[1]) && rng_.chance(9, 10))
        reg(in, ops[1].reg.value) = uint64_t(rng_.range(-0x400, 0x400));
      break;
    default:
      break;
  }
  if (zi.meta.category == ZYDIS_CATEGORY_STRINGOP) string_policy(in);

  for (unsigned k = 0; k < zi.operand_count_visible; ++k) {
    if (!is_explicit_memory(ops[k])) continue;
    place_memory_operand(in, ops[k]);
    if (rng_.chance(1, 2)) {
      // An edge value in the operand itself (the first 8 bytes of it).
      write_mem(in, effective_address(in, ops[k], zi.length), edge_value(rng_), std::min(ops[k].size / 8u, 8u));
    }
  }
  if (m == ZYDIS_MNEMONIC_XLAT) in.gpr[3] = scratch_target(1, false) - (in.gpr[0] & 0xff);  // [RBX + AL]

  switch (m) {
    case ZYDIS_MNEMONIC_DIV: case ZYDIS_MNEMONIC_IDIV: divide_policy(in); break;
    case ZYDIS_MNEMONIC_CMPXCHG: case ZYDIS_MNEMONIC_CMPXCHG8B: case ZYDIS_MNEMONIC_CMPXCHG16B:
      compare_exchange_policy(in);
      break;
    default: break;
  }
  if (zi.meta.category == ZYDIS_CATEGORY_UNCOND_BR || zi.meta.category == ZYDIS_CATEGORY_CALL ||
      zi.meta.category == ZYDIS_CATEGORY_RET)
    branch_target_policy(in);
}

}  // namespace nestvm::diff
