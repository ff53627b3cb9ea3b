// Architectural state of one logical processor: everything software can observe or that a VMCS
// guest-state area holds (SDM Vol. 3 §25.4). The core's derived, cached state lives in Cpu.
#pragma once
#include <array>
#include <cstdint>

#include "arch/exception.h"
#include "arch/segment.h"

namespace nestvm::cpu {

using arch::DescriptorTableReg;
using arch::Segment;
using arch::SegReg;

enum Gpr : uint8_t {
  kRax = 0, kRcx, kRdx, kRbx, kRsp, kRbp, kRsi, kRdi,
  kR8, kR9, kR10, kR11, kR12, kR13, kR14, kR15,
};
inline constexpr int kNumGprs = 16;

// x87, MMX and SSE state. x87 registers are kept in physical order R0-R7 (ST(i) is
// R[(TOP + i) & 7]); each 80-bit value occupies the low 10 bytes of a 16-byte slot.
struct FpuState {
  uint16_t fcw = 0x037f;
  uint16_t fsw = 0;
  uint16_t ftw = 0xffff;  // full tag word, 2 bits per physical register (11 = empty)
  uint16_t fop = 0;
  uint64_t fip = 0;
  uint64_t fdp = 0;
  uint16_t fcs = 0;
  uint16_t fds = 0;
  uint32_t mxcsr = 0x1f80;
  alignas(16) std::array<std::array<uint8_t, 16>, 8> st{};
  alignas(16) std::array<std::array<uint8_t, 16>, 16> xmm{};
  unsigned top() const { return (fsw >> 11) & 7; }
};

// Model-specific registers that carry architectural state (SDM Vol. 4). The MSR file
// (msr_file.cpp) maps indices onto these fields and applies each register's rules.
struct MsrState {
  uint64_t efer = 0;
  uint64_t star = 0, lstar = 0, cstar = 0, fmask = 0;
  uint64_t kernel_gs_base = 0;
  uint64_t sysenter_cs = 0, sysenter_esp = 0, sysenter_eip = 0;
  uint64_t pat = 0x0007040600070406ull;  // power-up value (SDM §12.12.4)
  uint64_t tsc_offset = 0;  // guest TSC = host TSC + tsc_offset (IA32_TIME_STAMP_COUNTER writes)
  uint64_t tsc_adjust = 0;
  uint64_t tsc_aux = 0;
  uint64_t apic_base = 0;
  uint64_t debugctl = 0;
  uint64_t misc_enable = 1;  // fast-strings enabled
  uint64_t feature_control = 0;
  uint64_t spec_ctrl = 0;
  uint64_t mtrr_def_type = 0;
  std::array<uint64_t, 16> mtrr_var{};   // PHYSBASE0, PHYSMASK0, ... PHYSMASK7
  std::array<uint64_t, 11> mtrr_fixed{}; // FIX64K_00000, FIX16K_80000/A0000, FIX4K_C0000..F8000
  uint64_t mcg_status = 0;
  uint64_t xss = 0;
  uint64_t perf_global_ctrl = 0;
  uint64_t bios_sign_id = 0;
};

// Activity state, encoded as in the VMCS guest activity-state field (SDM Vol. 3 §25.4.2).
enum class Activity : uint8_t { kActive = 0, kHlt = 1, kShutdown = 2, kWaitForSipi = 3 };

// An event to deliver through the IDT, in the terms of the VMX interruption-information format.
struct Event {
  uint8_t vector = 0;
  arch::EventType type = arch::EventType::kHardwareException;
  bool has_error = false;
  uint32_t error = 0;
  uint8_t insn_len = 0;  // for software interrupts/exceptions: RIP advances past the instruction
  // Injected by VM entry (SDM §27.6): not subject to the exception bitmap, and delivered with
  // RFLAGS.RF as loaded (the injector sets RF for fault-class exceptions, as KVM does).
  bool injected = false;
};

struct CpuState {
  std::array<uint64_t, kNumGprs> gpr{};
  uint64_t rip = 0xfff0;
  uint64_t rflags = 0x2;  // arithmetic flags may be stale; Cpu::rflags() materializes them
  std::array<Segment, arch::kNumSegRegs> seg{};
  Segment ldtr{};
  Segment tr{};
  DescriptorTableReg gdtr{};
  DescriptorTableReg idtr{};
  uint64_t cr0 = 0x60000010;  // CD, NW, ET after RESET (SDM Table 10-1)
  uint64_t cr2 = 0;
  uint64_t cr3 = 0;
  uint64_t cr4 = 0;
  uint64_t cr8 = 0;  // task priority (CR8[3:0])
  std::array<uint64_t, 4> pdpte{};  // PAE page-directory-pointer-table entries, loaded with CR3
  std::array<uint64_t, 4> dr{};     // DR0-DR3
  uint64_t dr6 = 0xffff0ff0;
  uint64_t dr7 = 0x400;
  uint64_t xcr0 = 1;
  MsrState msr;
  FpuState fpu;
  // Interruptibility (SDM Vol. 3 §25.4.2): blocking by STI, by MOV SS/POP SS, by NMI.
  bool sti_blocking = false;
  bool movss_blocking = false;
  bool nmi_blocking = false;
  Activity activity = Activity::kActive;
  // An address range armed by MONITOR for a later MWAIT (SDM Vol. 2 MONITOR/MWAIT).
  bool monitor_armed = false;
};

}  // namespace nestvm::cpu
