/* The VMX instructions an L1 hypervisor executes in VMX root operation, each with the outcome
 * the SDM gives (Vol. 3 Chapter 31, Vol. 2 per instruction): VMsucceed, VMfailInvalid (CF),
 * VMfailValid (ZF, with the error number in the current VMCS), #UD and #GP. Runs at L1 on
 * nestvm's nested VMX (QEMU's TCG has no VMX). */
#include "runtime/libc.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/traps.h"
#include "runtime/x86.h"

#define MSR_FEATURE_CONTROL 0x3a
#define MSR_VMX_BASIC 0x480
#define MSR_VMX_MISC 0x485
#define MSR_VMX_PROCBASED_CTLS2 0x48b
#define MSR_VMX_EPT_VPID_CAP 0x48c
#define CR4_VMXE (1ull << 13)

#define ARITH 0x8d5ull /* CF PF AF ZF SF OF */
#define SUCCEED 0ull
#define FAIL_INVALID 1ull
#define FAIL_VALID 0x40ull

#define VM_INSTRUCTION_ERROR 0x4400
#define VM_EXIT_REASON 0x4402
#define GUEST_RIP 0x681e

static uint8_t regions[4][4096] __attribute__((aligned(4096)));
static uint8_t* const vmxon_region = regions[0];
static uint8_t* const vmcs_a = regions[1];
static uint8_t* const vmcs_b = regions[2];

static uint64_t vmxon_insn(uint64_t pa) {
  uint64_t f;
  __asm__ volatile("vmxon %1\n\tpushfq\n\tpop %0" : "=r"(f) : "m"(pa) : "cc", "memory");
  return f & ARITH;
}
static uint64_t vmptrld_insn(uint64_t pa) {
  uint64_t f;
  __asm__ volatile("vmptrld %1\n\tpushfq\n\tpop %0" : "=r"(f) : "m"(pa) : "cc", "memory");
  return f & ARITH;
}
static uint64_t vmclear_insn(uint64_t pa) {
  uint64_t f;
  __asm__ volatile("vmclear %1\n\tpushfq\n\tpop %0" : "=r"(f) : "m"(pa) : "cc", "memory");
  return f & ARITH;
}
static uint64_t vmptrst_insn(uint64_t* out) {
  uint64_t f;
  __asm__ volatile("vmptrst %1\n\tpushfq\n\tpop %0" : "=r"(f), "=m"(*out) : : "cc", "memory");
  return f & ARITH;
}
static uint64_t vmread_insn(uint64_t field, uint64_t* value) {
  uint64_t f, v = 0;
  __asm__ volatile("vmread %2, %1\n\tpushfq\n\tpop %0" : "=r"(f), "+r"(v) : "r"(field) : "cc", "memory");
  *value = v;
  return f & ARITH;
}
static uint64_t vmwrite_insn(uint64_t field, uint64_t value) {
  uint64_t f;
  __asm__ volatile("vmwrite %2, %1\n\tpushfq\n\tpop %0" : "=r"(f) : "r"(field), "r"(value) : "cc", "memory");
  return f & ARITH;
}
static uint64_t invept_insn(uint64_t type, uint64_t eptp) {
  struct { uint64_t eptp, reserved; } desc = {eptp, 0};
  uint64_t f;
  __asm__ volatile("invept %1, %2\n\tpushfq\n\tpop %0" : "=r"(f) : "m"(desc), "r"(type) : "cc", "memory");
  return f & ARITH;
}
static uint64_t invvpid_insn(uint64_t type, uint64_t vpid, uint64_t la) {
  struct { uint64_t vpid, la; } desc = {vpid, la};
  uint64_t f;
  __asm__ volatile("invvpid %1, %2\n\tpushfq\n\tpop %0" : "=r"(f) : "m"(desc), "r"(type) : "cc", "memory");
  return f & ARITH;
}
static uint64_t vmcall_insn(void) {
  uint64_t f;
  __asm__ volatile("vmcall\n\tpushfq\n\tpop %0" : "=r"(f) : : "cc", "memory");
  return f & ARITH;
}
static uint64_t vmxoff_insn(void) {
  uint64_t f;
  __asm__ volatile("vmxoff\n\tpushfq\n\tpop %0" : "=r"(f) : : "cc", "memory");
  return f & ARITH;
}

/* CPUID and MOV to CR4 exit to L0, which emulates them; they stay alone in functions of their
 * own so that nothing after them shares their code block (L0's emulator runs L1 code a decoded
 * block at a time, and its processor is not in VMX operation). */
static __attribute__((noinline)) uint32_t cpuid1_ecx(void) { return cpuid(1).c; }
static __attribute__((noinline)) void set_cr4(uint64_t v) { write_cr4(v); }
static __attribute__((noinline)) void set_cr0(uint64_t v) { write_cr0(v); }

static uint64_t instruction_error(void) {
  uint64_t e = ~0ull;
  vmread_insn(VM_INSTRUCTION_ERROR, &e);
  return e;
}

/* VMfailValid(n): ZF and error n in the current VMCS. */
static void check_fail_valid(const char* what, uint64_t flags, uint64_t error) {
  char name[96];
  snprintf(name, sizeof(name), "%s: VMfailValid", what);
  check_eq(name, flags, FAIL_VALID);
  snprintf(name, sizeof(name), "%s: VM-instruction error", what);
  check_eq(name, instruction_error(), error);
}

static void vmxon_fn(void* arg) { vmxon_insn((uint64_t)(uintptr_t)vmxon_region); }
static void vmxoff_fn(void* arg) { vmxoff_insn(); }
static void vmptrst_fn(void* arg) {
  uint64_t p;
  vmptrst_insn(&p);
}
static void vmcall_fn(void* arg) { vmcall_insn(); }

int main(int argc, char** argv) {
  if (!((cpuid1_ecx() >> 5) & 1)) {
    report_skip("VMX instructions", "CPUID.1:ECX.VMX is clear");
    return report_summary();
  }
  const uint64_t basic = rdmsr(MSR_VMX_BASIC);
  const uint32_t revision = (uint32_t)basic & 0x7fffffff;
  check_eq("IA32_VMX_BASIC: 4 KiB VMCS regions", (basic >> 32) & 0x1fff, 4096);
  check_eq("IA32_VMX_BASIC[31] is 0", (basic >> 31) & 1, 0);
  const uint64_t misc = rdmsr(MSR_VMX_MISC);
  /* IA32_VMX_PROCBASED_CTLS2 exists with "activate secondary controls", IA32_VMX_EPT_VPID_CAP
   * with EPT or VPID (SDM A.3.3, A.10). */
  const uint64_t ctls2 = (rdmsr(0x482) >> 63) ? rdmsr(MSR_VMX_PROCBASED_CTLS2) >> 32 : 0;
  const uint64_t ept_vpid = (ctls2 & ((1u << 1) | (1u << 5))) ? rdmsr(MSR_VMX_EPT_VPID_CAP) : 0;
  for (int i = 0; i < 3; ++i) *(volatile uint32_t*)regions[i] = revision;
  const uint64_t pa_vmxon = (uintptr_t)vmxon_region, pa_a = (uintptr_t)vmcs_a, pa_b = (uintptr_t)vmcs_b;
  struct fault_info info;

  /* Outside VMX operation. */
  check_eq("VMCALL outside VMX operation: #UD", trap_run(vmcall_fn, NULL, &info), UD_VECTOR);
  check_eq("VMPTRST outside VMX operation: #UD", trap_run(vmptrst_fn, NULL, &info), UD_VECTOR);
  set_cr4(read_cr4() & ~CR4_VMXE);
  check_eq("VMXON with CR4.VMXE = 0: #UD", trap_run(vmxon_fn, NULL, &info), UD_VECTOR);
  set_cr4(read_cr4() | CR4_VMXE);

  /* IA32_FEATURE_CONTROL: nothing locks it before us (no firmware); VMXON needs it locked. */
  uint64_t fc = rdmsr(MSR_FEATURE_CONTROL);
  if (!(fc & 1)) {
    check_eq("VMXON with IA32_FEATURE_CONTROL unlocked: #GP", trap_run(vmxon_fn, NULL, &info), GP_VECTOR);
    wrmsr(MSR_FEATURE_CONTROL, 5);
    fc = rdmsr(MSR_FEATURE_CONTROL);
  }
  check_eq("IA32_FEATURE_CONTROL locked, VMXON outside SMX", fc & 5, 5);

  /* CR0 and CR4 must hold their VMX-fixed bits (IA32_VMX_CR0/CR4_FIXED0/1): multiboot leaves
   * CR0.NE clear. */
  const uint64_t cr0_fixed0 = rdmsr(0x486);
  if (!(read_cr0() & (1ull << 5)))
    check_eq("VMXON with CR0.NE = 0: #GP", trap_run(vmxon_fn, NULL, &info), GP_VECTOR);
  set_cr0(read_cr0() | cr0_fixed0);

  /* VMXON. */
  check_eq("VMXON unaligned: VMfailInvalid", vmxon_insn(pa_vmxon + 8), FAIL_INVALID);
  *(volatile uint32_t*)regions[3] = revision + 1;
  check_eq("VMXON wrong revision: VMfailInvalid", vmxon_insn((uintptr_t)regions[3]), FAIL_INVALID);
  check_eq("VMXON: VMsucceed", vmxon_insn(pa_vmxon), SUCCEED);
  check_eq("VMXON again, no current VMCS: VMfailInvalid", vmxon_insn(pa_vmxon), FAIL_INVALID);
  check_eq("VMXOFF at CPL 3: #GP", trap_run_user(vmxoff_fn, NULL, &info), GP_VECTOR);

  /* VMPTRLD, VMPTRST. */
  uint64_t ptr = 0;
  check_eq("VMPTRST without a current VMCS: VMsucceed", vmptrst_insn(&ptr), SUCCEED);
  check_eq("VMPTRST without a current VMCS stores all ones", ptr, ~0ull);
  check_eq("VMREAD without a current VMCS: VMfailInvalid", vmread_insn(GUEST_RIP, &ptr), FAIL_INVALID);
  check_eq("VMPTRLD unaligned, no current VMCS: VMfailInvalid", vmptrld_insn(pa_a + 16), FAIL_INVALID);
  check_eq("VMPTRLD: VMsucceed", vmptrld_insn(pa_a), SUCCEED);
  check_eq("VMPTRST", (vmptrst_insn(&ptr), ptr), pa_a);
  check_fail_valid("VMXON in VMX root operation", vmxon_insn(pa_vmxon), 15);
  check_fail_valid("VMPTRLD unaligned", vmptrld_insn(pa_a + 16), 9);
  check_fail_valid("VMPTRLD VMXON pointer", vmptrld_insn(pa_vmxon), 10);
  *(volatile uint32_t*)vmcs_b = revision ^ 1;
  check_fail_valid("VMPTRLD wrong revision", vmptrld_insn(pa_b), 11);
  *(volatile uint32_t*)vmcs_b = revision;

  /* VMWRITE, VMREAD. */
  uint64_t v = 0;
  check_eq("VMWRITE GUEST_RIP: VMsucceed", vmwrite_insn(GUEST_RIP, 0x1234567890ull), SUCCEED);
  check_eq("VMREAD GUEST_RIP: VMsucceed", vmread_insn(GUEST_RIP, &v), SUCCEED);
  check_eq("VMREAD GUEST_RIP reads what VMWRITE wrote", v, 0x1234567890ull);
  check_eq("VMWRITE 16-bit field", vmwrite_insn(0x0800, 0x12345), SUCCEED);
  check_eq("VMREAD 16-bit field: truncated", (vmread_insn(0x0800, &v), v), 0x2345);
  check_fail_valid("VMREAD unsupported field", vmread_insn(0x7ffe, &v), 12);
  check_fail_valid("VMWRITE unsupported field", vmwrite_insn(1ull << 32, 0), 12);
  if (misc & (1ull << 29))
    check_eq("VMWRITE exit reason with IA32_VMX_MISC[29]: VMsucceed", vmwrite_insn(VM_EXIT_REASON, 1), SUCCEED);
  else
    check_fail_valid("VMWRITE exit reason", vmwrite_insn(VM_EXIT_REASON, 1), 13);

  /* VMCALL in VMX root operation. */
  check_fail_valid("VMCALL in VMX root operation", vmcall_insn(), 1);

  /* INVEPT, INVVPID against the capabilities. */
  if ((ctls2 & (1u << 1)) && (ept_vpid & (1ull << 20))) {
    check_fail_valid("INVEPT type 3", invept_insn(3, 0), 28);
    if (ept_vpid & (1ull << 25)) {
      check_fail_valid("INVEPT single context, bad EPTP", invept_insn(1, 0x7), 28);
      check_eq("INVEPT single context: VMsucceed", invept_insn(1, 0x1e), SUCCEED);
    }
    if (ept_vpid & (1ull << 26)) check_eq("INVEPT all contexts: VMsucceed", invept_insn(2, 0), SUCCEED);
  } else {
    report_skip("INVEPT", "EPT or INVEPT is not offered");
  }
  if ((ctls2 & (1u << 5)) && (ept_vpid & (1ull << 32))) {
    check_fail_valid("INVVPID type 4", invvpid_insn(4, 1, 0), 28);
    if (ept_vpid & (1ull << 41)) {
      check_fail_valid("INVVPID single context, VPID 0", invvpid_insn(1, 0, 0), 28);
      check_fail_valid("INVVPID descriptor bits 63:16", invvpid_insn(1, 0x10001, 0), 28);
      check_eq("INVVPID single context: VMsucceed", invvpid_insn(1, 1, 0), SUCCEED);
    }
    if (ept_vpid & (1ull << 40)) {
      check_fail_valid("INVVPID address, non-canonical", invvpid_insn(0, 1, 1ull << 47), 28);
      check_eq("INVVPID address: VMsucceed", invvpid_insn(0, 1, 0x1000), SUCCEED);
    }
    if (ept_vpid & (1ull << 42)) check_eq("INVVPID all contexts: VMsucceed", invvpid_insn(2, 0, 0), SUCCEED);
  } else {
    report_skip("INVVPID", "VPID or INVVPID is not offered");
  }

  /* VMCLEAR. */
  check_fail_valid("VMCLEAR unaligned", vmclear_insn(pa_b + 8), 2);
  check_fail_valid("VMCLEAR VMXON pointer", vmclear_insn(pa_vmxon), 3);
  check_eq("VMCLEAR another VMCS: VMsucceed", vmclear_insn(pa_b), SUCCEED);
  check_eq("VMCLEAR the current VMCS: VMsucceed", vmclear_insn(pa_a), SUCCEED);
  check_eq("after VMCLEAR of the current VMCS none is current", (vmptrst_insn(&ptr), ptr), ~0ull);
  check_eq("VMCLEAR unaligned, no current VMCS: VMfailInvalid", vmclear_insn(pa_b + 8), FAIL_INVALID);
  check_eq("VMPTRLD again: VMsucceed", vmptrld_insn(pa_a), SUCCEED);
  check_eq("GUEST_RIP survived VMCLEAR and VMPTRLD", (vmread_insn(GUEST_RIP, &v), v), 0x1234567890ull);

  /* VMXOFF. */
  check_eq("VMXOFF: VMsucceed", vmxoff_insn(), SUCCEED);
  check_eq("VMPTRST after VMXOFF: #UD", trap_run(vmptrst_fn, NULL, &info), UD_VECTOR);
  check_eq("VMXON after VMXOFF: VMsucceed", vmxon_insn(pa_vmxon), SUCCEED);
  check_eq("VMXOFF again: VMsucceed", vmxoff_insn(), SUCCEED);
  return report_summary();
}
