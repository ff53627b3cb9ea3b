// Instruction class: system instructions. MOV to/from CRn and DRn, LGDT/LIDT, SGDT/SIDT, CLTS,
// LMSW, SMSW, INVLPG, INVPCID, HLT, CLI, STI, WBINVD, INVD, MONITOR, MWAIT, SWAPGS (SDM Vol. 2,
// each instruction's "Operation" and exception lists). LLDT/LTR/SLDT/STR live with the other
// descriptor loads in segment.cpp. In VMX non-root operation each consults its VM-execution
// controls (cpu/vmx/nonroot.h) after the checks that take priority over a VM exit.
#include <array>
#include <cstring>
#include <utility>

#include "cpu/insn/delegates.h"
#include "cpu/insn/operand.h"
#include "cpu/vmx/nonroot.h"
#include "arch/vmx_insn_info.h"

namespace nestvm::cpu {

namespace {

using namespace arch;

// "#GP(0) if the current privilege level is not 0". CPL is 0 in real mode and 3 in
// virtual-8086 mode, so this one test gives every mode its exception.
inline bool cpl0(const Cpu& c) { return c.cpl() == 0; }

// SDM Vol. 3 §2.5: with CR4.UMIP = 1, SGDT, SIDT, SLDT, SMSW and STR are #GP(0) at CPL > 0.
inline bool umip_blocks(const Cpu& c) { return (c.state.cr4 & cr4::kUMIP) && c.cpl() > 0; }

// ---- MOV to/from CR0, CR2, CR3, CR4, CR8 -------------------------------------------------
// The operand size is 64 bits in 64-bit mode and 32 bits otherwise, whatever the prefixes
// (Zydis reports the GPR at that size). Insn::aux is the CR number, Insn::rm the GPR.
inline uint64_t read_cr(const Cpu& c, unsigned n) {
  switch (n) {
    case 0: return c.state.cr0;
    case 2: return c.state.cr2;
    case 3: return c.state.cr3;
    case 4: return c.state.cr4;
    default: return c.state.cr8;  // TPR[7:4] (SDM Vol. 3 §2.8.6)
  }
}

// In VMX non-root operation the CPL check comes before any CR-access exit (SDM §26.1.1).
template <unsigned N> struct MovFromCr {
  static Status run(Cpu& c, const Insn& i) {
    if (!cpl0(c)) return c.fault(Vector::kGP, 0);
    uint64_t v;
    if (c.vmx_non_root() && i.aux != 2) {
      const Status st = vmx::mov_from_cr(c, i, i.aux, i.rm, v);
      if (st != Status::kNext) return st;
    } else {
      v = read_cr(c, i.aux);
    }
    set_reg<N>(c, i.rm, v);
    return Status::kNext;
  }
};

// Writes go through the Cpu's set_crN, which apply the checks and side effects (TLB flushes,
// PDPTE loads, mode changes). MOV to CR is serializing: the block ends after it.
template <unsigned N> struct MovToCr {
  static Status run(Cpu& c, const Insn& i) {
    if (!cpl0(c)) return c.fault(Vector::kGP, 0);
    const uint64_t v = get_reg<N>(c, i.rm);
    if (c.vmx_non_root() && i.aux != 2) return vmx::mov_to_cr(c, i, i.aux, i.rm, v);
    Status st;
    switch (i.aux) {
      case 0: st = c.set_cr0(v); break;
      case 2: c.state.cr2 = v; return Status::kEndBlock;
      case 3: st = c.set_cr3(v); break;
      case 4: st = c.set_cr4(v); break;
      default: st = c.set_cr8(v); break;
    }
    return st == Status::kNext ? Status::kEndBlock : st;
  }
};

}  // namespace

Handler select_mov_cr(const DecodeInput& in, Insn& i) {
  const bool to_cr = ZydisRegisterGetClass(in.ops[0].reg.value) == ZYDIS_REGCLASS_CONTROL;
  const ZydisDecodedOperand& cr = in.ops[to_cr ? 0 : 1];
  const ZydisDecodedOperand& gpr = in.ops[to_cr ? 1 : 0];
  const unsigned n = unsigned(cr.reg.value - ZYDIS_REGISTER_CR0);
  // CR1, CR5-CR7 and CR9-CR15 are #UD; CR8 exists only in 64-bit mode (REX.R), and the
  // LOCK-prefixed alias of CR8 is AMD's, not Intel's (SDM Vol. 2 MOV CR: #UD with LOCK).
  if ((n != 0 && n != 2 && n != 3 && n != 4 && n != 8) || (n == 8 && !in.in_64bit())) return nullptr;
  if (i.flags & insn_flags::kLock) return nullptr;
  i.aux = uint8_t(n);
  i.rm = gpr_index(gpr.reg.value);
  const bool q = gpr.size == 64;
  if (to_cr) return q ? &MovToCr<8>::run : &MovToCr<4>::run;
  return q ? &MovFromCr<8>::run : &MovFromCr<4>::run;
}

namespace {

// ---- MOV to/from DR0-DR7 ------------------------------------------------------------------
// DR6 and DR7 bits that hold state; the others read as fixed values (SDM Vol. 3 §18.2.3 and
// §18.2.4, for a processor without RTM and without bus-lock detection).
constexpr uint64_t kDr6Volatile = 0xe00f;      // B0-B3, BD, BS, BT
constexpr uint64_t kDr7Volatile = 0xffff23ff;  // L0-G3, LE, GE, GD, R/W0-LEN3
constexpr uint64_t kDr7Fixed1 = 0x400;

// The checks common to both directions, in the order the processor makes them: CPL (#GP),
// DR4/DR5 with CR4.DE = 1 (#UD), general detect (#DB). DR4/DR5 alias DR6/DR7 otherwise.
inline Status dr_access(Cpu& c, unsigned& n) {
  if (!cpl0(c)) return c.fault(Vector::kGP, 0);
  if (n == 4 || n == 5) {
    if (c.state.cr4 & cr4::kDE) return c.fault(Vector::kUD);
    n += 2;
  }
  if (c.state.dr7 & dr7::kGD) {
    // SDM Vol. 3 §18.2.3: DR6.BD reports the debug-register access; B0-B3 describe no
    // breakpoint for this #DB. Delivery of the #DB clears DR7.GD (events.cpp).
    return c.debug_exception(dr6::kBD, 0xf);
  }
  return Status::kNext;
}

// SDM §26.1.3 MOV DR: "MOV-DR exiting" takes priority even over the #GP for CPL > 0 and the #UD
// for DR4/DR5 with CR4.DE = 1 (and so over the general-detect #DB). The qualification names the
// register as encoded (Table 28-4).
inline bool mov_dr_exiting(const Cpu& c) { return c.vmx_non_root() && c.vmx_controls().has(proc::kMovDrExiting); }
inline Status mov_dr_exit(Cpu& c, const Insn& i, bool from_dr) {
  return c.vm_exit_for(i, ExitReason::DR_ACCESS, exit_qual::dr::make(i.aux, from_dr, i.rm));
}

template <unsigned N> struct MovFromDr {
  static Status run(Cpu& c, const Insn& i) {
    if (mov_dr_exiting(c)) return mov_dr_exit(c, i, true);
    unsigned n = i.aux;
    const Status st = dr_access(c, n);
    if (st != Status::kNext) return st;
    set_reg<N>(c, i.rm, n < 4 ? c.state.dr[n] : n == 6 ? c.state.dr6 : c.state.dr7);
    return Status::kNext;
  }
};

template <unsigned N> struct MovToDr {
  static Status run(Cpu& c, const Insn& i) {
    if (mov_dr_exiting(c)) return mov_dr_exit(c, i, false);
    unsigned n = i.aux;
    const Status st = dr_access(c, n);
    if (st != Status::kNext) return st;
    const uint64_t v = get_reg<N>(c, i.rm);
    if (n < 4) {
      c.state.dr[n] = v;
      return Status::kNext;
    }
    // SDM Vol. 2 MOV DR, 64-bit mode: "#GP(0) if an attempt is made to write a 1 to any of
    // bits 63:32 in DR6" (and DR7).
    if (v >> 32) return c.fault(Vector::kGP, 0);
    if (n == 6) c.state.dr6 = (v & kDr6Volatile) | dr6::kFixed1;
    else c.state.dr7 = (v & kDr7Volatile) | kDr7Fixed1;
    return Status::kEndBlock;  // breakpoint enables may have changed
  }
};

}  // namespace

Handler select_mov_dr(const DecodeInput& in, Insn& i) {
  const bool to_dr = ZydisRegisterGetClass(in.ops[0].reg.value) == ZYDIS_REGCLASS_DEBUG;
  const ZydisDecodedOperand& dr = in.ops[to_dr ? 0 : 1];
  const ZydisDecodedOperand& gpr = in.ops[to_dr ? 1 : 0];
  const unsigned n = unsigned(dr.reg.value - ZYDIS_REGISTER_DR0);
  if (n > 7 || (i.flags & insn_flags::kLock)) return nullptr;  // DR8-DR15 (REX.R): #UD
  i.aux = uint8_t(n);
  i.rm = gpr_index(gpr.reg.value);
  const bool q = gpr.size == 64;
  if (to_dr) return q ? &MovToDr<8>::run : &MovToDr<4>::run;
  return q ? &MovFromDr<8>::run : &MovFromDr<4>::run;
}

namespace {

// ---- LGDT, LIDT, SGDT, SIDT ---------------------------------------------------------------
// SDM §26.1.3: with "descriptor-table exiting" they exit after the CPL (or CR4.UMIP) check and
// before the operand is accessed, with the displacement as qualification and the instruction
// information of §28.2.4 (operand size, identity, addressing).
inline bool descriptor_table_exiting(const Cpu& c) {
  return c.vmx_non_root() && c.vmx_controls().has2(proc2::kDescriptorTableExiting);
}
Status gdtr_idtr_exit(Cpu& c, const Insn& i, insn_info::DescriptorTableInsn id) {
  const uint32_t info = vmx::memory_operand_info(i) | insn_info::identity(id) | (i.osz != 2 ? insn_info::kOperandSize32 : 0);
  return c.vm_exit_for(i, ExitReason::GDTR_IDTR, vmx::displacement_qualification(c, i), info);
}

// The operand is a 2-byte limit followed by the base: 4 bytes outside 64-bit mode (with a
// 16-bit operand size only 24 bits of it are loaded), 8 bytes in 64-bit mode, whatever the
// operand-size prefix. The whole operand is read before the register changes.
template <bool kIdt, unsigned N> struct Lgdt {
  static Status run(Cpu& c, const Insn& i) {
    if (!cpl0(c)) return c.fault(Vector::kGP, 0);
    if (descriptor_table_exiting(c))
      return gdtr_idtr_exit(c, i, kIdt ? insn_info::DescriptorTableInsn::kLidt : insn_info::DescriptorTableInsn::kLgdt);
    constexpr size_t kBytes = N == 8 ? 10 : 6;
    std::array<uint8_t, kBytes> m;
    const Status st = c.read(seg_of(i), c.effective_address(i), m);
    if (st != Status::kNext) return st;
    uint16_t limit;
    uint64_t base = 0;
    std::memcpy(&limit, m.data(), 2);
    std::memcpy(&base, m.data() + 2, kBytes - 2);
    if (N == 2) base &= 0xffffff;
    // A non-canonical base would make every later descriptor access fault: #GP(0) now, as
    // VM entry and KVM's emulation also require of the loaded value.
    if (N == 8 && !is_canonical(base)) return c.fault(Vector::kGP, 0);
    (kIdt ? c.state.idtr : c.state.gdtr) = {base, limit};
    return Status::kNext;
  }
};

// SGDT/SIDT store the full 32-bit base outside 64-bit mode, whatever the operand size (SDM
// Vol. 2 SGDT "Operation").
template <bool kIdt, bool k64> struct Sgdt {
  static Status run(Cpu& c, const Insn& i) {
    if (umip_blocks(c)) return c.fault(Vector::kGP, 0);
    if (descriptor_table_exiting(c))
      return gdtr_idtr_exit(c, i, kIdt ? insn_info::DescriptorTableInsn::kSidt : insn_info::DescriptorTableInsn::kSgdt);
    const DescriptorTableReg& r = kIdt ? c.state.idtr : c.state.gdtr;
    constexpr size_t kBytes = k64 ? 10 : 6;
    std::array<uint8_t, kBytes> m;
    const uint64_t base = r.base;
    std::memcpy(m.data(), &r.limit, 2);
    std::memcpy(m.data() + 2, &base, kBytes - 2);
    return c.write(seg_of(i), c.effective_address(i), m);
  }
};

template <bool kIdt> Handler select_lgdt(const DecodeInput& in, Insn&) {
  if (!is_mem(in.ops[0])) return nullptr;
  if (in.in_64bit()) return &Lgdt<kIdt, 8>::run;
  return in.zi.operand_width == 16 ? &Lgdt<kIdt, 2>::run : &Lgdt<kIdt, 4>::run;
}

template <bool kIdt> Handler select_sgdt(const DecodeInput& in, Insn&) {
  if (!is_mem(in.ops[0])) return nullptr;
  return in.in_64bit() ? &Sgdt<kIdt, true>::run : &Sgdt<kIdt, false>::run;
}

// ---- CLTS, LMSW, SMSW -------------------------------------------------------------------
// In VMX non-root operation the CR0 guest/host mask and read shadow decide (vmx/nonroot_cr.cpp).
Status clts(Cpu& c, const Insn& i) {
  if (!cpl0(c)) return c.fault(Vector::kGP, 0);
  if (c.vmx_non_root()) return vmx::clts(c, i);
  return c.set_cr0(c.state.cr0 & ~cr0::kTS);
}

// LMSW loads CR0[3:0] (PE, MP, EM, TS); it can set PE but not clear it (SDM Vol. 2 LMSW). A
// memory operand is fetched before a VM exit that depends on its value (SDM §26.1.1).
Status lmsw_load(Cpu& c, const Insn& i, uint64_t src, bool mem) {
  if (c.vmx_non_root()) return vmx::lmsw(c, i, uint16_t(src), mem);
  const uint64_t cr0 = c.state.cr0;
  const Status st = c.set_cr0((cr0 & ~0xfull) | (src & 0xf) | (cr0 & cr0::kPE));
  return st == Status::kNext ? Status::kEndBlock : st;
}
Status lmsw_r(Cpu& c, const Insn& i) {
  if (!cpl0(c)) return c.fault(Vector::kGP, 0);
  return lmsw_load(c, i, get_reg<2>(c, i.rm), false);
}
Status lmsw_m(Cpu& c, const Insn& i) {
  if (!cpl0(c)) return c.fault(Vector::kGP, 0);
  uint64_t v;
  const Status st = read_mem<2>(c, i, v);
  return st == Status::kNext ? lmsw_load(c, i, v, true) : st;
}

// SMSW stores CR0[15:0] to memory; a register destination of 32 or 64 bits receives the rest
// of CR0 too, as processors since the Pentium do (SDM Vol. 2 SMSW: the upper bits are
// "undefined"). In VMX non-root operation host-owned bits read from the CR0 read shadow.
inline uint64_t smsw_value(const Cpu& c) { return c.vmx_non_root() ? vmx::guest_read_cr0(c) : c.state.cr0; }
template <unsigned N> struct SmswR {
  static Status run(Cpu& c, const Insn& i) {
    if (umip_blocks(c)) return c.fault(Vector::kGP, 0);
    set_reg<N>(c, i.rm, smsw_value(c));
    return Status::kNext;
  }
};
Status smsw_m(Cpu& c, const Insn& i) {
  if (umip_blocks(c)) return c.fault(Vector::kGP, 0);
  return write_mem<2>(c, i, smsw_value(c));
}

Handler select_lmsw(const DecodeInput& in, Insn& i) {
  if (is_mem(in.ops[0])) return &lmsw_m;
  i.rm = gpr_index(in.ops[0].reg.value);
  return &lmsw_r;
}

Handler select_smsw(const DecodeInput& in, Insn& i) {
  if (is_mem(in.ops[0])) return &smsw_m;
  i.rm = gpr_index(in.ops[0].reg.value);
  return sized_wdq<SmswR>(in.ops[0].size / 8);
}

// ---- INVLPG, INVPCID ----------------------------------------------------------------------
// Invalidates the translation of the page containing `la` for PCID `pcid` and global
// translations (SDM Vol. 3 §4.10.4.1), whatever the size of that page.
// With paging off there are no linear mappings, but under EPT there are combined ones, which
// INVLPG drops too (SDM Vol. 3 §29.4.3.1); flushing is harmless either way.
void invalidate_page(Cpu& c, uint64_t la, uint16_t pcid) { c.tlb().flush_page_any_size(la, pcid); }

// INVLPG does not access memory: no segment or page checks, and a non-canonical address
// invalidates nothing (SDM Vol. 2 INVLPG). "INVLPG exiting" reports the linear-address operand,
// bits 63:32 clear outside 64-bit mode (SDM §28.2.1).
Status invlpg(Cpu& c, const Insn& i) {
  if (!cpl0(c)) return c.fault(Vector::kGP, 0);
  uint64_t la = c.seg_cache(seg_of(i)).base + c.effective_address(i);
  if (!c.in_64bit_mode()) la &= 0xffffffffull;
  if (c.vmx_non_root() && c.vmx_controls().has(proc::kInvlpgExiting)) return c.vm_exit_for(i, ExitReason::INVLPG, la);
  if (c.in_64bit_mode() && !is_canonical(la)) return Status::kEndBlock;
  invalidate_page(c, la, c.pcid());
  return Status::kEndBlock;
}

// INVPCID type (register operand) and 16-byte descriptor {PCID in bits 11:0, bits 63:12
// reserved, linear address in bits 127:64} (SDM Vol. 2 INVPCID). In VMX non-root operation
// (SDM §26.3, §26.1.3) "enable INVPCID" = 0 makes it #UD before any other exception, and with the
// control set "INVLPG exiting" makes it exit after the mode and CPL checks.
template <unsigned N> struct Invpcid {
  static Status run(Cpu& c, const Insn& i) {
    const bool non_root = c.vmx_non_root();
    if (non_root && !c.vmx_controls().has2(proc2::kEnableInvpcid)) return c.fault(Vector::kUD);
    if (c.v86_mode()) return c.fault(Vector::kUD);  // "not recognized in virtual-8086 mode"
    if (!cpl0(c)) return c.fault(Vector::kGP, 0);
    if (non_root && c.vmx_controls().has(proc::kInvlpgExiting))
      return c.vm_exit_for(i, ExitReason::INVPCID, vmx::displacement_qualification(c, i),
                           vmx::memory_operand_info(i) | insn_info::reg2(i.reg));
    const uint64_t type = get_reg<N>(c, i.reg);
    if (type > 3) return c.fault(Vector::kGP, 0);
    std::array<uint64_t, 2> d;
    const Status st = c.read(seg_of(i), c.effective_address(i), d);
    if (st != Status::kNext) return st;
    if (d[0] >> 12) return c.fault(Vector::kGP, 0);
    const uint16_t pcid = uint16_t(d[0]);
    const bool pcide = c.state.cr4 & cr4::kPCIDE;
    switch (type) {
      case 0:  // individual address
        if ((pcid && !pcide) || !is_canonical(d[1])) return c.fault(Vector::kGP, 0);
        invalidate_page(c, d[1], pcid);
        break;
      case 1:  // single context
        if (pcid && !pcide) return c.fault(Vector::kGP, 0);
        c.tlb().flush_pcid(pcid);
        break;
      case 2: c.tlb().flush_all(); break;        // all contexts, global translations included
      default: c.tlb().flush_nonglobal(); break;  // all contexts except global translations
    }
    return Status::kEndBlock;
  }
};

Handler select_invpcid(const DecodeInput& in, Insn& i) {
  if (!in.model.has(Feature::kInvpcid) || !is_reg(in.ops[0]) || !is_mem(in.ops[1])) return nullptr;
  i.reg = gpr_index(in.ops[0].reg.value);
  return in.ops[0].size == 64 ? &Invpcid<8>::run : &Invpcid<4>::run;
}

// ---- CLI, STI ----------------------------------------------------------------------------
// Who may change IF (SDM Vol. 2 CLI/STI "Operation"): anyone in real mode; IOPL >= CPL in
// protected mode, where CPL 3 with CR4.PVI = 1 changes VIF instead; IOPL = 3 in
// virtual-8086 mode, where CR4.VME = 1 changes VIF instead. Anything else is #GP(0).
enum class IfTarget : uint8_t { kIf, kVif, kFault };

inline IfTarget if_target(const Cpu& c) {
  if (c.real_mode()) return IfTarget::kIf;
  const unsigned iopl = unsigned((c.state.rflags & rflags::kIOPL) >> rflags::kIoplShift);
  if (!c.v86_mode()) {
    if (iopl >= c.cpl()) return IfTarget::kIf;
    return c.cpl() == 3 && (c.state.cr4 & cr4::kPVI) ? IfTarget::kVif : IfTarget::kFault;
  }
  if (iopl == 3) return IfTarget::kIf;
  return (c.state.cr4 & cr4::kVME) ? IfTarget::kVif : IfTarget::kFault;
}

Status cli(Cpu& c, const Insn&) {
  switch (if_target(c)) {
    case IfTarget::kIf: c.state.rflags &= ~rflags::kIF; return Status::kNext;
    case IfTarget::kVif: c.state.rflags &= ~rflags::kVIF; return Status::kNext;
    default: return c.fault(Vector::kGP, 0);
  }
}

// STI that sets IF from 0 holds off maskable interrupts until the next instruction has
// completed (the STI shadow, SDM Vol. 2 STI); the loop applies it from sti_blocking.
Status sti(Cpu& c, const Insn&) {
  switch (if_target(c)) {
    case IfTarget::kIf:
      if (c.state.rflags & rflags::kIF) return Status::kNext;
      c.state.rflags |= rflags::kIF;
      c.state.sti_blocking = true;
      return Status::kEndBlock;
    case IfTarget::kVif:
      if (c.state.rflags & rflags::kVIP) return c.fault(Vector::kGP, 0);  // a virtual interrupt is pending
      c.state.rflags |= rflags::kVIF;
      return Status::kNext;
    default:
      return c.fault(Vector::kGP, 0);
  }
}

// ---- HLT, WBINVD, INVD, MONITOR, MWAIT ---------------------------------------------------
// HLT: the processor stops until an interrupt, NMI or reset (SDM Vol. 2, HLT). In VMX non-root
// operation the exits below come after the CPL check (SDM §26.1.1).
Status hlt(Cpu& c, const Insn& i) {
  if (!cpl0(c)) return c.fault(Vector::kGP, 0);
  if (c.vmx_non_root() && c.vmx_controls().has(proc::kHltExiting)) return c.vm_exit_for(i, ExitReason::HLT);
  c.state.rip += i.len;
  c.state.activity = Activity::kHlt;
  return Status::kExit;
}

// No caches are modelled: writing back and invalidating them has no visible effect. INVD exits
// unconditionally (SDM §26.1.2), WBINVD with "WBINVD exiting".
Status wbinvd(Cpu& c, const Insn& i) {
  if (!cpl0(c)) return c.fault(Vector::kGP, 0);
  if (c.vmx_non_root() && c.vmx_controls().has2(proc2::kWbinvdExiting)) return c.vm_exit_for(i, ExitReason::WBINVD);
  return Status::kEndBlock;
}
Status invd(Cpu& c, const Insn& i) {
  if (!cpl0(c)) return c.fault(Vector::kGP, 0);
  if (c.vmx_non_root()) return c.vm_exit_for(i, ExitReason::INVD);
  return Status::kEndBlock;
}

// MONITOR arms address monitoring of the line at DS:rAX (segment overridable); no extensions
// are offered, so ECX must be 0. At CPL > 0 the instructions are #UD (SDM Vol. 2 MONITOR,
// MWAIT: ring-3 availability is model-specific and not offered). Insn::seg is the segment,
// Insn::asz the size of rAX.
Status monitor(Cpu& c, const Insn& i) {
  if (!cpl0(c)) return c.fault(Vector::kUD);
  // "MONITOR exiting" comes before the operand checks (SDM §26.1.1).
  if (c.vmx_non_root() && c.vmx_controls().has(proc::kMonitorExiting))
    return c.vm_exit_for(i, ExitReason::MONITOR_INSTRUCTION);
  if (uint32_t(c.state.gpr[kRcx]) != 0) return c.fault(Vector::kGP, 0);
  const SegReg s = seg_of(i);
  const uint64_t off = c.state.gpr[kRax] & size_mask(i.asz);
  const SegCache& sc = c.seg_cache(s);
  if (off < sc.rd_lo || off > sc.rd_hi) return c.seg_fault(s);
  uint64_t la = sc.base + off;
  if (!c.in_64bit_mode()) la &= 0xffffffffull;
  uint8_t* host;
  uint64_t pa;
  // The address is translated as a load (SDM: #PF "for a page fault"); nothing is read.
  const Status st = c.translate(la, AccessKind::kRead, c.mmu_idx(), s, host, pa);
  if (st != Status::kNext) return st;
  c.state.monitor_armed = true;
  return Status::kNext;
}

// MWAIT waits like HLT when a monitor is armed and otherwise falls through (SDM Vol. 2 MWAIT:
// "If the preceding MONITOR did not successfully arm an address range ... execution will
// resume at the instruction following the MWAIT"). No wake-up by writes to the range is
// modelled: an interrupt or NMI ends the wait, which the architecture allows for any reason.
Status mwait(Cpu& c, const Insn& i) {
  if (!cpl0(c)) return c.fault(Vector::kUD);
  // "MWAIT exiting": qualification bit 0 tells whether the monitor was armed (SDM §28.2.1).
  if (c.vmx_non_root() && c.vmx_controls().has(proc::kMwaitExiting))
    return c.vm_exit_for(i, ExitReason::MWAIT_INSTRUCTION, c.state.monitor_armed ? 1 : 0);
  if (uint32_t(c.state.gpr[kRcx]) != 0) return c.fault(Vector::kGP, 0);  // no CPUID leaf 5 extensions
  if (!c.state.monitor_armed) return Status::kEndBlock;
  c.state.monitor_armed = false;
  c.state.rip += i.len;
  c.state.activity = Activity::kHlt;
  return Status::kExit;
}

Handler select_monitor(const DecodeInput& in, Insn& i) {
  if (!in.model.has(Feature::kMonitor)) return nullptr;
  const auto a = in.zi.attributes;
  i.seg = uint8_t((a & ZYDIS_ATTRIB_HAS_SEGMENT_ES) ? SegReg::kES
                : (a & ZYDIS_ATTRIB_HAS_SEGMENT_CS) ? SegReg::kCS
                : (a & ZYDIS_ATTRIB_HAS_SEGMENT_SS) ? SegReg::kSS
                : (a & ZYDIS_ATTRIB_HAS_SEGMENT_FS) ? SegReg::kFS
                : (a & ZYDIS_ATTRIB_HAS_SEGMENT_GS) ? SegReg::kGS : SegReg::kDS);
  return &monitor;
}

// ---- SWAPGS ------------------------------------------------------------------------------
// 64-bit mode only (Zydis does not decode it elsewhere, which is #UD); exchanges the GS base
// with IA32_KERNEL_GS_BASE (SDM Vol. 2 SWAPGS).
Status swapgs(Cpu& c, const Insn&) {
  if (!cpl0(c)) return c.fault(Vector::kGP, 0);
  std::swap(c.state.seg[unsigned(SegReg::kGS)].base, c.state.msr.kernel_gs_base);
  c.refresh_segment(SegReg::kGS);
  return Status::kNext;
}

template <Handler H> Handler always(const DecodeInput&, Insn&) { return H; }

}  // namespace

void register_system(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_HLT, &always<&hlt>);
  t.add(ZYDIS_MNEMONIC_LGDT, &select_lgdt<false>);
  t.add(ZYDIS_MNEMONIC_LIDT, &select_lgdt<true>);
  t.add(ZYDIS_MNEMONIC_SGDT, &select_sgdt<false>);
  t.add(ZYDIS_MNEMONIC_SIDT, &select_sgdt<true>);
  t.add(ZYDIS_MNEMONIC_CLTS, &always<&clts>);
  t.add(ZYDIS_MNEMONIC_LMSW, &select_lmsw);
  t.add(ZYDIS_MNEMONIC_SMSW, &select_smsw);
  t.add(ZYDIS_MNEMONIC_INVLPG, [](const DecodeInput& in, Insn&) -> Handler {
    return is_mem(in.ops[0]) ? &invlpg : nullptr;
  });
  t.add(ZYDIS_MNEMONIC_INVPCID, &select_invpcid);
  t.add(ZYDIS_MNEMONIC_CLI, &always<&cli>);
  t.add(ZYDIS_MNEMONIC_STI, &always<&sti>);
  t.add(ZYDIS_MNEMONIC_WBINVD, &always<&wbinvd>);
  t.add(ZYDIS_MNEMONIC_INVD, &always<&invd>);
  t.add(ZYDIS_MNEMONIC_MONITOR, &select_monitor);
  t.add(ZYDIS_MNEMONIC_MWAIT, [](const DecodeInput& in, Insn&) -> Handler {
    return in.model.has(Feature::kMonitor) ? &mwait : nullptr;
  });
  t.add(ZYDIS_MNEMONIC_SWAPGS, [](const DecodeInput& in, Insn&) -> Handler {
    return in.in_64bit() ? &swapgs : nullptr;
  });
}

}  // namespace nestvm::cpu
