// x87, MMX and SSE state rules shared by the instruction classes that use that state
// (insn/fpu_state.cpp, insn/sse_move.cpp, and x87 arithmetic): the CR0/CR4 availability checks
// (SDM Vol. 3 §2.5 and Table 2-2), pending x87 exceptions (Vol. 1 §8.6), tag words (Vol. 1
// §8.1.7, §10.5.1.1), the MMX state transition (Vol. 1 §9.5.1), the legacy FXSAVE image
// (Vol. 1 Tables 10-2 and 10-3) and XSAVE init tracking (Vol. 1 §13.6).
#pragma once
#include <cstdint>

#include "arch/cr.h"
#include "cpu/cpu.h"

namespace nestvm::cpu::fpu {

// ---- register fields --------------------------------------------------------------------
inline constexpr uint16_t kFcwDefined = 0x1f3f;  // masks, PC, RC, X; bit 6 reads as 1, 7 and 13-15 as 0
inline constexpr uint16_t kFcwFixed1 = 0x0040;
inline constexpr uint16_t kFcwInit = 0x037f;
inline constexpr uint16_t kFswExceptions = 0x003f;  // IE DE ZE OE UE PE
inline constexpr uint16_t kFswEs = 1u << 7;         // exception summary
inline constexpr uint16_t kFswB = 1u << 15;         // busy (mirrors ES)
inline constexpr uint16_t kFswTop = 7u << 11;
inline constexpr uint16_t kFopMask = 0x07ff;        // the last opcode has 11 bits
// MXCSR_MASK as FXSAVE reports it: every bit of MXCSR[15:0] is defined (DAZ included), the
// rest are reserved (SDM Vol. 1 §11.6.6).
inline constexpr uint32_t kMxcsrMask = 0xffff;
inline constexpr uint32_t kMxcsrInit = 0x1f80;

// FSW with ES and B recomputed from the exception flags the control word leaves unmasked, as
// FLDCW, FXRSTOR and XRSTOR do.
constexpr uint16_t with_summary(uint16_t fsw, uint16_t fcw) {
  const bool es = (fsw & ~fcw & kFswExceptions) != 0;
  return uint16_t((fsw & ~(kFswEs | kFswB)) | (es ? (kFswEs | kFswB) : 0));
}

// ---- availability (SDM Vol. 3 Table 2-2; each instruction's exception list) --------------
// x87 instructions: #NM if CR0.EM or CR0.TS.
inline Status check_x87(Cpu& c) {
  return (c.state.cr0 & (arch::cr0::kEM | arch::cr0::kTS)) ? c.fault(arch::Vector::kNM) : Status::kNext;
}
// WAIT/FWAIT: #NM only if CR0.MP and CR0.TS.
inline Status check_wait(Cpu& c) {
  constexpr uint64_t kMpTs = arch::cr0::kMP | arch::cr0::kTS;
  return (c.state.cr0 & kMpTs) == kMpTs ? c.fault(arch::Vector::kNM) : Status::kNext;
}
// A pending unmasked x87 exception (FSW.ES = 1) is reported by the next waiting x87
// instruction, FWAIT and MMX instructions: #MF with CR0.NE = 1. With CR0.NE = 0 the processor
// would signal FERR# to the chipset (IRQ 13), which is not modelled: nothing is raised.
inline Status check_pending(Cpu& c) {
  if (__builtin_expect(!(c.state.fpu.fsw & kFswEs), 1)) return Status::kNext;
  return (c.state.cr0 & arch::cr0::kNE) ? c.fault(arch::Vector::kMF) : Status::kNext;
}
// MMX instructions (and EMMS): #UD if CR0.EM, #NM if CR0.TS, then #MF if pending.
inline Status check_mmx(Cpu& c) {
  if (__builtin_expect(c.state.cr0 & (arch::cr0::kEM | arch::cr0::kTS), 0))
    return c.fault((c.state.cr0 & arch::cr0::kEM) ? arch::Vector::kUD : arch::Vector::kNM);
  return check_pending(c);
}
// SSE instructions: #UD if CR0.EM or CR4.OSFXSR = 0, then #NM if CR0.TS.
inline Status check_sse(Cpu& c) {
  if (__builtin_expect((c.state.cr0 & (arch::cr0::kEM | arch::cr0::kTS)) || !(c.state.cr4 & arch::cr4::kOSFXSR), 0)) {
    if ((c.state.cr0 & arch::cr0::kEM) || !(c.state.cr4 & arch::cr4::kOSFXSR)) return c.fault(arch::Vector::kUD);
    return c.fault(arch::Vector::kNM);
  }
  return Status::kNext;
}
// FXSAVE/FXRSTOR: #UD if CR0.EM, #NM if CR0.TS (CR4.OSFXSR only selects whether the SSE part
// is saved, which this processor always does).
inline Status check_fxsr(Cpu& c) {
  if (__builtin_expect(c.state.cr0 & (arch::cr0::kEM | arch::cr0::kTS), 0))
    return c.fault((c.state.cr0 & arch::cr0::kEM) ? arch::Vector::kUD : arch::Vector::kNM);
  return Status::kNext;
}

// The linear address of a memory operand, for the alignment checks of FXSAVE, XSAVE and the
// aligned SSE moves ("not aligned on a 16-byte boundary, regardless of segment").
inline uint64_t linear_address(const Cpu& c, SegReg s, uint64_t off) {
  const uint64_t la = c.seg_cache(s).base + off;
  return c.in_64bit_mode() ? la : la & 0xffffffffull;
}

// ---- tags and MMX ----------------------------------------------------------------------
// Abridged tag (FXSAVE): bit i = 1 when physical register Ri is not empty.
uint8_t abridged_tags(uint16_t ftw);
// Full tag word from an abridged one: empty stays empty; the others are classified from the
// register contents as valid (00), zero (01) or special (10) (SDM Vol. 1 §10.5.1.1).
uint16_t full_tags(uint8_t abridged, const FpuState& f);

// An MMX instruction other than EMMS sets TOP to 0 and every tag to valid (SDM Vol. 1 Table 9-3).
inline void mmx_enter(FpuState& f) {
  f.fsw &= uint16_t(~kFswTop);
  f.ftw = 0;
}
// An MMX write of `v` to MMn also sets the sign and exponent bits (79:64) of Rn to all 1s.
void mmx_write(FpuState& f, unsigned n, uint64_t v);
inline uint64_t mmx_read(const FpuState& f, unsigned n) {
  uint64_t v;
  __builtin_memcpy(&v, f.st[n].data(), 8);
  return v;
}

// x87 state in its initial configuration (XRSTOR with XSTATE_BV[0] = 0, SDM Vol. 1 §13.6):
// FNINIT's values plus zeroed data registers.
void init_x87(FpuState& f);

// ---- FXSAVE image (SDM Vol. 1 Tables 10-2 and 10-3) ------------------------------------
inline constexpr unsigned kImageBytes = 512;
inline constexpr unsigned kXmmOffset = 160;
// x87 part: bytes 0-23 (without 24-31) and the ST0-ST7 slots at 32-159. rex_w selects the
// 64-bit FIP/FDP format (FXSAVE64) instead of FIP/FCS/FDP/FDS.
void save_x87(const FpuState& f, uint8_t* img, bool rex_w);
// MXCSR and MXCSR_MASK (bytes 24-31).
void save_mxcsr(const FpuState& f, uint8_t* img);
// XMM0..XMM(n-1) at bytes 160 + 16i.
void save_xmm(const FpuState& f, uint8_t* img, unsigned n);
// Loads the x87 part, with FCW and ES/B normalized and the full tag word rebuilt.
void load_x87(FpuState& f, const uint8_t* img, bool rex_w);
inline uint32_t image_mxcsr(const uint8_t* img) {
  uint32_t v;
  __builtin_memcpy(&v, img + 24, 4);
  return v;
}
void load_xmm(FpuState& f, const uint8_t* img, unsigned n);

// ---- XSAVE ------------------------------------------------------------------------------
inline constexpr unsigned kXsaveHeader = 512;  // XSTATE_BV at +0, XCOMP_BV at +8
inline constexpr unsigned kXsaveBytes = 576;    // legacy region + header (x87 and SSE only)
// XINUSE (SDM Vol. 1 §13.6) computed exactly: bit 0 unless x87 state is in its initial
// configuration, bit 1 unless XMM0..XMM(nxmm-1) are all zero (MXCSR does not count).
uint64_t xinuse(const FpuState& f, unsigned nxmm);

}  // namespace nestvm::cpu::fpu
