// The VMX instructions L1 executes in (virtual) VMX root operation, emulated by L0 with the
// outcome each instruction's "Operation" in the SDM gives (Vol. 2 / Vol. 3 Chapter 31): #UD,
// #GP, a fault on the memory operand, VMfailInvalid, VMfailValid(n) or VMsucceed. The silicon
// exits before the checks that depend on VMX operation (L1 runs in VMX non-root operation on
// it), having made those that do not: the register forms, real, virtual-8086 and compatibility
// mode are #UD already (SDM §26.1.1). Operands come from the exit information: the exit
// qualification holds the displacement, the VM-exit instruction-information field the
// addressing (SDM §28.2.1, Table 28-14 formats); L1's linear addresses go through its
// segmentation and paging here, with the faults the processor would raise.
#include "arch/cr.h"
#include "arch/exception.h"
#include "arch/msr_index.h"
#include "arch/rflags.h"
#include "arch/vmentry_checks.h"
#include "arch/vmcs.h"
#include "hv/mmu/guest_walk.h"
#include "hv/nested/nested_vmx.h"
#include "hv/vcpu.h"
#include "hv/vm.h"

namespace nestvm::hv::nested {

using namespace arch;
using F = VmcsField;

namespace {

unsigned l1_cpl(Vcpu& v) { return unsigned(v.vmread(F::GUEST_SS_AR_BYTES) >> 5) & 3; }

bool l1_in_64bit_mode(Vcpu& v) {
  return (v.guest_efer() & efer::kLMA) && (v.vmread(F::GUEST_CS_AR_BYTES) & ar::kL);
}

// The instruction's outcome: RIP moves past it (faults leave it).
bool done(Vcpu& v) {
  v.skip_instruction();
  return true;
}

bool fault(Vcpu& v, Vector vector) {
  const bool has_error = vector == Vector::kGP || vector == Vector::kSS;
  v.inject_exception(uint8_t(vector), has_error, 0);
  return true;
}

// The VM-exit instruction-information field (SDM Table 28-14) of one exit.
struct InsnInfo {
  uint32_t raw;
  unsigned scale() const { return raw & 3; }
  unsigned reg1() const { return (raw >> 3) & 0xf; }
  unsigned address_size() const { return 2u << ((raw >> 7) & 7); }  // 0: 2, 1: 4, 2: 8 bytes
  bool register_operand() const { return raw & (1u << 10); }
  unsigned segment() const { return (raw >> 15) & 7; }
  unsigned index() const { return (raw >> 18) & 0xf; }
  bool index_valid() const { return !(raw & (1u << 22)); }
  unsigned base() const { return (raw >> 23) & 0xf; }
  bool base_valid() const { return !(raw & (1u << 27)); }
  unsigned reg2() const { return (raw >> 28) & 0xf; }
};

// A register operand of the instruction's operand size: 64 bits in 64-bit mode, else 32.
uint64_t read_operand_reg(Vcpu& v, unsigned r) {
  const uint64_t x = v.reg(cpu::Gpr(r));
  return l1_in_64bit_mode(v) ? x : uint32_t(x);
}

constexpr bool canonical(uint64_t la) { return uint64_t(int64_t(la << 16) >> 16) == la; }

// L1's memory operand of the exiting instruction: its linear address after the segmentation
// checks (SDM Vol. 3 §3.4.5, Vol. 1 §3.3.7.1; KVM's get_vmx_mem_address). false: the fault is
// injected.
bool operand_address(Vcpu& v, InsnInfo info, unsigned len, bool write, uint64_t& la) {
  uint64_t ea = v.vmread(F::EXIT_QUALIFICATION);  // the displacement (RIP-relative: the address)
  if (info.base_valid()) ea += v.reg(cpu::Gpr(info.base()));
  if (info.index_valid()) ea += v.reg(cpu::Gpr(info.index())) << info.scale();
  const unsigned asz = info.address_size();
  if (asz < 8) ea &= asz == 4 ? 0xffffffffull : 0xffffull;
  const unsigned seg = info.segment();
  const Vector seg_fault = seg == unsigned(SegReg::kSS) ? Vector::kSS : Vector::kGP;
  const VmcsSegmentFields& sf = kGuestSegmentFields[seg];
  if (l1_in_64bit_mode(v)) {
    // Only FS and GS have bases in 64-bit mode; no limits, but the address must be canonical.
    la = ea;
    if (seg == unsigned(SegReg::kFS) || seg == unsigned(SegReg::kGS)) la += v.vmread(sf.base);
    if (!canonical(la) || !canonical(la + len - 1)) return !fault(v, seg_fault);
    return true;
  }
  const uint32_t a = uint32_t(v.vmread(sf.ar));
  if (a & ar::kUnusable) return !fault(v, seg_fault);
  const unsigned type = a & 0xf;
  const bool code = type & 8;
  // Writes need a writable data segment; reads fail only on execute-only code.
  if (write ? (code || !(type & 2)) : (code && !(type & 2))) return !fault(v, seg_fault);
  const uint64_t limit = uint32_t(v.vmread(sf.limit));
  const uint64_t last = ea + len - 1;
  if (!code && (type & 4)) {
    // Expand-down: offsets above the limit, up to 0xffff or 0xffffffff (D/B).
    const uint64_t top = (a & ar::kDB) ? 0xffffffffull : 0xffffull;
    if (ea <= limit || last > top) return !fault(v, seg_fault);
  } else if (last > limit) {
    return !fault(v, seg_fault);
  }
  la = (v.vmread(sf.base) + ea) & 0xffffffffull;
  return true;
}

// Translates [la, la + len) through L1's paging, page by page (at most two pages); a #PF is
// injected for the first page that faults. Supervisor data accesses (CPL 0 is checked before
// every operand access), exempt from SMAP with EFLAGS.AC = 1.
bool translate(Vcpu& v, uint64_t la, unsigned len, bool write, uint64_t gpa[2], unsigned n[2]) {
  const GuestPagingState s = v.guest_paging_state();
  GuestAccess acc;
  acc.write = write;
  acc.smap_exempt = v.vmread(F::GUEST_RFLAGS) & rflags::kAC;
  const uint64_t wrap = l1_in_64bit_mode(v) ? ~0ull : 0xffffffffull;
  n[0] = std::min<unsigned>(len, 4096 - unsigned(la & 0xfff));
  n[1] = len - n[0];
  for (unsigned i = 0; i < 2 && n[i]; ++i) {
    const uint64_t page_la = i ? ((la & ~0xfffull) + 4096) & wrap : la;
    const GuestWalk w = walk_guest(v.vm().mem(), s, page_la, acc);
    if (w.fault) {
      v.inject_page_fault(page_la, w.error_code);
      return false;
    }
    gpa[i] = w.gpa;
  }
  return true;
}

// Reads or writes L1's memory operand (all faults before any byte is written). Bytes that are
// not RAM read as all ones and are not written, as on a floating bus.
bool read_operand(Vcpu& v, InsnInfo info, void* out, unsigned len) {
  uint64_t la, gpa[2];
  unsigned n[2];
  if (!operand_address(v, info, len, false, la) || !translate(v, la, len, false, gpa, n)) return false;
  auto* p = static_cast<uint8_t*>(out);
  for (unsigned i = 0; i < 2 && n[i]; p += n[i], ++i)
    if (!v.vm().mem().read(gpa[i], p, n[i])) std::fill(p, p + n[i], 0xff);
  return true;
}

bool write_operand(Vcpu& v, InsnInfo info, const void* in, unsigned len) {
  uint64_t la, gpa[2];
  unsigned n[2];
  if (!operand_address(v, info, len, true, la) || !translate(v, la, len, true, gpa, n)) return false;
  const auto* p = static_cast<const uint8_t*>(in);
  for (unsigned i = 0; i < 2 && n[i]; p += n[i], ++i) (void)v.vm().mem().write(gpa[i], p, n[i]);
  return true;
}

InsnInfo insn_info(Vcpu& v) { return {uint32_t(v.vmread(F::VMX_INSTRUCTION_INFO))}; }

// A VMCS pointer operand: 4 KiB aligned and within L1's physical-address width.
bool valid_vmcs_pointer(const NestedVmx& n, uint64_t addr) {
  return !(addr & 0xfff) && !(addr >> n.caps().maxphyaddr);
}

// Every instruction but VMXON and VMCALL: "IF not in VMX operation THEN #UD ... ELSIF CPL > 0
// THEN #GP(0)" (KVM's nested_vmx_check_permission).
bool check_permission(Vcpu& v) {
  if (!v.nested().vmxon) return !fault(v, Vector::kUD);
  if (l1_cpl(v) > 0) return !fault(v, Vector::kGP);
  return true;
}

// SDM Vol. 3 §31.3 VMXON.
bool handle_vmxon(Vcpu& v) {
  NestedVmx& n = v.nested();
  if (!(v.guest_cr4() & cr4::kVMXE)) return fault(v, Vector::kUD);
  if (n.vmxon) {
    // Already in VMX root operation: nothing is read or allocated.
    if (l1_cpl(v) > 0) return fault(v, Vector::kGP);
    n.vmx_fail(VmxError::VMXON_IN_VMX_ROOT_OPERATION);
    return done(v);
  }
  const VmxCapabilities& c = n.caps();
  const uint64_t cr0 = v.guest_cr0(), cr4 = v.guest_cr4();
  const bool cr_ok = (cr0 & c.cr0_fixed0) == c.cr0_fixed0 && !(cr0 & ~c.cr0_fixed1 & 0xffffffffull) &&
                     (cr4 & c.cr4_fixed0) == c.cr4_fixed0 && !(cr4 & ~c.cr4_fixed1);
  const uint64_t fc = n.feature_control();
  // No SMX: "outside SMX operation and bit 2 of IA32_FEATURE_CONTROL is clear" applies.
  if (l1_cpl(v) > 0 || !cr_ok || !(fc & feature_control::kLock) || !(fc & feature_control::kVmxOutsideSmx))
    return fault(v, Vector::kGP);
  uint64_t addr = 0;
  if (!read_operand(v, insn_info(v), &addr, 8)) return true;
  uint32_t rev = ~0u;
  // A region that is not RAM fails as a bad address does (KVM's kvm_vcpu_map failure).
  if (!valid_vmcs_pointer(n, addr) || !v.vm().mem().read(addr, &rev, 4) || rev != kVmcs12Revision) {
    n.vmx_fail_invalid();
    return done(v);
  }
  n.vmxon = true;
  n.vmxon_ptr = addr;
  n.current_vmptr = kInvalidGpa;
  v.update_vmx_root_cr_intercepts();
  n.vmx_succeed();
  return done(v);
}

// SDM Vol. 2 VMXOFF: no dual-monitor treatment of SMM, so always VMsucceed.
bool handle_vmxoff(Vcpu& v) {
  if (!check_permission(v)) return true;
  v.nested().free_nested();
  v.nested().vmx_succeed();
  return done(v);
}

// SDM Vol. 2 VMCLEAR.
bool handle_vmclear(Vcpu& v) {
  NestedVmx& n = v.nested();
  if (!check_permission(v)) return true;
  uint64_t addr = 0;
  if (!read_operand(v, insn_info(v), &addr, 8)) return true;
  if (!valid_vmcs_pointer(n, addr)) {
    n.vmx_fail(VmxError::VMCLEAR_INVALID_ADDRESS);
    return done(v);
  }
  if (addr == n.vmxon_ptr) {
    n.vmx_fail(VmxError::VMCLEAR_VMXON_POINTER);
    return done(v);
  }
  if (addr == n.current_vmptr) {
    // The cached data go to memory, launch state clear; no VMCS is current any more.
    n.cached_vmcs12.launched = false;
    n.release_vmcs12();
  } else {
    // "Initialize implementation-specific data in the VMCS region": the layout version, and
    // the launch state becomes clear.
    const uint32_t header[2] = {vmcs12_layout::kVersion, 0};
    static_assert(vmcs12_layout::kLaunchStateOffset == vmcs12_layout::kVersionOffset + 4);
    (void)v.vm().mem().write(addr + vmcs12_layout::kVersionOffset, header, sizeof header);
  }
  n.vmx_succeed();
  return done(v);
}

// SDM Vol. 2 VMPTRLD.
bool handle_vmptrld(Vcpu& v) {
  NestedVmx& n = v.nested();
  if (!check_permission(v)) return true;
  uint64_t addr = 0;
  if (!read_operand(v, insn_info(v), &addr, 8)) return true;
  uint32_t rev = 0;
  if (!valid_vmcs_pointer(n, addr) || !v.vm().mem().read(addr, &rev, 4)) {
    n.vmx_fail(VmxError::VMPTRLD_INVALID_ADDRESS);
    return done(v);
  }
  if (addr == n.vmxon_ptr) {
    n.vmx_fail(VmxError::VMPTRLD_VMXON_POINTER);
    return done(v);
  }
  // A shadow VMCS (bit 31) may be loaded only with VMCS shadowing, which L1 is not offered.
  const bool shadow_ok = n.caps().proc2.allowed1 & proc2::kVmcsShadowing;
  if ((rev & ~vmcs_layout::kShadowIndicator) != kVmcs12Revision || ((rev & vmcs_layout::kShadowIndicator) && !shadow_ok)) {
    n.vmx_fail(VmxError::VMPTRLD_INCORRECT_VMCS_REVISION_ID);
    return done(v);
  }
  if (addr != n.current_vmptr) {
    n.release_vmcs12();
    if (!n.load_vmcs12(addr)) {
      n.vmx_fail(VmxError::VMPTRLD_INVALID_ADDRESS);
      return done(v);
    }
  }
  n.vmx_succeed();
  return done(v);
}

// SDM Vol. 2 VMPTRST: the current-VMCS pointer (all ones if none) to m64.
bool handle_vmptrst(Vcpu& v) {
  if (!check_permission(v)) return true;
  const uint64_t ptr = v.nested().current_vmptr;
  if (!write_operand(v, insn_info(v), &ptr, 8)) return true;
  v.nested().vmx_succeed();
  return done(v);
}

// SDM Vol. 2 VMREAD: field encoding in Reg2, destination Reg1 or memory, operand size 64 bits in
// 64-bit mode and 32 otherwise (a longer field's high bits are dropped).
bool handle_vmread(Vcpu& v) {
  NestedVmx& n = v.nested();
  if (!check_permission(v)) return true;
  if (n.current_vmptr == kInvalidGpa) {
    n.vmx_fail_invalid();
    return done(v);
  }
  const InsnInfo info = insn_info(v);
  const auto field = lookup_vmcs_encoding(read_operand_reg(v, info.reg2()));
  if (!field) {
    n.vmx_fail_valid(VmxError::UNSUPPORTED_VMCS_COMPONENT);
    return done(v);
  }
  uint64_t value = n.cached_vmcs12.read(field->info->field);
  if (field->high) value >>= 32;
  const bool wide = l1_in_64bit_mode(v);
  if (!wide) value = uint32_t(value);
  if (info.register_operand()) v.set_reg(cpu::Gpr(info.reg1()), value);
  else if (!write_operand(v, info, &value, wide ? 8 : 4)) return true;
  n.vmx_succeed();
  return done(v);
}

// SDM Vol. 2 VMWRITE: source Reg1 or memory, field encoding in Reg2. A field shorter than the
// operand keeps its low bits; a longer one has its high bits cleared.
bool handle_vmwrite(Vcpu& v) {
  NestedVmx& n = v.nested();
  if (!check_permission(v)) return true;
  if (n.current_vmptr == kInvalidGpa) {
    n.vmx_fail_invalid();
    return done(v);
  }
  const InsnInfo info = insn_info(v);
  const bool wide = l1_in_64bit_mode(v);
  uint64_t value = 0;
  if (info.register_operand()) value = read_operand_reg(v, info.reg1());
  else if (!read_operand(v, info, &value, wide ? 8 : 4)) return true;
  const auto field = lookup_vmcs_encoding(read_operand_reg(v, info.reg2()));
  if (!field) {
    n.vmx_fail_valid(VmxError::UNSUPPORTED_VMCS_COMPONENT);
    return done(v);
  }
  // VM-exit information fields are writable only with IA32_VMX_MISC[29] (SDM A.6).
  if (field->info->read_only() && !(n.caps().misc & (1ull << 29))) {
    n.vmx_fail_valid(VmxError::VMWRITE_READ_ONLY_VMCS_COMPONENT);
    return done(v);
  }
  const VmcsField f = field->info->field;
  if (field->high) value = (n.cached_vmcs12.read(f) & 0xffffffffull) | (uint64_t(uint32_t(value)) << 32);
  n.cached_vmcs12.write(f, value);
  n.vmx_succeed();
  return done(v);
}

// SDM Vol. 2 INVEPT: type in Reg2, a 128-bit descriptor in memory (EPTP in bits 63:0).
bool handle_invept(Vcpu& v) {
  NestedVmx& n = v.nested();
  const VmxCapabilities& c = n.caps();
  // #UD without EPT or without INVEPT (IA32_VMX_PROCBASED_CTLS2[33], IA32_VMX_EPT_VPID_CAP[20]).
  if (!(c.proc2.allowed1 & proc2::kEnableEpt) || !(c.ept_vpid_cap & ept_vpid_cap::kInvept))
    return fault(v, Vector::kUD);
  if (!check_permission(v)) return true;
  const InsnInfo info = insn_info(v);
  const uint64_t type = read_operand_reg(v, info.reg2());
  const bool supported = (type == uint64_t(InveptType::kSingleContext) && (c.ept_vpid_cap & ept_vpid_cap::kInveptSingleContext)) ||
                         (type == uint64_t(InveptType::kAllContext) && (c.ept_vpid_cap & ept_vpid_cap::kInveptAllContext));
  if (!supported) {
    n.vmx_fail(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID);
    return done(v);
  }
  uint64_t desc[2] = {};
  if (!read_operand(v, info, desc, 16)) return true;
  if (type == uint64_t(InveptType::kSingleContext) && !check_eptp(c, desc[0]).ok()) {
    n.vmx_fail(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID);
    return done(v);
  }
  n.on_invept(InveptType(type), desc[0]);
  n.vmx_succeed();
  return done(v);
}

// SDM Vol. 2 INVVPID: type in Reg2, descriptor = VPID in bits 15:0 (bits 63:16 zero), linear
// address in bits 127:64.
bool handle_invvpid(Vcpu& v) {
  NestedVmx& n = v.nested();
  const VmxCapabilities& c = n.caps();
  if (!(c.proc2.allowed1 & proc2::kEnableVpid) || !(c.ept_vpid_cap & ept_vpid_cap::kInvvpid))
    return fault(v, Vector::kUD);
  if (!check_permission(v)) return true;
  const InsnInfo info = insn_info(v);
  const uint64_t type = read_operand_reg(v, info.reg2());
  // Types 0-3 are capability bits 40-43.
  if (type > 3 || !(c.ept_vpid_cap & (ept_vpid_cap::kInvvpidIndividualAddr << type))) {
    n.vmx_fail(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID);
    return done(v);
  }
  uint64_t desc[2] = {};
  if (!read_operand(v, info, desc, 16)) return true;
  const uint16_t vpid = uint16_t(desc[0]);
  const InvvpidType t = InvvpidType(type);
  const bool bad = (desc[0] >> 16) || (t != InvvpidType::kAllContext && vpid == 0) ||
                   (t == InvvpidType::kIndividualAddress && !canonical(desc[1]));
  if (bad) {
    n.vmx_fail(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID);
    return done(v);
  }
  n.on_invvpid(t, vpid, desc[1]);
  n.vmx_succeed();
  return done(v);
}

// SDM Vol. 3 §31.3 VMCALL in VMX root operation: without the dual-monitor treatment of SMIs
// and SMM it fails with "VMCALL executed in VMX root operation". The silicon exits from every
// mode, so the mode checks that follow "not in VMX operation" are made here.
bool handle_vmcall(Vcpu& v) {
  NestedVmx& n = v.nested();
  if (!n.vmxon) return fault(v, Vector::kUD);
  if ((v.vmread(F::GUEST_RFLAGS) & rflags::kVM) || ((v.guest_efer() & efer::kLMA) && !l1_in_64bit_mode(v)))
    return fault(v, Vector::kUD);
  if (l1_cpl(v) > 0) return fault(v, Vector::kGP);
  n.vmx_fail(VmxError::VMCALL_IN_VMX_ROOT);
  return done(v);
}

}  // namespace

bool handle_vmx_instruction(Vcpu& v, ExitReason reason) {
  switch (reason) {
    case ExitReason::VMXON: return handle_vmxon(v);
    case ExitReason::VMXOFF: return handle_vmxoff(v);
    case ExitReason::VMCLEAR: return handle_vmclear(v);
    case ExitReason::VMPTRLD: return handle_vmptrld(v);
    case ExitReason::VMPTRST: return handle_vmptrst(v);
    case ExitReason::VMREAD: return handle_vmread(v);
    case ExitReason::VMWRITE: return handle_vmwrite(v);
    case ExitReason::INVEPT: return handle_invept(v);
    case ExitReason::INVVPID: return handle_invvpid(v);
    case ExitReason::VMCALL: return handle_vmcall(v);
    default: return fault(v, Vector::kUD);
  }
}

}  // namespace nestvm::hv::nested
