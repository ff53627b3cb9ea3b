// Instruction class: CPUID RDRAND RDSEED LFENCE SFENCE MFENCE CLFLUSH CLFLUSHOPT PAUSE
// PREFETCHh PREFETCHW UD0 UD1 UD2 (SDM Vol. 2, each instruction's "Operation").
#include <cpuid.h>
#include <sys/random.h>

#include "arch/msr_index.h"
#include "cpu/insn/operand.h"
#include "cpu/msr_file.h"
#include "cpu/vmx/nonroot.h"
#include "arch/vmx_insn_info.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

// ---- CPUID -----------------------------------------------------------------------------------

constexpr uint32_t kGenuineIntelEbx = 0x756e6547;  // "Genu"

// Bytes of the XSAVE area for the components in `mask` (SDM Vol. 1 §13.4): the legacy region
// and header (576 bytes), then each extended component at its CPUID.(0DH,i) offset (standard
// format) or packed in index order, 64-byte aligned where CPUID.(0DH,i):ECX[1] says (compacted).
uint32_t xsave_size(const CpuModel& m, uint64_t mask, bool compacted) {
  uint32_t size = 576;
  for (unsigned k = 2; k < 63; ++k) {
    if (!((mask >> k) & 1)) continue;
    const CpuidResult r = m.cpuid(0xd, k);
    if (compacted) {
      if (r.ecx & 2) size = (size + 63) & ~63u;
      size += r.eax;
    } else if (r.ebx + r.eax > size) {
      size = r.ebx + r.eax;
    }
  }
  return size;
}

// CPUID with the bits hardware computes from current state (SDM Vol. 2A CPUID, Table 3-8). In VMX
// non-root operation it exits unconditionally, at any CPL (SDM §26.1.2).
Status cpuid(Cpu& c, const Insn& i) {
  if (c.vmx_non_root()) return c.vm_exit_for(i, ExitReason::CPUID);
  const CpuModel& m = c.model();
  uint32_t leaf = uint32_t(c.state.gpr[kRax]);
  uint32_t sub = uint32_t(c.state.gpr[kRcx]);
  uint32_t max_basic = m.cpuid(0, 0).eax;
  // IA32_MISC_ENABLE[22] limits the reported maximum basic leaf to 2 (SDM Vol. 4 Table 2-2).
  if ((c.state.msr.misc_enable & misc_enable::kLimitCpuidMaxval) && max_basic > 2) max_basic = 2;
  const uint32_t max_ext = m.cpuid(0x80000000, 0).eax;
  // A leaf above the maximum returns the highest basic leaf (Intel; the models' rule).
  if ((leaf < 0x40000000 && leaf > max_basic) || (leaf >= 0x80000000 && leaf > max_ext)) {
    leaf = max_basic;
    sub = 0;
  }
  CpuidResult r = m.cpuid(leaf, sub);
  switch (leaf) {
    case 0:
      r.eax = max_basic;
      break;
    case 1:
      r.ebx = (r.ebx & 0x00ffffffu) | (c.apic_id << 24);
      r.ecx = (r.ecx & ~(1u << 27)) | ((c.state.cr4 & cr4::kOSXSAVE) ? 1u << 27 : 0);
      if (!(c.state.msr.apic_base & apic_base::kEnable)) r.edx &= ~(1u << 9);
      // CPUID(1) loads the microcode revision into IA32_BIOS_SIGN_ID[63:32] (SDM Vol. 3 §10.11.7.1).
      if (m.cpuid(0, 0).ebx == kGenuineIntelEbx) c.state.msr.bios_sign_id = uint64_t(kMicrocodeRevision) << 32;
      break;
    case 7:
      if (sub == 0) r.ecx = (r.ecx & ~(1u << 4)) | ((c.state.cr4 & cr4::kPKE) ? 1u << 4 : 0);
      break;
    case 0xb: case 0x1f:
      r.edx = c.apic_id;  // x2APIC ID
      break;
    case 0xd:
      if (sub == 0) r.ebx = xsave_size(m, c.state.xcr0, false);
      if (sub == 1 && (r.eax & (1u << 3))) r.ebx = xsave_size(m, c.state.xcr0 | c.state.msr.xss, true);
      break;
    default:
      break;
  }
  c.set_reg(4, kRax, r.eax);
  c.set_reg(4, kRbx, r.ebx);
  c.set_reg(4, kRcx, r.ecx);
  c.set_reg(4, kRdx, r.edx);
  return Status::kNext;
}

// ---- RDRAND, RDSEED ----------------------------------------------------------------------------

bool host_has(unsigned leaf, unsigned reg, unsigned bit) {
  unsigned r[4] = {};
  if (!__get_cpuid_count(leaf, 0, &r[0], &r[1], &r[2], &r[3])) return false;
  return (r[reg] >> bit) & 1;
}
const bool kHostRdrand = host_has(1, 2, 30);
const bool kHostRdseed = host_has(7, 1, 18);

// The kernel's CSPRNG: for hosts without the instructions, and when the host's entropy source
// stays busy.
uint64_t os_random() {
  uint64_t v = 0;
  size_t got = 0;
  while (got < sizeof v) {
    const ssize_t n = getrandom(reinterpret_cast<uint8_t*>(&v) + got, sizeof v - got, 0);
    if (n > 0) got += size_t(n);
  }
  return v;
}

template <bool Seed>
uint64_t host_random() {
  if (Seed ? kHostRdseed : kHostRdrand) {
    for (int k = 0; k < 32; ++k) {
      uint64_t v;
      unsigned char ok;
      if (Seed) asm volatile("rdseed %0; setc %1" : "=r"(v), "=qm"(ok) : : "cc");
      else asm volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok) : : "cc");
      if (ok) return v;
    }
  }
  return os_random();
}

// A random value is always available: CF = 1, OF SF ZF AF PF = 0. "RDRAND exiting" and
// "RDSEED exiting" report the destination and operand size (SDM §26.1.3, §28.2.4).
template <unsigned N, bool Seed> struct Rdrand {
  static Status run(Cpu& c, const Insn& i) {
    if (c.vmx_non_root() && c.vmx_controls().has2(Seed ? proc2::kRdseedExiting : proc2::kRdrandExiting))
      return c.vm_exit_for(i, Seed ? ExitReason::RDSEED : ExitReason::RDRAND, 0, insn_info::rdrand(i.reg, N));
    c.set_reg(N, i.reg, host_random<Seed>());
    c.set_status_flags(rflags::kCF);
    return Status::kNext;
  }
};

template <bool Seed>
Handler select_rdrand(const DecodeInput& in, Insn& i) {
  if (!in.model.has(Seed ? Feature::kRdseed : Feature::kRdrand) || !is_reg(in.ops[0])) return nullptr;
  i.reg = reg_operand(in.ops[0]);
  switch (in.ops[0].size) {
    case 16: return &Rdrand<2, Seed>::run;
    case 32: return &Rdrand<4, Seed>::run;
    default: return &Rdrand<8, Seed>::run;
  }
}

// ---- fences, cache-line flushes, hints ----------------------------------------------------------

// Guest memory is host memory: the host's fence orders this vCPU's accesses as the guest's would.
Status lfence(Cpu&, const Insn&) { __builtin_ia32_lfence(); return Status::kNext; }
Status sfence(Cpu&, const Insn&) { __builtin_ia32_sfence(); return Status::kNext; }
Status mfence(Cpu&, const Insn&) { __builtin_ia32_mfence(); return Status::kNext; }

template <Feature F, Handler H>
Handler select_gated(const DecodeInput& in, Insn&) { return in.model.has(F) ? H : nullptr; }

// CLFLUSH/CLFLUSHOPT: the operand is checked as a one-byte read (segment, canonical form,
// paging: #GP, #SS, #PF) without reading it, since a read of MMIO would have side effects.
// Caches are not modelled, so nothing else happens.
Status clflush(Cpu& c, const Insn& i) {
  const SegReg s = seg_of(i);
  const uint64_t off = c.effective_address(i);
  const SegCache& sc = c.seg_cache(s);
  if (off < sc.rd_lo || off > sc.rd_hi) return c.seg_fault(s);
  const uint64_t la = (sc.base + off) & (c.in_64bit_mode() ? ~0ull : 0xffffffffull);
  const TlbEntry& e = c.tlb().entry(c.mmu_idx(), la);
  if (e.tag_read == ((la & kPageMask) | c.tlb().tag()) && is_canonical(la)) return Status::kNext;
  uint8_t* host;
  uint64_t pa;
  return c.translate(la, AccessKind::kRead, c.mmu_idx(), s, host, pa);
}

// PAUSE exiting and PAUSE-loop exiting in VMX non-root operation: vmx/pause_loop.cpp.
Status pause(Cpu& c, const Insn& i) {
  if (c.vmx_non_root()) {
    const Status st = vmx::pause(c, i);
    if (st != Status::kNext) return st;
  }
  __builtin_ia32_pause();
  return Status::kNext;
}

// PREFETCHh/PREFETCHW are hints: no access, no fault (SDM Vol. 2 PREFETCHh).
Status prefetch(Cpu&, const Insn&) { return Status::kNext; }

// UD0, UD1, UD2: the architecturally undefined opcodes (SDM Vol. 2 UD).
Status ud(Cpu& c, const Insn&) { return c.fault(Vector::kUD); }

Handler select_cpuid(const DecodeInput&, Insn&) { return &cpuid; }
Handler select_ud(const DecodeInput&, Insn&) { return &ud; }
Handler select_pause(const DecodeInput&, Insn&) { return &pause; }

}  // namespace

void register_misc(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_CPUID, &select_cpuid);
  t.add(ZYDIS_MNEMONIC_RDRAND, &select_rdrand<false>);
  t.add(ZYDIS_MNEMONIC_RDSEED, &select_rdrand<true>);
  t.add(ZYDIS_MNEMONIC_LFENCE, &select_gated<Feature::kSse2, &lfence>);
  t.add(ZYDIS_MNEMONIC_MFENCE, &select_gated<Feature::kSse2, &mfence>);
  t.add(ZYDIS_MNEMONIC_SFENCE, &select_gated<Feature::kSse, &sfence>);
  t.add(ZYDIS_MNEMONIC_CLFLUSH, &select_gated<Feature::kClflush, &clflush>);
  t.add(ZYDIS_MNEMONIC_CLFLUSHOPT, &select_gated<Feature::kClflushopt, &clflush>);
  t.add(ZYDIS_MNEMONIC_PAUSE, &select_pause);
  // PREFETCHh came with SSE; PREFETCH and PREFETCHW (0F 0D /0, /1) with CPUID.80000001H:ECX.PRFCHW.
  // PREFETCHWT1 (0F 0D /2) needs a feature no model has: #UD.
  t.add(ZYDIS_MNEMONIC_PREFETCHT0, &select_gated<Feature::kSse, &prefetch>);
  t.add(ZYDIS_MNEMONIC_PREFETCHT1, &select_gated<Feature::kSse, &prefetch>);
  t.add(ZYDIS_MNEMONIC_PREFETCHT2, &select_gated<Feature::kSse, &prefetch>);
  t.add(ZYDIS_MNEMONIC_PREFETCHNTA, &select_gated<Feature::kSse, &prefetch>);
  t.add(ZYDIS_MNEMONIC_PREFETCH, &select_gated<Feature::kPrefetchw, &prefetch>);
  t.add(ZYDIS_MNEMONIC_PREFETCHW, &select_gated<Feature::kPrefetchw, &prefetch>);
  t.add(ZYDIS_MNEMONIC_UD0, &select_ud);
  t.add(ZYDIS_MNEMONIC_UD1, &select_ud);
  t.add(ZYDIS_MNEMONIC_UD2, &select_ud);
}

}  // namespace nestvm::cpu
