// Lazy arithmetic flags: instructions record their operation, operands and result; the six
// status flags (CF PF AF ZF SF OF) are computed only when something reads them. The rules are
// those of each instruction's "Flags Affected" section in SDM Vol. 2.
#pragma once
#include <cstdint>

#include "arch/rflags.h"

namespace nestvm::cpu {

enum class FlagOp : uint8_t {
  kMaterialized = 0,  // the status flags are in CpuState::rflags
  kAdd, kAdc, kSub, kSbb, kLogic, kInc, kDec, kNeg, kShl, kShr, kSar,
};

// res, src1 and src2 are stored zero-extended from `size` bytes.
struct LazyFlags {
  uint64_t res = 0;
  uint64_t src1 = 0;
  uint64_t src2 = 0;  // for shifts: the (masked, nonzero) count
  FlagOp op = FlagOp::kMaterialized;
  uint8_t size = 8;   // operand size in bytes
  uint8_t carry = 0;  // ADC/SBB: carry-in; INC/DEC: the CF they preserve
};

constexpr uint64_t size_mask(unsigned size) { return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1; }
constexpr uint64_t sign_bit(unsigned size) { return 1ull << (8 * size - 1); }
constexpr int64_t sign_extend(uint64_t v, unsigned size) {
  const unsigned sh = 64 - 8 * size;
  return static_cast<int64_t>(v << sh) >> sh;
}

namespace lazy {

[[gnu::always_inline]] inline bool cf(const LazyFlags& f, uint64_t materialized) {
  const unsigned bits = 8 * f.size;
  switch (f.op) {
    case FlagOp::kMaterialized: return materialized & arch::rflags::kCF;
    case FlagOp::kAdd: return f.res < f.src1;
    case FlagOp::kAdc: return f.carry ? f.res <= f.src1 : f.res < f.src1;
    case FlagOp::kSub: return f.src1 < f.src2;
    case FlagOp::kSbb: return f.carry ? f.src1 <= f.src2 : f.src1 < f.src2;
    case FlagOp::kLogic: return false;
    case FlagOp::kInc: case FlagOp::kDec: return f.carry;
    case FlagOp::kNeg: return f.src2 != 0;
    case FlagOp::kShl: return f.src2 <= bits && ((f.src1 >> (bits - f.src2)) & 1);
    case FlagOp::kShr: return f.src2 <= 64 && ((f.src1 >> (f.src2 - 1)) & 1);
    case FlagOp::kSar: {
      const unsigned c = f.src2 - 1 > 63 ? 63 : f.src2 - 1;
      return (sign_extend(f.src1, f.size) >> c) & 1;
    }
  }
  return false;
}

inline bool zf(const LazyFlags& f, uint64_t materialized) {
  return f.op == FlagOp::kMaterialized ? (materialized & arch::rflags::kZF) != 0 : f.res == 0;
}

inline bool sf(const LazyFlags& f, uint64_t materialized) {
  return f.op == FlagOp::kMaterialized ? (materialized & arch::rflags::kSF) != 0
                                       : (f.res & sign_bit(f.size)) != 0;
}

inline bool pf(const LazyFlags& f, uint64_t materialized) {
  return f.op == FlagOp::kMaterialized ? (materialized & arch::rflags::kPF) != 0
                                       : !__builtin_parity(static_cast<unsigned>(f.res & 0xff));
}

inline bool af(const LazyFlags& f, uint64_t materialized) {
  switch (f.op) {
    case FlagOp::kMaterialized: return materialized & arch::rflags::kAF;
    case FlagOp::kAdd: case FlagOp::kAdc: case FlagOp::kSub: case FlagOp::kSbb:
    case FlagOp::kInc: case FlagOp::kDec: case FlagOp::kNeg:
      return ((f.src1 ^ f.src2 ^ f.res) >> 4) & 1;
    default: return false;  // logic ops and shifts: undefined, reads as 0 (as on Intel)
  }
}

inline bool of(const LazyFlags& f, uint64_t materialized) {
  const uint64_t sb = sign_bit(f.size);
  switch (f.op) {
    case FlagOp::kMaterialized: return materialized & arch::rflags::kOF;
    case FlagOp::kAdd: case FlagOp::kAdc: case FlagOp::kInc:
      return ((f.src1 ^ f.res) & (f.src2 ^ f.res) & sb) != 0;
    case FlagOp::kSub: case FlagOp::kSbb: case FlagOp::kDec: case FlagOp::kNeg:
      return ((f.src1 ^ f.src2) & (f.src1 ^ f.res) & sb) != 0;
    case FlagOp::kLogic: return false;
    case FlagOp::kShl: return ((f.res & sb) != 0) != cf(f, materialized);
    case FlagOp::kShr: return (f.src1 & sb) != 0;
    case FlagOp::kSar: return false;
  }
  return false;
}

// All six status flags as RFLAGS bits.
inline uint64_t status_flags(const LazyFlags& f, uint64_t materialized) {
  if (f.op == FlagOp::kMaterialized) return materialized & arch::rflags::kArith;
  using namespace arch::rflags;
  return (cf(f, materialized) ? kCF : 0) | (pf(f, materialized) ? kPF : 0) |
         (af(f, materialized) ? kAF : 0) | (zf(f, materialized) ? kZF : 0) |
         (sf(f, materialized) ? kSF : 0) | (of(f, materialized) ? kOF : 0);
}

// Condition codes 0-15 as encoded in Jcc/SETcc/CMOVcc (SDM Vol. 1 Table B-1).
inline bool condition(const LazyFlags& f, uint64_t m, unsigned cc) {
  bool r;
  if (f.op == FlagOp::kSub) {  // CMP and SUB: answer from the operands directly
    switch (cc >> 1) {
      case 1: r = f.src1 < f.src2; break;                                        // B
      case 2: r = f.res == 0; break;                                             // E
      case 3: r = f.src1 <= f.src2; break;                                       // BE
      case 6: r = sign_extend(f.src1, f.size) < sign_extend(f.src2, f.size); break;   // L
      case 7: r = sign_extend(f.src1, f.size) <= sign_extend(f.src2, f.size); break;  // LE
      default: goto generic;
    }
    return r ^ (cc & 1);
  }
  if (f.op == FlagOp::kLogic) {  // TEST, AND, OR, XOR: CF = OF = 0
    const bool s = (f.res & sign_bit(f.size)) != 0, z = f.res == 0;
    switch (cc >> 1) {
      case 0: r = false; break;
      case 1: r = false; break;
      case 2: r = z; break;
      case 3: r = z; break;
      case 4: r = s; break;
      case 6: r = s; break;
      case 7: r = z || s; break;
      default: goto generic;
    }
    return r ^ (cc & 1);
  }
generic:
  switch (cc >> 1) {
    case 0: r = of(f, m); break;
    case 1: r = cf(f, m); break;
    case 2: r = zf(f, m); break;
    case 3: r = cf(f, m) || zf(f, m); break;
    case 4: r = sf(f, m); break;
    case 5: r = pf(f, m); break;
    case 6: r = sf(f, m) != of(f, m); break;
    default: r = zf(f, m) || (sf(f, m) != of(f, m)); break;
  }
  return r ^ (cc & 1);
}

}  // namespace lazy
}  // namespace nestvm::cpu
