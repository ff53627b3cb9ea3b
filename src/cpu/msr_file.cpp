// The architectural MSR file: one table row per MSR (or index range) with the CPUID feature
// that makes it exist, its read and its write (nullptr: read-only, writes #GP). The rules are
// those of SDM Vol. 4 for each register and SDM Vol. 2 WRMSR ("#GP(0) if ... a reserved bit is
// set, a non-canonical value is written to a base-address MSR, ...").
#include "cpu/msr_file.h"

#include <x86intrin.h>

#include "arch/msr_index.h"
#include "arch/paging.h"
#include "cpu/cpu.h"
#include "cpu/memory.h"

namespace nestvm::cpu {

using namespace arch;

// ---- hooks --------------------------------------------------------------------------------

bool MsrHooks::add(uint32_t first, uint32_t last, MsrHandler* h) {
  if (n_ == kMaxRanges || first > last || !h) return false;
  ranges_[n_++] = {first, last, h};
  return true;
}

void MsrHooks::remove(MsrHandler* h) {
  unsigned k = 0;
  for (unsigned j = 0; j < n_; ++j)
    if (ranges_[j].handler != h) ranges_[k++] = ranges_[j];
  for (unsigned j = k; j < n_; ++j) ranges_[j] = Range{};
  n_ = k;
}

MsrResult read_msr(Cpu& c, uint32_t index, uint64_t& value) {
  const MsrHooks& h = c.msr_hooks;
  for (unsigned k = h.n_; k-- > 0;) {
    const auto& r = h.ranges_[k];
    if (index < r.first || index > r.last) continue;
    const MsrResult res = r.handler->read(c, index, value);
    if (res != MsrResult::kUnhandled) return res;
  }
  return arch_read_msr(c, index, value);
}

MsrResult write_msr(Cpu& c, uint32_t index, uint64_t value) {
  const MsrHooks& h = c.msr_hooks;
  for (unsigned k = h.n_; k-- > 0;) {
    const auto& r = h.ranges_[k];
    if (index < r.first || index > r.last) continue;
    const MsrResult res = r.handler->write(c, index, value);
    if (res != MsrResult::kUnhandled) return res;
  }
  return arch_write_msr(c, index, value);
}

uint64_t guest_tsc(const Cpu& c) { return __rdtsc() + c.state.msr.tsc_offset; }

namespace {

constexpr MsrResult kOk = MsrResult::kOk;
constexpr MsrResult kGp = MsrResult::kGp;

// Memory types an MTRR may hold (SDM Vol. 3 Table 12-8): UC, WC, WT, WP, WB.
constexpr bool mtrr_type_ok(uint64_t t) { return t == 0 || t == 1 || t == 4 || t == 5 || t == 6; }
// PAT entries add UC- (SDM Vol. 3 Table 12-10); bits 7:3 of each entry are reserved.
constexpr bool pat_type_ok(uint64_t t) { return mtrr_type_ok(t) || t == 7; }

bool each_byte(uint64_t v, bool (*ok)(uint64_t)) {
  for (unsigned b = 0; b < 8; ++b)
    if (!ok((v >> (8 * b)) & 0xff)) return false;
  return true;
}

// Bits at and above MAXPHYADDR (SDM Vol. 3 §12.11.2.3, §11.4.4).
uint64_t above_maxphyaddr(const Cpu& c) { return ~((1ull << c.model().maxphyaddr()) - 1); }

MsrResult ok_read(uint64_t& out, uint64_t v) { out = v; return kOk; }

// ---- IA32_TIME_STAMP_COUNTER, IA32_TSC_ADJUST ---------------------------------------------
// SDM Vol. 3 §18.17.3: a write to the TSC adds (new - old) to IA32_TSC_ADJUST; a write to
// IA32_TSC_ADJUST adds (new - old) to the TSC.
MsrResult read_tsc(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, guest_tsc(c)); }
MsrResult write_tsc(Cpu& c, uint32_t, uint64_t v) {
  const uint64_t host = __rdtsc();
  const uint64_t old = host + c.state.msr.tsc_offset;
  c.state.msr.tsc_offset = v - host;
  c.state.msr.tsc_adjust += v - old;
  return kOk;
}
MsrResult read_tsc_adjust(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.tsc_adjust); }
MsrResult write_tsc_adjust(Cpu& c, uint32_t, uint64_t v) {
  c.state.msr.tsc_offset += v - c.state.msr.tsc_adjust;
  c.state.msr.tsc_adjust = v;
  return kOk;
}

// ---- IA32_APIC_BASE (SDM Vol. 3 §11.4.4, §11.12.5) ----------------------------------------
MsrResult read_apic_base(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.apic_base); }
MsrResult write_apic_base(Cpu& c, uint32_t, uint64_t v) {
  uint64_t reserved = 0x2ffull | above_maxphyaddr(c);  // bits 7:0 and 9, and above MAXPHYADDR
  if (!c.model().has(Feature::kX2apic)) reserved |= apic_base::kExtd;
  if (v & reserved) return kGp;
  const uint64_t old = c.state.msr.apic_base;
  const bool en = v & apic_base::kEnable, extd = v & apic_base::kExtd;
  const bool old_en = old & apic_base::kEnable, old_extd = old & apic_base::kExtd;
  // SDM §11.12.5, "x2APIC State Transitions": EXTD without EN is invalid; x2APIC mode is left
  // only by disabling the APIC, and entered only from xAPIC mode.
  if (extd && !en) return kGp;
  if (old_en && old_extd && en && !extd) return kGp;
  if (!old_en && en && extd) return kGp;
  // BSP is the processor's to set (SDM Figure 11-5); writes leave it as it is.
  c.state.msr.apic_base = (v & ~apic_base::kBsp) | (old & apic_base::kBsp);
  return kOk;
}

// ---- IA32_FEATURE_CONTROL (SDM Vol. 3 §24.7) -----------------------------------------------
MsrResult read_feature_control(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.feature_control); }
MsrResult write_feature_control(Cpu& c, uint32_t, uint64_t v) {
  if (c.state.msr.feature_control & feature_control::kLock) return kGp;  // locked until reset
  uint64_t valid = feature_control::kLock;
  if (c.model().has(Feature::kVmx)) valid |= feature_control::kVmxOutsideSmx;  // no SMX on any model
  if (v & ~valid) return kGp;
  c.state.msr.feature_control = v;
  return kOk;
}

// ---- IA32_BIOS_SIGN_ID, IA32_PLATFORM_ID ---------------------------------------------------
MsrResult read_bios_sign_id(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.bios_sign_id); }
// Software writes 0 before CPUID(1) loads the revision (SDM Vol. 3 §10.11.7.1).
MsrResult write_bios_sign_id(Cpu& c, uint32_t, uint64_t v) { c.state.msr.bios_sign_id = v; return kOk; }
// Platform ID bits 52:50 are 0: nestvm's processors have no microcode-update platform matching.
MsrResult read_platform_id(Cpu&, uint32_t, uint64_t& v) { return ok_read(v, 0); }

// ---- MTRRs (SDM Vol. 3 §12.11) ---------------------------------------------------------------
// IA32_MTRRCAP: VCNT = 8 variable ranges, FIX = 1, WC = 1, no SMRR.
inline constexpr uint64_t kMtrrCap = 8 | (1u << 8) | (1u << 10);
MsrResult read_mtrrcap(Cpu&, uint32_t, uint64_t& v) { return ok_read(v, kMtrrCap); }

MsrResult read_mtrr_var(Cpu& c, uint32_t i, uint64_t& v) {
  return ok_read(v, c.state.msr.mtrr_var[i - msr_index(Msr::kIA32_MTRR_PHYSBASE0)]);
}
MsrResult write_mtrr_var(Cpu& c, uint32_t i, uint64_t v) {
  const unsigned k = i - msr_index(Msr::kIA32_MTRR_PHYSBASE0);
  if (k % 2 == 0) {
    // IA32_MTRR_PHYSBASEn: type in 7:0, 11:8 reserved, base up to MAXPHYADDR.
    if ((v & (0xf00ull | above_maxphyaddr(c))) || !mtrr_type_ok(v & 0xff)) return kGp;
  } else {
    // IA32_MTRR_PHYSMASKn: 10:0 reserved, V in 11, mask up to MAXPHYADDR.
    if (v & (0x7ffull | above_maxphyaddr(c))) return kGp;
  }
  c.state.msr.mtrr_var[k] = v;
  return kOk;
}

int fixed_mtrr_slot(uint32_t i) {
  if (i == msr_index(Msr::kIA32_MTRR_FIX64K_00000)) return 0;
  if (i == msr_index(Msr::kIA32_MTRR_FIX16K_80000)) return 1;
  if (i == msr_index(Msr::kIA32_MTRR_FIX16K_A0000)) return 2;
  if (i >= msr_index(Msr::kIA32_MTRR_FIX4K_C0000) && i <= msr_index(Msr::kIA32_MTRR_FIX4K_F8000))
    return 3 + int(i - msr_index(Msr::kIA32_MTRR_FIX4K_C0000));
  return -1;
}
MsrResult read_mtrr_fixed(Cpu& c, uint32_t i, uint64_t& v) { return ok_read(v, c.state.msr.mtrr_fixed[fixed_mtrr_slot(i)]); }
MsrResult write_mtrr_fixed(Cpu& c, uint32_t i, uint64_t v) {
  if (!each_byte(v, mtrr_type_ok)) return kGp;  // each byte types one sub-range
  c.state.msr.mtrr_fixed[fixed_mtrr_slot(i)] = v;
  return kOk;
}

// IA32_MTRR_DEF_TYPE: type in 7:0, FE in 10, E in 11; the rest reserved.
MsrResult read_mtrr_def_type(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.mtrr_def_type); }
MsrResult write_mtrr_def_type(Cpu& c, uint32_t, uint64_t v) {
  if ((v & ~0xcffull) || !mtrr_type_ok(v & 0xff)) return kGp;
  c.state.msr.mtrr_def_type = v;
  return kOk;
}

// ---- IA32_PAT (SDM Vol. 3 §12.12.2) ----------------------------------------------------------
MsrResult read_pat(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.pat); }
MsrResult write_pat(Cpu& c, uint32_t, uint64_t v) {
  if (!each_byte(v, pat_type_ok)) return kGp;
  c.state.msr.pat = v;
  return kOk;
}

// ---- SYSENTER (SDM Vol. 3 §5.8.7) ------------------------------------------------------------
MsrResult read_sysenter(Cpu& c, uint32_t i, uint64_t& v) {
  const MsrState& m = c.state.msr;
  return ok_read(v, i == msr_index(Msr::kIA32_SYSENTER_CS) ? m.sysenter_cs
                  : i == msr_index(Msr::kIA32_SYSENTER_ESP) ? m.sysenter_esp : m.sysenter_eip);
}
MsrResult write_sysenter(Cpu& c, uint32_t i, uint64_t v) {
  MsrState& m = c.state.msr;
  if (i == msr_index(Msr::kIA32_SYSENTER_CS)) { m.sysenter_cs = v; return kOk; }  // 63:16 unused, read/write
  if (!is_canonical(v)) return kGp;  // ESP and EIP hold linear addresses
  (i == msr_index(Msr::kIA32_SYSENTER_ESP) ? m.sysenter_esp : m.sysenter_eip) = v;
  return kOk;
}

// ---- machine check (SDM Vol. 3 §16.3.1) ------------------------------------------------------
// IA32_MCG_CAP: no error-reporting banks, no MCG_CTL, no extended state, no LMCE.
MsrResult read_mcg_cap(Cpu&, uint32_t, uint64_t& v) { return ok_read(v, 0); }
// IA32_MCG_STATUS: RIPV, EIPV, MCIP; LMCE_S (bit 3) is reserved without LMCE.
MsrResult read_mcg_status(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.mcg_status); }
MsrResult write_mcg_status(Cpu& c, uint32_t, uint64_t v) {
  if (v & ~0x7ull) return kGp;
  c.state.msr.mcg_status = v;
  return kOk;
}

// ---- IA32_MISC_ENABLE (SDM Vol. 4 Table 2-2), with KVM's rules --------------------------------
// BTS/PEBS "unavailable" read as 1 and may not change; "performance monitoring available"
// reads as 0 and writes to it are ignored; other bits are stored. Limit-CPUID-maxval acts on
// CPUID (insn/misc.cpp).
constexpr uint64_t kMiscEnableRoOnes = misc_enable::kBtsUnavailable | misc_enable::kPebsUnavailable;
MsrResult read_misc_enable(Cpu& c, uint32_t, uint64_t& v) {
  return ok_read(v, (c.state.msr.misc_enable & ~misc_enable::kPerfMonAvailable) | kMiscEnableRoOnes);
}
MsrResult write_misc_enable(Cpu& c, uint32_t, uint64_t v) {
  if ((v & kMiscEnableRoOnes) != kMiscEnableRoOnes) return kGp;
  c.state.msr.misc_enable = v & ~misc_enable::kPerfMonAvailable;
  return kOk;
}

// ---- IA32_DEBUGCTL (SDM Vol. 3 §18.4.1) --------------------------------------------------------
// The core implements neither last-branch recording nor branch single-step (BTF), and has no
// bus-lock detection or PMU freeze bits. As KVM does, writes of LBR and BTF are accepted and
// dropped (software probes them), every other bit is reserved, and the register reads 0.
constexpr uint64_t kDebugctlLbr = 1ull << 0, kDebugctlBtf = 1ull << 1;
MsrResult read_debugctl(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.debugctl); }
MsrResult write_debugctl(Cpu& c, uint32_t, uint64_t v) {
  if (v & ~(kDebugctlLbr | kDebugctlBtf)) return kGp;
  c.state.msr.debugctl = 0;
  return kOk;
}

// ---- IA32_EFER (SDM Vol. 3 §2.2.1, rules in Cpu::set_efer) ---------------------------------------
MsrResult read_efer(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.efer); }
MsrResult write_efer(Cpu& c, uint32_t, uint64_t v) {
  if (c.set_efer(v) == Status::kNext) return kOk;
  c.clear_pending_event();  // the file reports; its caller raises (see msr_file.h)
  return kGp;
}

// ---- SYSCALL/SYSRET and segment bases (SDM Vol. 3 §5.8.8, §3.4.4) ---------------------------
MsrResult read_star(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.star); }
MsrResult write_star(Cpu& c, uint32_t, uint64_t v) { c.state.msr.star = v; return kOk; }
MsrResult read_lstar(Cpu& c, uint32_t i, uint64_t& v) {
  return ok_read(v, i == msr_index(Msr::kIA32_LSTAR) ? c.state.msr.lstar : c.state.msr.cstar);
}
MsrResult write_lstar(Cpu& c, uint32_t i, uint64_t v) {
  if (!is_canonical(v)) return kGp;
  (i == msr_index(Msr::kIA32_LSTAR) ? c.state.msr.lstar : c.state.msr.cstar) = v;
  return kOk;
}
// IA32_FMASK: bits 63:32 reserved.
MsrResult read_fmask(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.fmask); }
MsrResult write_fmask(Cpu& c, uint32_t, uint64_t v) {
  if (v >> 32) return kGp;
  c.state.msr.fmask = v;
  return kOk;
}

MsrResult read_seg_base(Cpu& c, uint32_t i, uint64_t& v) {
  if (i == msr_index(Msr::kIA32_KERNEL_GS_BASE)) return ok_read(v, c.state.msr.kernel_gs_base);
  const SegReg s = i == msr_index(Msr::kIA32_FS_BASE) ? SegReg::kFS : SegReg::kGS;
  return ok_read(v, c.state.seg[unsigned(s)].base);
}
MsrResult write_seg_base(Cpu& c, uint32_t i, uint64_t v) {
  if (!is_canonical(v)) return kGp;
  if (i == msr_index(Msr::kIA32_KERNEL_GS_BASE)) { c.state.msr.kernel_gs_base = v; return kOk; }
  const SegReg s = i == msr_index(Msr::kIA32_FS_BASE) ? SegReg::kFS : SegReg::kGS;
  c.state.seg[unsigned(s)].base = v;
  c.refresh_segment(s);
  return kOk;
}

// ---- IA32_TSC_AUX (RDTSCP, RDPID): bits 63:32 reserved -----------------------------------------
MsrResult read_tsc_aux(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.tsc_aux); }
MsrResult write_tsc_aux(Cpu& c, uint32_t, uint64_t v) {
  if (v >> 32) return kGp;
  c.state.msr.tsc_aux = v;
  return kOk;
}

// ---- IA32_XSS: the supervisor state components CPUID.(EAX=0DH,ECX=1):EDX:ECX enumerates ----------
MsrResult read_xss(Cpu& c, uint32_t, uint64_t& v) { return ok_read(v, c.state.msr.xss); }
MsrResult write_xss(Cpu& c, uint32_t, uint64_t v) {
  const CpuidResult r = c.model().cpuid(0xd, 1);
  if (v & ~(uint64_t(r.ecx) | (uint64_t(r.edx) << 32))) return kGp;
  c.state.msr.xss = v;
  return kOk;
}

// ---- the table ------------------------------------------------------------------------------------
using Present = bool (*)(const CpuModel&);
struct ArchMsr {
  uint32_t first, last;
  Present present;  // nullptr: every model
  MsrResult (*read)(Cpu&, uint32_t, uint64_t&);
  MsrResult (*write)(Cpu&, uint32_t, uint64_t);  // nullptr: read-only
};

template <Feature F> bool has(const CpuModel& m) { return m.has(F); }
// EFER exists with any of the features that define its bits (SDM Vol. 4 Table 2-2: "If
// CPUID.80000001H:EDX.[bit 20] or CPUID.80000001H:EDX.[bit 29]").
bool has_efer(const CpuModel& m) { return m.has(Feature::kLm) || m.has(Feature::kNx) || m.has(Feature::kSyscall); }
bool has_star(const CpuModel& m) { return m.has(Feature::kLm) || m.has(Feature::kSyscall); }
bool has_tsc_aux(const CpuModel& m) { return m.has(Feature::kRdtscp) || m.has(Feature::kRdpid); }

constexpr uint32_t idx(Msr m) { return msr_index(m); }

const ArchMsr kArchMsrs[] = {
    {idx(Msr::kIA32_TIME_STAMP_COUNTER), idx(Msr::kIA32_TIME_STAMP_COUNTER), has<Feature::kTsc>, read_tsc, write_tsc},
    {idx(Msr::kIA32_PLATFORM_ID), idx(Msr::kIA32_PLATFORM_ID), nullptr, read_platform_id, nullptr},
    {idx(Msr::kIA32_APIC_BASE), idx(Msr::kIA32_APIC_BASE), has<Feature::kApic>, read_apic_base, write_apic_base},
    {idx(Msr::kIA32_FEATURE_CONTROL), idx(Msr::kIA32_FEATURE_CONTROL), nullptr, read_feature_control, write_feature_control},
    {idx(Msr::kIA32_TSC_ADJUST), idx(Msr::kIA32_TSC_ADJUST), has<Feature::kTscAdjust>, read_tsc_adjust, write_tsc_adjust},
    {idx(Msr::kIA32_BIOS_SIGN_ID), idx(Msr::kIA32_BIOS_SIGN_ID), nullptr, read_bios_sign_id, write_bios_sign_id},
    {idx(Msr::kIA32_MTRRCAP), idx(Msr::kIA32_MTRRCAP), has<Feature::kMtrr>, read_mtrrcap, nullptr},
    {idx(Msr::kIA32_SYSENTER_CS), idx(Msr::kIA32_SYSENTER_EIP), has<Feature::kSep>, read_sysenter, write_sysenter},
    {idx(Msr::kIA32_MCG_CAP), idx(Msr::kIA32_MCG_CAP), has<Feature::kMca>, read_mcg_cap, nullptr},
    {idx(Msr::kIA32_MCG_STATUS), idx(Msr::kIA32_MCG_STATUS), has<Feature::kMca>, read_mcg_status, write_mcg_status},
    {idx(Msr::kIA32_MISC_ENABLE), idx(Msr::kIA32_MISC_ENABLE), nullptr, read_misc_enable, write_misc_enable},
    {idx(Msr::kIA32_DEBUGCTL), idx(Msr::kIA32_DEBUGCTL), nullptr, read_debugctl, write_debugctl},
    {idx(Msr::kIA32_MTRR_PHYSBASE0), idx(Msr::kIA32_MTRR_PHYSMASK7), has<Feature::kMtrr>, read_mtrr_var, write_mtrr_var},
    {idx(Msr::kIA32_MTRR_FIX64K_00000), idx(Msr::kIA32_MTRR_FIX64K_00000), has<Feature::kMtrr>, read_mtrr_fixed, write_mtrr_fixed},
    {idx(Msr::kIA32_MTRR_FIX16K_80000), idx(Msr::kIA32_MTRR_FIX16K_A0000), has<Feature::kMtrr>, read_mtrr_fixed, write_mtrr_fixed},
    {idx(Msr::kIA32_MTRR_FIX4K_C0000), idx(Msr::kIA32_MTRR_FIX4K_F8000), has<Feature::kMtrr>, read_mtrr_fixed, write_mtrr_fixed},
    {idx(Msr::kIA32_PAT), idx(Msr::kIA32_PAT), has<Feature::kPat>, read_pat, write_pat},
    {idx(Msr::kIA32_MTRR_DEF_TYPE), idx(Msr::kIA32_MTRR_DEF_TYPE), has<Feature::kMtrr>, read_mtrr_def_type, write_mtrr_def_type},
    {idx(Msr::kIA32_XSS), idx(Msr::kIA32_XSS), has<Feature::kXsaves>, read_xss, write_xss},
    {idx(Msr::kIA32_EFER), idx(Msr::kIA32_EFER), has_efer, read_efer, write_efer},
    {idx(Msr::kIA32_STAR), idx(Msr::kIA32_STAR), has_star, read_star, write_star},
    {idx(Msr::kIA32_LSTAR), idx(Msr::kIA32_CSTAR), has<Feature::kLm>, read_lstar, write_lstar},
    {idx(Msr::kIA32_FMASK), idx(Msr::kIA32_FMASK), has<Feature::kLm>, read_fmask, write_fmask},
    {idx(Msr::kIA32_FS_BASE), idx(Msr::kIA32_KERNEL_GS_BASE), has<Feature::kLm>, read_seg_base, write_seg_base},
    {idx(Msr::kIA32_TSC_AUX), idx(Msr::kIA32_TSC_AUX), has_tsc_aux, read_tsc_aux, write_tsc_aux},
};

const ArchMsr* find(const Cpu& c, uint32_t index) {
  for (const ArchMsr& m : kArchMsrs)
    if (index >= m.first && index <= m.last) return (!m.present || m.present(c.model())) ? &m : nullptr;
  return nullptr;
}

}  // namespace

bool arch_msr_exists(const Cpu& c, uint32_t index) { return find(c, index) != nullptr; }

MsrResult arch_read_msr(Cpu& c, uint32_t index, uint64_t& value) {
  const ArchMsr* m = find(c, index);
  return m ? m->read(c, index, value) : kGp;
}

MsrResult arch_write_msr(Cpu& c, uint32_t index, uint64_t value) {
  const ArchMsr* m = find(c, index);
  return m && m->write ? m->write(c, index, value) : kGp;
}

}  // namespace nestvm::cpu
