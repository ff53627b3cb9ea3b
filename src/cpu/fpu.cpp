// x87/MMX/SSE state helpers: tag words, the MMX transition, the FXSAVE image, XINUSE.
#include "cpu/fpu.h"

#include <cstring>

namespace nestvm::cpu::fpu {

namespace {

template <typename T> void put(uint8_t* img, unsigned off, T v) { std::memcpy(img + off, &v, sizeof v); }
template <typename T> T get(const uint8_t* img, unsigned off) {
  T v;
  std::memcpy(&v, img + off, sizeof v);
  return v;
}

// Tag of a non-empty register from its 80-bit contents (SDM Vol. 1 §8.1.7): exponent all ones
// (infinity, NaN), a zero exponent with a nonzero significand (denormal) or a clear integer bit
// with a nonzero exponent (unnormal) are special.
unsigned classify(const std::array<uint8_t, 16>& r) {
  const uint64_t mant = get<uint64_t>(r.data(), 0);
  const unsigned exp = get<uint16_t>(r.data(), 8) & 0x7fff;
  if (exp == 0x7fff) return 2;
  if (exp == 0) return mant == 0 ? 1 : 2;
  return (mant >> 63) ? 0 : 2;
}

}  // namespace

uint8_t abridged_tags(uint16_t ftw) {
  uint8_t a = 0;
  for (unsigned i = 0; i < 8; ++i)
    if (((ftw >> (2 * i)) & 3) != 3) a |= uint8_t(1u << i);
  return a;
}

uint16_t full_tags(uint8_t abridged, const FpuState& f) {
  uint16_t ftw = 0;
  for (unsigned i = 0; i < 8; ++i)
    ftw |= uint16_t(((abridged >> i) & 1 ? classify(f.st[i]) : 3u) << (2 * i));
  return ftw;
}

void mmx_write(FpuState& f, unsigned n, uint64_t v) {
  std::memcpy(f.st[n].data(), &v, 8);
  f.st[n][8] = 0xff;
  f.st[n][9] = 0xff;
}

void init_x87(FpuState& f) {
  f.fcw = kFcwInit;
  f.fsw = 0;
  f.ftw = 0xffff;
  f.fop = 0;
  f.fip = f.fdp = 0;
  f.fcs = f.fds = 0;
  for (auto& r : f.st) r.fill(0);
}

// The data registers are stored in stack order: slot i holds ST(i) = R[(TOP + i) mod 8]; the
// six bytes above each 80-bit value are written as zero.
void save_x87(const FpuState& f, uint8_t* img, bool rex_w) {
  put<uint16_t>(img, 0, f.fcw);
  put<uint16_t>(img, 2, f.fsw);
  img[4] = abridged_tags(f.ftw);
  img[5] = 0;
  put<uint16_t>(img, 6, f.fop & kFopMask);
  if (rex_w) {
    put<uint64_t>(img, 8, f.fip);
    put<uint64_t>(img, 16, f.fdp);
  } else {
    put<uint32_t>(img, 8, uint32_t(f.fip));
    put<uint32_t>(img, 12, f.fcs);  // FCS and the reserved bytes 14-15
    put<uint32_t>(img, 16, uint32_t(f.fdp));
    put<uint32_t>(img, 20, f.fds);
  }
  const unsigned top = f.top();
  for (unsigned i = 0; i < 8; ++i) {
    uint8_t* slot = img + 32 + 16 * i;
    std::memcpy(slot, f.st[(top + i) & 7].data(), 10);
    std::memset(slot + 10, 0, 6);
  }
}

void save_mxcsr(const FpuState& f, uint8_t* img) {
  put<uint32_t>(img, 24, f.mxcsr);
  put<uint32_t>(img, 28, kMxcsrMask);
}

void save_xmm(const FpuState& f, uint8_t* img, unsigned n) {
  std::memcpy(img + kXmmOffset, f.xmm.data(), 16 * n);
}

// FCW is stored as FLDCW stores it and FSW gets ES/B from the new masks, as the processor does
// on FXRSTOR. The 32-bit format's FIP/FDP are zero-extended; the 64-bit format has no FCS/FDS.
void load_x87(FpuState& f, const uint8_t* img, bool rex_w) {
  f.fcw = uint16_t((get<uint16_t>(img, 0) & kFcwDefined) | kFcwFixed1);
  f.fsw = with_summary(get<uint16_t>(img, 2), f.fcw);
  f.fop = get<uint16_t>(img, 6) & kFopMask;
  if (rex_w) {
    f.fip = get<uint64_t>(img, 8);
    f.fdp = get<uint64_t>(img, 16);
    f.fcs = f.fds = 0;
  } else {
    f.fip = get<uint32_t>(img, 8);
    f.fcs = get<uint16_t>(img, 12);
    f.fdp = get<uint32_t>(img, 16);
    f.fds = get<uint16_t>(img, 20);
  }
  const unsigned top = f.top();
  for (unsigned i = 0; i < 8; ++i) {
    auto& r = f.st[(top + i) & 7];
    std::memcpy(r.data(), img + 32 + 16 * i, 10);
    std::memset(r.data() + 10, 0, 6);
  }
  f.ftw = full_tags(img[4], f);
}

void load_xmm(FpuState& f, const uint8_t* img, unsigned n) {
  std::memcpy(f.xmm.data(), img + kXmmOffset, 16 * n);
}

uint64_t xinuse(const FpuState& f, unsigned nxmm) {
  uint64_t r = 0;
  bool x87_init = f.fcw == kFcwInit && f.fsw == 0 && f.ftw == 0xffff && f.fop == 0 && f.fip == 0 && f.fdp == 0 &&
                  f.fcs == 0 && f.fds == 0;
  for (unsigned i = 0; i < 8 && x87_init; ++i)
    for (unsigned b = 0; b < 10; ++b) x87_init &= f.st[i][b] == 0;
  if (!x87_init) r |= arch::xcr0::kX87;
  for (unsigned i = 0; i < nxmm; ++i)
    for (uint8_t b : f.xmm[i])
      if (b) return r | arch::xcr0::kSSE;
  return r;
}

}  // namespace nestvm::cpu::fpu
