// VMX non-root execution of instructions (SDM Vol. 3 Chapter 26): the exiting conditions and
// changed behaviours that instruction handlers (cpu/insn/*.cpp) consult when
// Cpu::vmx_non_root() is true, and the exit information of SDM §28.2 they report.
//
// Priority (SDM §26.1.1): handlers make the checks that come before a VM exit themselves
// (#UD, faults based on privilege level, the TSS I/O-permission check, faults while fetching an
// operand on whose contents the exit depends), then call these; every other fault of the
// instruction comes after the exit. Everything here is out of line: root-mode handlers pay one
// predictable test of vmx_non_root().
#pragma once
#include <cstdint>

#include "arch/vmx.h"
#include "cpu/cpu.h"

namespace nestvm::cpu::vmx {

// ---- exit information (insn_info.cpp) -------------------------------------------------------
// The exit qualification of instructions with a memory operand (descriptor-table and VMX
// instructions, INVPCID): the displacement, sign-extended, or displacement + next RIP for
// RIP-relative addressing; 0 for a register operand (SDM §28.2.1, Table 28-1).
uint64_t displacement_qualification(const Cpu& c, const Insn& i);
// The addressing bits common to every memory format of the instruction-information field
// (scaling, address size, segment, index and base with their invalid bits).
uint32_t memory_operand_info(const Insn& i);
// The linear address of the memory operand (segment base + effective address; bits 63:32 clear
// outside 64-bit mode), for GUEST_LINEAR_ADDRESS.
uint64_t operand_linear_address(const Cpu& c, const Insn& i);
// A VM exit caused by `i` that also reports a guest-linear address.
Status exit_with_linear_address(Cpu& c, const Insn& i, arch::ExitReason reason, uint64_t qualification,
                                uint32_t insn_info, uint64_t linear_address);

// ---- control registers (nonroot_cr.cpp) -----------------------------------------------------
// CR0 and CR4 as MOV from CR0/CR4 and SMSW read them: bits set in the guest/host mask come from
// the read shadow (SDM §26.3).
uint64_t guest_read_cr0(const Cpu& c);
uint64_t guest_read_cr4(const Cpu& c);
// MOV from CRn (n = 0, 3, 4, 8) into GPR `gpr`: kNext with `value`, or the exit (kExit).
Status mov_from_cr(Cpu& c, const Insn& i, unsigned cr, unsigned gpr, uint64_t& value);
// MOV to CRn (n = 0, 3, 4, 8) from GPR `gpr` holding `value`: the exit, or the write with the
// non-root rules (kEndBlock), or its fault.
Status mov_to_cr(Cpu& c, const Insn& i, unsigned cr, unsigned gpr, uint64_t value);
// CLTS after its CPL check.
Status clts(Cpu& c, const Insn& i);
// LMSW after its CPL check, with the source operand fetched (operand faults come first).
Status lmsw(Cpu& c, const Insn& i, uint16_t src, bool mem_operand);

// ---- TPR shadow and x2APIC virtualization of the TPR (tpr_shadow.cpp) -----------------------
// VTPR: the 32 bits at offset 80H of the virtual-APIC page.
uint32_t read_vtpr(Cpu& c);
// Writes VTPR (bytes 84H-87H are cleared too when `clear_high`, as WRMSR 808H does) and performs
// TPR virtualization: a trap-like "TPR below threshold" exit after the instruction `i` when
// VTPR[7:4] drops below TPR_THRESHOLD[3:0]. Returns kEndBlock, or kExit with RIP past `i`.
Status write_vtpr(Cpu& c, const Insn& i, uint32_t v, bool clear_high);
// RDMSR/WRMSR of the x2APIC TPR (808H) with "virtualize x2APIC mode": EDX:EAX from offset 80H, and
// the write with its #GP(0) for bits 63:8 followed by TPR virtualization.
uint64_t read_x2apic_vtpr(Cpu& c);
Status write_x2apic_vtpr(Cpu& c, const Insn& i, uint64_t value);

// ---- I/O and MSR bitmaps (io_msr_bitmaps.cpp) -----------------------------------------------
// Whether an access of `size` bytes at `port` exits: unconditional I/O exiting, or a set bit in
// the I/O bitmaps for any of the ports, or a wrap past FFFFH (SDM §26.1.3).
bool io_exiting(Cpu& c, uint16_t port, unsigned size);
// The exits of IN/OUT (imm: the port is an immediate) and of INS/OUTS (with the guest-linear
// address of the first element and, as IA32_VMX_BASIC[54] announces, the instruction info).
Status io_exit(Cpu& c, const Insn& i, uint16_t port, unsigned size, bool in, bool imm);
Status string_io_exit(Cpu& c, const Insn& i, unsigned size, unsigned address_size, bool in, bool rep);
// Whether RDMSR (write = false) or WRMSR of `index` exits: always without MSR bitmaps, and for
// an index outside 0-1FFFH and C0000000H-C0001FFFH; otherwise per the bitmap bit.
bool msr_exiting(Cpu& c, uint32_t index, bool write);
// RDMSR/WRMSR after their CPL check: the exit, the x2APIC-mode virtualization of the TPR, TSC
// offsetting of IA32_TIME_STAMP_COUNTER reads, or the access itself. rdmsr returns kNext with
// `value`; wrmsr returns the handler's status.
Status rdmsr(Cpu& c, const Insn& i, uint32_t index, uint64_t& value);
Status wrmsr(Cpu& c, const Insn& i, uint32_t index, uint64_t value);

// ---- time-stamp counter and PAUSE (pause_loop.cpp) ------------------------------------------
// The TSC that RDTSC, RDTSCP and RDMSR(10H) return in non-root operation without RDTSC exiting:
// offset by TSC_OFFSET when "use TSC offsetting" is 1 (SDM §26.3; no TSC scaling is offered).
uint64_t guest_tsc_offset(const Cpu& c);
// PAUSE: PAUSE exiting at any CPL, PAUSE-loop exiting at CPL 0 (SDM §26.1.3). kNext when the
// instruction executes.
Status pause(Cpu& c, const Insn& i);

}  // namespace nestvm::cpu::vmx
