/* VMX as the minivisor uses it (SDM Vol. 3 Ch. 24-29 and Appendix A-C): VMCS field encodings
 * (from nestvm's field table, which lists the SDM's encodings), capability MSRs, control bits,
 * exit reasons, and the VMX instructions as inline functions. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

enum vmcs_field {
#define NESTVM_VMCS_FIELD(name, encoding, offset, shadowed) VMCS_##name = encoding,
#include "arch/vmcs_fields.def"
#undef NESTVM_VMCS_FIELD
};

/* Capability and control MSRs (SDM Vol. 3 Appendix A, Vol. 4 Table 2-2). */
#define MSR_IA32_FEATURE_CONTROL 0x3a
#define FEATURE_CONTROL_LOCKED (1ull << 0)
#define FEATURE_CONTROL_VMXON_OUTSIDE_SMX (1ull << 2)
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_DEBUGCTL 0x1d9
#define MSR_IA32_PAT 0x277
#define MSR_IA32_VMX_BASIC 0x480
#define MSR_IA32_VMX_PINBASED_CTLS 0x481
#define MSR_IA32_VMX_PROCBASED_CTLS 0x482
#define MSR_IA32_VMX_EXIT_CTLS 0x483
#define MSR_IA32_VMX_ENTRY_CTLS 0x484
#define MSR_IA32_VMX_MISC 0x485
#define MSR_IA32_VMX_CR0_FIXED0 0x486
#define MSR_IA32_VMX_CR0_FIXED1 0x487
#define MSR_IA32_VMX_CR4_FIXED0 0x488
#define MSR_IA32_VMX_CR4_FIXED1 0x489
#define MSR_IA32_VMX_PROCBASED_CTLS2 0x48b
#define MSR_IA32_VMX_EPT_VPID_CAP 0x48c
#define MSR_IA32_VMX_TRUE_PINBASED_CTLS 0x48d
#define MSR_IA32_VMX_TRUE_PROCBASED_CTLS 0x48e
#define MSR_IA32_VMX_TRUE_EXIT_CTLS 0x48f
#define MSR_IA32_VMX_TRUE_ENTRY_CTLS 0x490

#define VMX_BASIC_TRUE_CTLS (1ull << 55)
#define VMX_MISC_WAIT_FOR_SIPI (1ull << 8)
#define EPT_CAP_WALK_4 (1ull << 6)
#define EPT_CAP_WB (1ull << 14)
#define EPT_CAP_2M (1ull << 16)

/* Primary processor-based controls (SDM Vol. 3 Table 25-6). */
#define CPU_BASED_USE_IO_BITMAPS (1u << 25)
#define CPU_BASED_USE_MSR_BITMAPS (1u << 28)
#define CPU_BASED_ACTIVATE_SECONDARY (1u << 31)
/* Secondary (Table 25-7). */
#define SECONDARY_ENABLE_EPT (1u << 1)
#define SECONDARY_ENABLE_RDTSCP (1u << 3)
#define SECONDARY_UNRESTRICTED_GUEST (1u << 7)
#define SECONDARY_ENABLE_INVPCID (1u << 12)
#define SECONDARY_ENABLE_XSAVES (1u << 20)
/* VM-exit controls (Table 25-13). */
#define EXIT_HOST_ADDR_SPACE_SIZE (1u << 9)
#define EXIT_SAVE_IA32_PAT (1u << 18)
#define EXIT_LOAD_IA32_PAT (1u << 19)
#define EXIT_SAVE_IA32_EFER (1u << 20)
#define EXIT_LOAD_IA32_EFER (1u << 21)
/* VM-entry controls (Table 25-15). */
#define ENTRY_IA32E_MODE (1u << 9)
#define ENTRY_LOAD_IA32_PAT (1u << 14)
#define ENTRY_LOAD_IA32_EFER (1u << 15)

/* Activity states (Table 25-3). */
#define ACTIVITY_ACTIVE 0
#define ACTIVITY_WAIT_FOR_SIPI 3

/* Basic exit reasons (Appendix C). */
#define EXIT_REASON_EXCEPTION_NMI 0
#define EXIT_REASON_EXTERNAL_INTERRUPT 1
#define EXIT_REASON_TRIPLE_FAULT 2
#define EXIT_REASON_INIT 3
#define EXIT_REASON_SIPI 4
#define EXIT_REASON_TASK_SWITCH 9
#define EXIT_REASON_CPUID 10
#define EXIT_REASON_GETSEC 11
#define EXIT_REASON_HLT 12
#define EXIT_REASON_INVD 13
#define EXIT_REASON_VMCALL 18
#define EXIT_REASON_VMCLEAR 19
#define EXIT_REASON_VMLAUNCH 20
#define EXIT_REASON_VMPTRLD 21
#define EXIT_REASON_VMPTRST 22
#define EXIT_REASON_VMREAD 23
#define EXIT_REASON_VMRESUME 24
#define EXIT_REASON_VMWRITE 25
#define EXIT_REASON_VMOFF 26
#define EXIT_REASON_VMON 27
#define EXIT_REASON_CR_ACCESS 28
#define EXIT_REASON_INVALID_STATE 33
#define EXIT_REASON_EPT_VIOLATION 48
#define EXIT_REASON_EPT_MISCONFIG 49
#define EXIT_REASON_INVEPT 50
#define EXIT_REASON_INVVPID 53
#define EXIT_REASON_XSETBV 55
#define EXIT_REASON_VMFUNC 59
#define EXIT_REASON_ENTRY_FAILED (1u << 31)

/* VM-entry interruption information (SDM Vol. 3 25.8.3): valid, type, vector. */
#define INTR_INFO_VALID (1u << 31)
#define INTR_TYPE_HARD_EXCEPTION (3u << 8)
#define INTR_INFO_DELIVER_CODE (1u << 11)

/* VMXON, VMCLEAR, VMPTRLD: the operand is a 64-bit physical address in memory. Each returns
 * true on VMsucceed (CF and ZF clear). */
static inline bool vmxon(uint64_t pa) {
  bool ok;
  __asm__ volatile("vmxon %1; seta %0" : "=qm"(ok) : "m"(pa) : "cc", "memory");
  return ok;
}
static inline bool vmclear(uint64_t pa) {
  bool ok;
  __asm__ volatile("vmclear %1; seta %0" : "=qm"(ok) : "m"(pa) : "cc", "memory");
  return ok;
}
static inline bool vmptrld(uint64_t pa) {
  bool ok;
  __asm__ volatile("vmptrld %1; seta %0" : "=qm"(ok) : "m"(pa) : "cc", "memory");
  return ok;
}
static inline bool vmwrite_ok(uint64_t field, uint64_t value) {
  bool ok;
  __asm__ volatile("vmwrite %2, %1; seta %0" : "=qm"(ok) : "r"(field), "rm"(value) : "cc", "memory");
  return ok;
}
static inline uint64_t vmread(uint64_t field) {
  uint64_t value = 0;
  __asm__ volatile("vmread %1, %0" : "=rm"(value) : "r"(field) : "cc", "memory");
  return value;
}

/* The general registers of L2 that the VMCS does not hold (RSP and RIP are in it). */
struct guest_regs {
  uint64_t rax, rcx, rdx, rbx, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15;
};

/* Enters L2 (VMLAUNCH when !launched, else VMRESUME) and returns at its next VM exit with 0, or
 * at once with 1 (VMfailInvalid) or 2 (VMfailValid) when the instruction fails (entry.S). */
int vmx_run(struct guest_regs* regs, int launched);
