/* VM entry and exit through nestvm's nested VMX, seen from an L1 hypervisor (SDM Vol. 3
 * Chapters 27 and 28): VMLAUNCH/VMRESUME failing with the error numbers hardware gives, a
 * VM-entry failure on invalid guest state, and a 64-bit L2 sharing L1's page tables behind an
 * EPT12 whose exits reach L1 as the controls ask (CPUID, HLT, I/O bitmaps, exception bitmap,
 * EPT violations with their qualification). Runs at L1 on nestvm (QEMU's TCG has no VMX). */
#include "runtime/libc.h"
#include "runtime/percpu.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/x86.h"

#define ARITH 0x8d5ull
#define FAIL_INVALID 1ull
#define FAIL_VALID 0x40ull

enum {
  PIN = 0x4000, PROC = 0x4002, EXC_BITMAP = 0x4004, EXIT_CTLS = 0x400c, ENTRY_CTLS = 0x4012, PROC2 = 0x401e,
  INSN_ERROR = 0x4400, EXIT_REASON = 0x4402, EXIT_INTR_INFO = 0x4404, EXIT_INSN_LEN = 0x440c, QUAL = 0x6400,
  GPA = 0x2400, EPTP = 0x201a, LINK = 0x2800, IO_A = 0x2000, IO_B = 0x2002,
  G_ES_SEL = 0x800, G_TR_SEL = 0x80e, G_LDTR_SEL = 0x80c, G_ES_LIMIT = 0x4800, G_GDTR_LIMIT = 0x4810,
  G_IDTR_LIMIT = 0x4812, G_ES_AR = 0x4814, G_LDTR_AR = 0x4820, G_TR_AR = 0x4822, G_INTR = 0x4824,
  G_ACTIVITY = 0x4826, G_CR0 = 0x6800, G_CR3 = 0x6802, G_CR4 = 0x6804, G_ES_BASE = 0x6806, G_FS_BASE = 0x680e,
  G_GS_BASE = 0x6810, G_TR_BASE = 0x6814, G_GDTR_BASE = 0x6816, G_IDTR_BASE = 0x6818, G_DR7 = 0x681a,
  G_RSP = 0x681c, G_RIP = 0x681e, G_RFLAGS = 0x6820, G_EFER = 0x2806,
  H_ES_SEL = 0xc00, H_CS_SEL = 0xc02, H_SS_SEL = 0xc04, H_DS_SEL = 0xc06, H_FS_SEL = 0xc08, H_GS_SEL = 0xc0a,
  H_TR_SEL = 0xc0c, H_CR0 = 0x6c00, H_CR3 = 0x6c02, H_CR4 = 0x6c04, H_FS_BASE = 0x6c06, H_GS_BASE = 0x6c08,
  H_TR_BASE = 0x6c0a, H_GDTR_BASE = 0x6c0c, H_IDTR_BASE = 0x6c0e, H_EFER = 0x2c02,
};

#define EXIT_REASON_EXCEPTION 0
#define EXIT_REASON_CPUID 10
#define EXIT_REASON_HLT 12
#define EXIT_REASON_IO 30
#define EXIT_REASON_INVALID_STATE 33
#define EXIT_REASON_EPT_VIOLATION 48

static uint8_t regions[2][4096] __attribute__((aligned(4096)));
static uint64_t ept_pml4[512] __attribute__((aligned(4096)));
static uint64_t ept_pdpt[512] __attribute__((aligned(4096)));
static uint64_t ept_pd[512] __attribute__((aligned(4096)));
static uint8_t io_bitmaps[2][4096] __attribute__((aligned(4096)));
static uint8_t l2_stack[8192] __attribute__((aligned(4096)));
/* EPT12 leaves this 2 MiB region out, and maps the next one read/execute only. */
static uint8_t hole[2 << 20] __attribute__((aligned(2 << 20)));
static uint8_t read_only[2 << 20] __attribute__((aligned(2 << 20)));

/* vm_enter(resume): 0 when a VM exit came back to the host RIP, else the RFLAGS of the failed
 * VMLAUNCH/VMRESUME with bit 63 set. The host RSP is the frame of the callee-saved registers,
 * so that the exit returns from vm_enter. */
uint64_t vm_enter(int resume);
__asm__(".text\n"
        ".globl vm_enter\n"
        "vm_enter:\n"
        "  push %rbp; push %rbx; push %r12; push %r13; push %r14; push %r15\n"
        "  mov $0x6c14, %eax; vmwrite %rsp, %rax\n"
        "  lea vm_exit_landing(%rip), %rdx; mov $0x6c16, %eax; vmwrite %rdx, %rax\n"
        "  test %edi, %edi; jnz 1f\n"
        "  vmlaunch; jmp 2f\n"
        "1: vmresume\n"
        "2: pushfq; pop %rax; bts $63, %rax; jmp 3f\n"
        "vm_exit_landing:\n"
        "  xor %eax, %eax\n"
        "3: pop %r15; pop %r14; pop %r13; pop %r12; pop %rbx; pop %rbp; ret\n"
        /* L2's code. */
        "l2_cpuid: mov $0, %eax; cpuid; hlt\n"
        "l2_io: mov $0x42, %al; outb %al, $0x80; outb %al, $0x84; hlt\n"
        "l2_read_hole: mov hole+0x123(%rip), %rax; hlt\n"
        "l2_write_ro: movq $1, read_only+8(%rip); hlt\n"
        "l2_ud: ud2\n");
extern char l2_cpuid[], l2_io[], l2_read_hole[], l2_write_ro[], l2_ud[];

static uint64_t vmwrite(uint64_t field, uint64_t value) {
  uint64_t f;
  __asm__ volatile("vmwrite %2, %1\n\tpushfq\n\tpop %0" : "=r"(f) : "r"(field), "r"(value) : "cc", "memory");
  return f & ARITH;
}
static uint64_t vmread(uint64_t field) {
  uint64_t v = 0;
  __asm__ volatile("vmread %1, %0" : "+r"(v) : "r"(field) : "cc", "memory");
  return v;
}
static uint64_t vmx_op(const char* which, uint64_t pa) {
  uint64_t f;
  if (which[0] == 'o') __asm__ volatile("vmxon %1\n\tpushfq\n\tpop %0" : "=r"(f) : "m"(pa) : "cc", "memory");
  else if (which[0] == 'c') __asm__ volatile("vmclear %1\n\tpushfq\n\tpop %0" : "=r"(f) : "m"(pa) : "cc", "memory");
  else __asm__ volatile("vmptrld %1\n\tpushfq\n\tpop %0" : "=r"(f) : "m"(pa) : "cc", "memory");
  return f & ARITH;
}
/* CPUID and MOV to CR exit to L0's emulator; keep them alone in functions of their own. */
static __attribute__((noinline)) uint32_t cpuid1_ecx(void) { return cpuid(1).c; }
static __attribute__((noinline)) void set_cr4(uint64_t v) { write_cr4(v); }
static __attribute__((noinline)) void set_cr0(uint64_t v) { write_cr0(v); }

/* A control value the capability MSR allows: its must-be-one bits, the wanted ones it allows. */
static uint32_t adjust(uint32_t msr, uint32_t want) {
  const uint64_t cap = rdmsr(msr);
  return ((uint32_t)cap | want) & (uint32_t)(cap >> 32);
}

static uint64_t desc_base(uint64_t gdt, uint16_t sel) {
  const uint64_t lo = *(volatile uint64_t*)(gdt + (sel & ~7u));
  const uint64_t hi = *(volatile uint64_t*)(gdt + (sel & ~7u) + 8);
  return ((lo >> 16) & 0xffffff) | (((lo >> 56) & 0xff) << 24) | (hi << 32);
}

static void setup_vmcs(void) {
  struct __attribute__((packed)) { uint16_t limit; uint64_t base; } gdtr, idtr;
  uint16_t tr;
  __asm__ volatile("sgdt %0; sidt %1; str %2" : "=m"(gdtr), "=m"(idtr), "=r"(tr));
  const uint64_t cr0 = read_cr0(), cr3 = read_cr3(), cr4 = read_cr4(), efer = rdmsr(0xc0000080);
  vmwrite(PIN, adjust(0x48d, 0));
  vmwrite(PROC, adjust(0x48e, (1u << 7) | (1u << 24) | (1u << 31)));  /* HLT, unconditional I/O, secondary */
  vmwrite(PROC2, adjust(0x48b, 1u << 1));                              /* enable EPT */
  vmwrite(EXIT_CTLS, adjust(0x48f, 1u << 9));                          /* host address-space size */
  vmwrite(ENTRY_CTLS, adjust(0x490, 1u << 9));                         /* IA-32e mode guest */
  vmwrite(EXC_BITMAP, 0);
  vmwrite(LINK, ~0ull);
  vmwrite(EPTP, (uintptr_t)ept_pml4 | 6 | (3 << 3));
  vmwrite(IO_A, (uintptr_t)io_bitmaps[0]);
  vmwrite(IO_B, (uintptr_t)io_bitmaps[1]);
  /* Host: L1 as it is now. */
  vmwrite(H_CR0, cr0);
  vmwrite(H_CR3, cr3);
  vmwrite(H_CR4, cr4);
  vmwrite(H_EFER, efer);
  vmwrite(H_CS_SEL, SEL_KERNEL_CS);
  vmwrite(H_SS_SEL, SEL_KERNEL_DS);
  vmwrite(H_DS_SEL, 0);
  vmwrite(H_ES_SEL, 0);
  vmwrite(H_FS_SEL, 0);
  vmwrite(H_GS_SEL, 0);
  vmwrite(H_TR_SEL, tr);
  vmwrite(H_FS_BASE, rdmsr(0xc0000100));
  vmwrite(H_GS_BASE, rdmsr(0xc0000101));
  vmwrite(H_TR_BASE, desc_base(gdtr.base, tr));
  vmwrite(H_GDTR_BASE, gdtr.base);
  vmwrite(H_IDTR_BASE, idtr.base);
  /* Guest: a 64-bit L2 on L1's page tables, descriptor tables and TSS. */
  vmwrite(G_CR0, cr0);
  vmwrite(G_CR3, cr3);
  vmwrite(G_CR4, cr4);
  vmwrite(G_EFER, efer);
  vmwrite(G_DR7, 0x400);
  vmwrite(G_RFLAGS, 2);
  vmwrite(G_RSP, (uintptr_t)l2_stack + sizeof(l2_stack));
  for (unsigned r = 0; r < 6; ++r) {
    const int cs = r == 1, fsgs = r >= 4;
    vmwrite(G_ES_SEL + 2 * r, cs ? SEL_KERNEL_CS : fsgs ? 0 : SEL_KERNEL_DS);
    vmwrite(G_ES_BASE + 2 * r, r == 4 ? rdmsr(0xc0000100) : r == 5 ? rdmsr(0xc0000101) : 0);
    vmwrite(G_ES_LIMIT + 2 * r, 0xffffffff);
    vmwrite(G_ES_AR + 2 * r, cs ? 0xa09b : fsgs ? 0x10000 : 0xc093);
  }
  vmwrite(G_LDTR_SEL, 0);
  vmwrite(G_LDTR_AR, 0x10000);
  vmwrite(G_TR_SEL, tr);
  vmwrite(G_TR_BASE, desc_base(gdtr.base, tr));
  vmwrite(G_ES_LIMIT + 14, 0x67);
  vmwrite(G_TR_AR, 0x8b);
  vmwrite(G_GDTR_BASE, gdtr.base);
  vmwrite(G_GDTR_LIMIT, gdtr.limit);
  vmwrite(G_IDTR_BASE, idtr.base);
  vmwrite(G_IDTR_LIMIT, idtr.limit);
  vmwrite(G_INTR, 0);
  vmwrite(G_ACTIVITY, 0);
}

/* Runs L2 from rip until its next exit; returns the exit reason (or ~0 if the entry failed). */
static int launched;
static uint64_t run_l2(const void* rip) {
  vmwrite(G_RIP, (uintptr_t)rip);
  vmwrite(G_RSP, (uintptr_t)l2_stack + sizeof(l2_stack));
  const uint64_t r = vm_enter(launched);
  if (r) return ~0ull;
  launched = 1;
  return vmread(EXIT_REASON);
}

int main(int argc, char** argv) {
  if (!((cpuid1_ecx() >> 5) & 1)) {
    report_skip("VM entry", "CPUID.1:ECX.VMX is clear");
    return report_summary();
  }
  if (!((rdmsr(0x48b) >> 32) & 2)) {
    report_skip("VM entry", "no EPT for L1");
    return report_summary();
  }
  const uint32_t revision = (uint32_t)rdmsr(0x480) & 0x7fffffff;
  *(volatile uint32_t*)regions[0] = revision;
  *(volatile uint32_t*)regions[1] = revision;
  if (!(rdmsr(0x3a) & 1)) wrmsr(0x3a, 5);
  set_cr0(read_cr0() | rdmsr(0x486));
  set_cr4(read_cr4() | rdmsr(0x488));
  check_eq("VMXON", vmx_op("on", (uintptr_t)regions[0]), 0);
  check_eq("VMCLEAR", vmx_op("clear", (uintptr_t)regions[1]), 0);
  check_eq("VMPTRLD", vmx_op("ptrld", (uintptr_t)regions[1]), 0);
  /* EPT12: the first GiB identity-mapped with 2 MiB pages, but for `hole` (absent) and
   * `read_only` (read/execute). */
  ept_pml4[0] = (uintptr_t)ept_pdpt | 7;
  ept_pdpt[0] = (uintptr_t)ept_pd | 7;
  for (uint64_t i = 0; i < 512; ++i) ept_pd[i] = (i << 21) | 7 | (6 << 3) | (1 << 7);
  ept_pd[(uintptr_t)hole >> 21] = 0;
  ept_pd[(uintptr_t)read_only >> 21] &= ~2ull;
  io_bitmaps[0][0x84 / 8] |= 1u << (0x84 % 8);
  setup_vmcs();

  /* Failures before entry: VMRESUME of a clear VMCS; controls; host state. */
  check_eq("VMRESUME of a clear VMCS: VMfailValid", vm_enter(1) & ARITH, FAIL_VALID);
  check_eq("... error 5", vmread(INSN_ERROR), 5);
  const uint64_t pin = vmread(PIN);
  vmwrite(PIN, 0);
  check_eq("VMLAUNCH with invalid pin-based controls: VMfailValid", vm_enter(0) & ARITH, FAIL_VALID);
  check_eq("... error 7", vmread(INSN_ERROR), 7);
  vmwrite(PIN, pin);
  const uint64_t hcr4 = vmread(H_CR4);
  vmwrite(H_CR4, hcr4 & ~(1ull << 5));
  check_eq("VMLAUNCH with a 64-bit host without CR4.PAE: VMfailValid", vm_enter(0) & ARITH, FAIL_VALID);
  check_eq("... error 8", vmread(INSN_ERROR), 8);
  vmwrite(H_CR4, hcr4);
  /* Invalid guest state: a VM exit with bit 31, back at the host RIP. */
  vmwrite(G_RFLAGS, 0);
  check_eq("VMLAUNCH with RFLAGS[1] = 0: entry failure", run_l2(l2_cpuid), 0x80000000u | EXIT_REASON_INVALID_STATE);
  launched = 0;  /* the launch state stays clear */
  vmwrite(G_RFLAGS, 2);

  /* Exits from L2. */
  check_eq("CPUID exits to L1", run_l2(l2_cpuid), EXIT_REASON_CPUID);
  check_eq("... instruction length", vmread(EXIT_INSN_LEN), 2);
  check_eq("VMLAUNCH after launch: VMfailValid", (launched = 0, vm_enter(0) & ARITH), FAIL_VALID);
  check_eq("... error 4", vmread(INSN_ERROR), 4);
  launched = 1;
  check_eq("HLT exits to L1", run_l2(l2_cpuid + 7), EXIT_REASON_HLT);
  /* I/O bitmaps: port 0x80 is not intercepted (L0 takes it), 0x84 is. */
  vmwrite(PROC, adjust(0x48e, (1u << 7) | (1u << 25) | (1u << 31)));
  check_eq("OUT to an intercepted port exits to L1", run_l2(l2_io), EXIT_REASON_IO);
  check_eq("... qualification: port 0x84, OUT imm8, 1 byte", vmread(QUAL), (0x84ull << 16) | (1u << 6));
  check_eq("... the OUT to port 0x80 did not exit", vmread(G_RIP), (uintptr_t)l2_io + 4);
  /* Exception bitmap. */
  vmwrite(EXC_BITMAP, 1u << 6);
  check_eq("#UD in the exception bitmap exits to L1", run_l2(l2_ud), EXIT_REASON_EXCEPTION);
  check_eq("... interruption information: #UD, hardware exception, valid", vmread(EXIT_INTR_INFO), 0x80000306u);
  /* EPT12. */
  check_eq("read of a page EPT12 does not map: EPT violation", run_l2(l2_read_hole), EXIT_REASON_EPT_VIOLATION);
  check_eq("... qualification: data read, linear address valid, translation", vmread(QUAL), 0x181);
  check_eq("... guest-physical address", vmread(GPA), (uintptr_t)hole + 0x123);
  check_eq("write to a read/execute page: EPT violation", run_l2(l2_write_ro), EXIT_REASON_EPT_VIOLATION);
  check_eq("... qualification: write, readable and executable", vmread(QUAL), 0x1aa);
  check_eq("... guest-physical address", vmread(GPA), (uintptr_t)read_only + 8);
  return report_summary();
}
