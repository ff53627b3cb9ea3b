// Checks on the guest segment registers (SDM Vol. 3 §27.3.1.2): selectors, bases, limits and
// access rights of CS, SS, DS, ES, FS, GS, TR and LDTR, for the three kinds of guest the SDM
// distinguishes: virtual-8086 (RFLAGS.VM = 1), unrestricted (the control is 1: real mode and
// CS type 3 allowed) and ordinary protected-mode / IA-32e guests. The checks run in the SDM's
// order, attribute by attribute across the registers.
#include "arch/segment.h"
#include "arch/vmentry_checks.h"
#include "arch/vmentry_checks_impl.h"

namespace nestvm::arch::vmentry {

namespace {

constexpr const char* kSection = "27.3.1.2";

struct GuestSegment {
  uint16_t selector;
  uint64_t base;
  uint32_t limit;
  uint32_t ar;
  bool usable() const { return !(ar & ar::kUnusable); }
  unsigned type() const { return ar & ar::kTypeMask; }
  unsigned dpl() const { return ar::dpl(ar); }
  unsigned rpl() const { return selector_rpl(selector); }
};

GuestSegment read_segment(const VmEntryEnv& env, VmcsField sel, VmcsField base, VmcsField limit, VmcsField ar) {
  return {uint16_t(env.read(sel)), env.read(base), uint32_t(env.read(limit)), uint32_t(env.read(ar))};
}

// The rules of one of CS, SS, DS, ES, FS, GS, in words. WHEN qualifies the rules that apply only
// to a usable register (all but CS, which VM entry always treats as usable).
struct SegmentRules {
  const char* v86_base;
  const char* v86_limit;
  const char* v86_ar;
  const char* base;  // CS, SS, DS, ES: bits 63:32 zero; FS, GS: canonical
  const char* type_accessed;
  const char* type_readable;
  const char* s;
  const char* dpl_rpl;
  const char* p;
  const char* ar_11_8;
  const char* g_low;
  const char* g_high;
  const char* ar_31_17;
};
#define NESTVM_SEGMENT_RULES(R, WHEN, BASE)                                                                        \
  {                                                                                                                \
    "guest " R " base must be the selector shifted left 4 bits in virtual-8086 mode",                              \
        "guest " R " limit must be FFFFH in virtual-8086 mode", "guest " R ".AR must be F3H in virtual-8086 mode", \
        BASE, "guest " R ".AR type must have the accessed bit (bit 0) set" WHEN,                                   \
        "guest " R ".AR type must be readable (bit 1) if it is a code segment" WHEN, "guest " R ".AR.S must be 1" WHEN, \
        "guest " R ".AR.DPL must not be less than the selector RPL for a data or non-conforming code segment " \
        "(not unrestricted)" WHEN,                                                                                   \
        "guest " R ".AR.P must be 1" WHEN, "guest " R ".AR bits 11:8 must be 0" WHEN,                             \
        "guest " R ".AR.G must be 0 if any of limit bits 11:0 is 0" WHEN,                                        \
        "guest " R ".AR.G must be 1 if any of limit bits 31:20 is 1" WHEN,                                       \
        "guest " R ".AR bits 31:17 must be 0" WHEN                                                                 \
  }
// Indexed by SegReg (ES, CS, SS, DS, FS, GS).
constexpr SegmentRules kRules[6] = {
    NESTVM_SEGMENT_RULES("ES", " when ES is usable", "guest ES base bits 63:32 must be 0 when ES is usable"),
    NESTVM_SEGMENT_RULES("CS", "", "guest CS base bits 63:32 must be 0"),
    NESTVM_SEGMENT_RULES("SS", " when SS is usable", "guest SS base bits 63:32 must be 0 when SS is usable"),
    NESTVM_SEGMENT_RULES("DS", " when DS is usable", "guest DS base bits 63:32 must be 0 when DS is usable"),
    NESTVM_SEGMENT_RULES("FS", " when FS is usable", "guest FS base must be canonical"),
    NESTVM_SEGMENT_RULES("GS", " when GS is usable", "guest GS base must be canonical"),
};
#undef NESTVM_SEGMENT_RULES

// The order in which the SDM lists the registers in each access-rights item.
constexpr SegReg kOrder[6] = {SegReg::kCS, SegReg::kSS, SegReg::kDS, SegReg::kES, SegReg::kFS, SegReg::kGS};
constexpr SegReg kDataRegs[4] = {SegReg::kDS, SegReg::kES, SegReg::kFS, SegReg::kGS};

// G must agree with the limit (SDM §27.3.1.2): limit bits 11:0 not all 1 ⇒ G = 0; any of limit
// bits 31:20 set ⇒ G = 1.
bool g_too_coarse(uint32_t limit, uint32_t a) { return (a & ar::kG) && (limit & 0xfff) != 0xfff; }
bool g_too_fine(uint32_t limit, uint32_t a) { return !(a & ar::kG) && (limit & 0xfff00000u); }

constexpr uint32_t kAr11to8 = 0xf00;
constexpr uint32_t kAr31to17 = 0xfffe0000u;

}  // namespace

VmEntryCheck check_guest_segments(const VmEntryEnv& env, const EntryControls& c, uint64_t cr0, bool v86) {
  const VmxCapabilities& caps = *env.caps;
  GuestSegment seg[6] = {
      read_segment(env, VmcsField::GUEST_ES_SELECTOR, VmcsField::GUEST_ES_BASE, VmcsField::GUEST_ES_LIMIT,
                   VmcsField::GUEST_ES_AR_BYTES),
      read_segment(env, VmcsField::GUEST_CS_SELECTOR, VmcsField::GUEST_CS_BASE, VmcsField::GUEST_CS_LIMIT,
                   VmcsField::GUEST_CS_AR_BYTES),
      read_segment(env, VmcsField::GUEST_SS_SELECTOR, VmcsField::GUEST_SS_BASE, VmcsField::GUEST_SS_LIMIT,
                   VmcsField::GUEST_SS_AR_BYTES),
      read_segment(env, VmcsField::GUEST_DS_SELECTOR, VmcsField::GUEST_DS_BASE, VmcsField::GUEST_DS_LIMIT,
                   VmcsField::GUEST_DS_AR_BYTES),
      read_segment(env, VmcsField::GUEST_FS_SELECTOR, VmcsField::GUEST_FS_BASE, VmcsField::GUEST_FS_LIMIT,
                   VmcsField::GUEST_FS_AR_BYTES),
      read_segment(env, VmcsField::GUEST_GS_SELECTOR, VmcsField::GUEST_GS_BASE, VmcsField::GUEST_GS_LIMIT,
                   VmcsField::GUEST_GS_AR_BYTES),
  };
  const GuestSegment tr = read_segment(env, VmcsField::GUEST_TR_SELECTOR, VmcsField::GUEST_TR_BASE,
                                       VmcsField::GUEST_TR_LIMIT, VmcsField::GUEST_TR_AR_BYTES);
  const GuestSegment ldtr = read_segment(env, VmcsField::GUEST_LDTR_SELECTOR, VmcsField::GUEST_LDTR_BASE,
                                         VmcsField::GUEST_LDTR_LIMIT, VmcsField::GUEST_LDTR_AR_BYTES);
  const GuestSegment& cs = seg[unsigned(SegReg::kCS)];
  const GuestSegment& ss = seg[unsigned(SegReg::kSS)];
  const bool ug = c.unrestricted();
  // CS is usable whatever its unusable bit says; the other five only without that bit.
  auto usable = [&](SegReg r) { return r == SegReg::kCS || seg[unsigned(r)].usable(); };

  // Selector fields.
  if (selector_ti(tr.selector)) return fail_guest("guest TR selector TI must be 0", kSection);
  if (ldtr.usable() && selector_ti(ldtr.selector))
    return fail_guest("guest LDTR selector TI must be 0 when LDTR is usable", kSection);
  if (!v86 && !ug && ss.rpl() != cs.rpl())
    return fail_guest("guest SS selector RPL must equal CS selector RPL when not virtual-8086 and not unrestricted",
                      kSection);

  // Base-address fields.
  if (v86) {
    for (SegReg r : kOrder)
      if (seg[unsigned(r)].base != uint64_t(seg[unsigned(r)].selector) << 4)
        return fail_guest(kRules[unsigned(r)].v86_base, kSection);
  }
  if (!canonical(caps, tr.base)) return fail_guest("guest TR base must be canonical", kSection);
  for (SegReg r : {SegReg::kFS, SegReg::kGS})
    if (!canonical(caps, seg[unsigned(r)].base)) return fail_guest(kRules[unsigned(r)].base, kSection);
  if (ldtr.usable() && !canonical(caps, ldtr.base))
    return fail_guest("guest LDTR base must be canonical when LDTR is usable", kSection);
  for (SegReg r : {SegReg::kCS, SegReg::kSS, SegReg::kDS, SegReg::kES})
    if (usable(r) && (seg[unsigned(r)].base >> 32)) return fail_guest(kRules[unsigned(r)].base, kSection);

  // Limit fields.
  if (v86) {
    for (SegReg r : kOrder)
      if (seg[unsigned(r)].limit != 0xffff) return fail_guest(kRules[unsigned(r)].v86_limit, kSection);
  }

  // Access-rights fields.
  if (v86) {
    // Present, expand-up read/write accessed data, S = 1, DPL 3, nothing else.
    for (SegReg r : kOrder)
      if (seg[unsigned(r)].ar != 0xf3) return fail_guest(kRules[unsigned(r)].v86_ar, kSection);
  } else {
    // Type.
    const unsigned cs_type = cs.type();
    const bool cs_code_ok = cs_type == 9 || cs_type == 11 || cs_type == 13 || cs_type == 15;
    if (!cs_code_ok && !(ug && cs_type == 3))
      return fail_guest(ug ? "guest CS.AR type must be 3, 9, 11, 13 or 15 for an unrestricted guest"
                           : "guest CS.AR type must be 9, 11, 13 or 15 when not unrestricted",
                        kSection);
    if (ss.usable() && ss.type() != 3 && ss.type() != 7)
      return fail_guest("guest SS.AR type must be 3 or 7 when SS is usable", kSection);
    for (SegReg r : kDataRegs) {
      const GuestSegment& s = seg[unsigned(r)];
      if (!s.usable()) continue;
      if (!(s.type() & ar::kAccessed)) return fail_guest(kRules[unsigned(r)].type_accessed, kSection);
      if ((s.type() & ar::kCode) && !(s.type() & ar::kReadable))
        return fail_guest(kRules[unsigned(r)].type_readable, kSection);
    }
    // S.
    for (SegReg r : kOrder)
      if (usable(r) && !(seg[unsigned(r)].ar & ar::kS)) return fail_guest(kRules[unsigned(r)].s, kSection);
    // DPL.
    if (cs_type == 3 && cs.dpl() != 0)
      return fail_guest("guest CS.AR.DPL must be 0 when CS type is 3 (unrestricted guest)", kSection);
    if ((cs_type == 9 || cs_type == 11) && cs.dpl() != ss.dpl())
      return fail_guest("guest CS.AR.DPL must equal SS.AR.DPL for a non-conforming code segment", kSection);
    if ((cs_type == 13 || cs_type == 15) && cs.dpl() > ss.dpl())
      return fail_guest("guest CS.AR.DPL must not exceed SS.AR.DPL for a conforming code segment", kSection);
    if (!ug && ss.dpl() != ss.rpl())
      return fail_guest("guest SS.AR.DPL must equal the SS selector RPL when not unrestricted", kSection);
    if ((cs_type == 3 || !(cr0 & cr0::kPE)) && ss.dpl() != 0)
      return fail_guest("guest SS.AR.DPL must be 0 when CS type is 3 or CR0.PE is 0", kSection);
    if (!ug) {
      for (SegReg r : kDataRegs) {
        const GuestSegment& s = seg[unsigned(r)];
        if (s.usable() && s.type() <= 11 && s.dpl() < s.rpl()) return fail_guest(kRules[unsigned(r)].dpl_rpl, kSection);
      }
    }
    // P.
    for (SegReg r : kOrder)
      if (usable(r) && !(seg[unsigned(r)].ar & ar::kP)) return fail_guest(kRules[unsigned(r)].p, kSection);
    // Reserved bits 11:8.
    for (SegReg r : kOrder)
      if (usable(r) && (seg[unsigned(r)].ar & kAr11to8)) return fail_guest(kRules[unsigned(r)].ar_11_8, kSection);
    // D/B of a 64-bit code segment.
    if (c.ia32e_guest() && (cs.ar & ar::kL) && (cs.ar & ar::kDB))
      return fail_guest("guest CS.AR.D/B must be 0 when CS.L is 1 in an IA-32e mode guest", kSection);
    // G against the limit.
    for (SegReg r : kOrder) {
      const GuestSegment& s = seg[unsigned(r)];
      if (!usable(r)) continue;
      if (g_too_coarse(s.limit, s.ar)) return fail_guest(kRules[unsigned(r)].g_low, kSection);
      if (g_too_fine(s.limit, s.ar)) return fail_guest(kRules[unsigned(r)].g_high, kSection);
    }
    // Reserved bits 31:17.
    for (SegReg r : kOrder)
      if (usable(r) && (seg[unsigned(r)].ar & kAr31to17)) return fail_guest(kRules[unsigned(r)].ar_31_17, kSection);
  }

  // TR: a busy TSS (a 16-bit one only outside IA-32e mode), always usable.
  const unsigned tr_type = tr.type();
  if (c.ia32e_guest() && tr_type != sys_type::kTss32Busy)
    return fail_guest("guest TR.AR type must be 11 (busy 64-bit TSS) for an IA-32e mode guest", kSection);
  if (!c.ia32e_guest() && tr_type != sys_type::kTss16Busy && tr_type != sys_type::kTss32Busy)
    return fail_guest("guest TR.AR type must be 3 or 11 (busy TSS) when not an IA-32e mode guest", kSection);
  if (tr.ar & ar::kS) return fail_guest("guest TR.AR.S must be 0", kSection);
  if (!(tr.ar & ar::kP)) return fail_guest("guest TR.AR.P must be 1", kSection);
  if (tr.ar & kAr11to8) return fail_guest("guest TR.AR bits 11:8 must be 0", kSection);
  if (g_too_coarse(tr.limit, tr.ar)) return fail_guest("guest TR.AR.G must be 0 if any of limit bits 11:0 is 0", kSection);
  if (g_too_fine(tr.limit, tr.ar)) return fail_guest("guest TR.AR.G must be 1 if any of limit bits 31:20 is 1", kSection);
  if (!tr.usable()) return fail_guest("guest TR must be usable (AR bit 16 must be 0)", kSection);
  if (tr.ar & kAr31to17) return fail_guest("guest TR.AR bits 31:17 must be 0", kSection);

  // LDTR, when usable.
  if (ldtr.usable()) {
    if (ldtr.type() != sys_type::kLdt) return fail_guest("guest LDTR.AR type must be 2 (LDT) when LDTR is usable", kSection);
    if (ldtr.ar & ar::kS) return fail_guest("guest LDTR.AR.S must be 0 when LDTR is usable", kSection);
    if (!(ldtr.ar & ar::kP)) return fail_guest("guest LDTR.AR.P must be 1 when LDTR is usable", kSection);
    if (ldtr.ar & kAr11to8) return fail_guest("guest LDTR.AR bits 11:8 must be 0 when LDTR is usable", kSection);
    if (g_too_coarse(ldtr.limit, ldtr.ar))
      return fail_guest("guest LDTR.AR.G must be 0 if any of limit bits 11:0 is 0 when LDTR is usable", kSection);
    if (g_too_fine(ldtr.limit, ldtr.ar))
      return fail_guest("guest LDTR.AR.G must be 1 if any of limit bits 31:20 is 1 when LDTR is usable", kSection);
    if (ldtr.ar & kAr31to17) return fail_guest("guest LDTR.AR bits 31:17 must be 0 when LDTR is usable", kSection);
  }
  return {};
}

}  // namespace nestvm::arch::vmentry
