// Instruction class: decimal arithmetic adjustments DAA DAS AAA AAS AAM AAD (SDM Vol. 2, each
// instruction's "Operation"). They exist outside 64-bit mode only (Zydis rejects them there,
// which raises #UD). Flags the SDM leaves undefined get the values Intel processors produce
// (checked against the host in tests/unit/cpu): see each handler.
#include "cpu/insn/operand.h"

namespace nestvm::cpu {

namespace {

using namespace arch::rflags;

inline uint64_t szp(uint8_t v) {
  return (v == 0 ? kZF : 0) | (v & 0x80 ? kSF : 0) | (__builtin_parity(v) ? 0 : kPF);
}

inline uint8_t al(const Cpu& c) { return uint8_t(c.state.gpr[kRax]); }
inline uint8_t ah(const Cpu& c) { return uint8_t(c.state.gpr[kRax] >> 8); }
inline void set_ax(Cpu& c, uint8_t lo, uint8_t hi) { c.set_reg(2, kRax, uint64_t(hi) << 8 | lo); }

// DAA / DAS (SDM Vol. 2): CF and AF as the pseudo-code sets them; SF ZF PF from AL; OF
// (undefined) 0, as on Intel. DAA clears CF when no high-digit adjustment is made; DAS keeps
// the borrow of the low-digit adjustment (the SDM's DAS has no ELSE CF = 0).
template <bool Add>
Status decimal_adjust(Cpu& c, const Insn&) {
  const uint64_t f = c.rflags();
  const uint8_t old_al = al(c);
  const bool old_cf = f & kCF;
  uint8_t a = old_al;
  bool cf = false, af = false;
  if ((a & 0x0f) > 9 || (f & kAF)) {
    cf = old_cf || (Add ? a > 0xff - 6 : a < 6);  // carry out of / borrow into AL +- 6
    a = uint8_t(Add ? a + 6 : a - 6);
    af = true;
  }
  if (old_al > 0x99 || old_cf) {
    a = uint8_t(Add ? a + 0x60 : a - 0x60);
    cf = true;
  } else if (Add) {
    cf = false;
  }
  c.set_reg8(0, a);
  c.set_status_flags((cf ? kCF : 0) | (af ? kAF : 0) | szp(a));
  return Status::kNext;
}

// AAA / AAS: AF = CF = whether AL's low digit needed adjusting; AL keeps its low nibble.
// OF SF ZF PF are undefined: Intel sets SF ZF PF from the final AL and clears OF.
template <bool Add>
Status ascii_adjust(Cpu& c, const Insn&) {
  const uint64_t f = c.rflags();
  uint16_t ax = uint16_t(c.state.gpr[kRax]);
  const bool adjust = (ax & 0x0f) > 9 || (f & kAF);
  if (adjust) {
    // SDM AAA: AX = AX + 106H; AAS: AX = AX - 6; AH = AH - 1.
    ax = Add ? uint16_t(ax + 0x106) : uint16_t(uint16_t(ax - 6) - 0x100);
  }
  ax &= 0xff0f;
  c.set_reg(2, kRax, ax);
  c.set_status_flags((adjust ? kCF | kAF : 0) | szp(uint8_t(ax)));
  return Status::kNext;
}

// AAM imm8: AH = AL / imm8, AL = AL MOD imm8; #DE if imm8 = 0. SF ZF PF from AL; OF AF CF
// (undefined) 0, as on Intel.
Status aam(Cpu& c, const Insn& i) {
  const uint8_t base = uint8_t(i.imm);
  if (base == 0) return c.fault(arch::Vector::kDE);
  const uint8_t a = al(c);
  set_ax(c, uint8_t(a % base), uint8_t(a / base));
  c.set_status_flags(szp(uint8_t(a % base)));
  return Status::kNext;
}

// AAD imm8: AL = (AL + AH * imm8) AND FFH, AH = 0. SF ZF PF from AL; OF AF CF (undefined)
// are those of the byte addition AL + (AH * imm8), as on Intel.
Status aad(Cpu& c, const Insn& i) {
  const uint8_t a = al(c), b = uint8_t(ah(c) * uint8_t(i.imm));
  const uint8_t r = uint8_t(a + b);
  set_ax(c, r, 0);
  c.set_lazy(FlagOp::kAdd, 1, r, a, b);
  return Status::kNext;
}

template <Handler H>
Handler select(const DecodeInput&, Insn&) { return H; }

}  // namespace

void register_bcd(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_DAA, &select<&decimal_adjust<true>>);
  t.add(ZYDIS_MNEMONIC_DAS, &select<&decimal_adjust<false>>);
  t.add(ZYDIS_MNEMONIC_AAA, &select<&ascii_adjust<true>>);
  t.add(ZYDIS_MNEMONIC_AAS, &select<&ascii_adjust<false>>);
  t.add(ZYDIS_MNEMONIC_AAM, &select<&aam>);
  t.add(ZYDIS_MNEMONIC_AAD, &select<&aad>);
}

}  // namespace nestvm::cpu
