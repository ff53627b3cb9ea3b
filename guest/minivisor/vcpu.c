/* VMX operation, one L2 VMCS per processor, and the VM exits the minivisor cannot avoid
 * (SDM Vol. 3 Ch. 24-28). */
#include "runtime/libc.h"
#include "runtime/percpu.h"
#include "runtime/x86.h"
#include "minivisor/minivisor.h"

#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_NW (1ull << 29)
#define CR0_CD (1ull << 30)
#define CR4_VMXE (1ull << 13)
#define CR4_OSXSAVE (1ull << 18)
#define CR4_PKE (1ull << 22)
#define CPUID1_ECX_VMX (1u << 5)
#define CPUID1_ECX_XSAVE (1u << 26)
#define CPUID1_ECX_OSXSAVE (1u << 27)
#define CPUID7_ECX_OSPKE (1u << 4)

extern char vmx_exit_entry[];

static void vmw(uint64_t field, uint64_t value) {
  if (!vmwrite_ok(field, value))
    minivisor_stop(MINIVISOR_EXIT_ERROR, "VMWRITE of field %#lx failed (VM-instruction error %lu)", field,
                   vmread(VMCS_VM_INSTRUCTION_ERROR));
}

/* A control value from the wanted bits and a capability MSR (SDM Vol. 3 A.3-A.5): bits 31:0
 * are the allowed 0-settings (1: must be 1), bits 63:32 the allowed 1-settings. */
static uint32_t adjust(const char* what, uint32_t required, uint32_t optional, uint32_t msr) {
  const uint64_t cap = rdmsr(msr);
  const uint32_t must = (uint32_t)cap, may = (uint32_t)(cap >> 32);
  if (required & ~may)
    minivisor_stop(MINIVISOR_EXIT_ERROR, "the processor lacks %s controls %#x (allowed %#x)", what, required & ~may, may);
  return (required | (optional & may) | must) & may;
}

bool vmx_probe(void) {
  if (!(cpuid(1).c & CPUID1_ECX_VMX)) {
    printf("minivisor: the processor has no VMX (CPUID.1:ECX.VMX[5] = 0)\n");
    return false;
  }
  const uint64_t basic = rdmsr(MSR_IA32_VMX_BASIC);
  const bool true_ctls = basic & VMX_BASIC_TRUE_CTLS;
  mv.revision = (uint32_t)basic & 0x7fffffff;
  mv.cr0_fixed0 = rdmsr(MSR_IA32_VMX_CR0_FIXED0);
  mv.cr0_fixed1 = rdmsr(MSR_IA32_VMX_CR0_FIXED1);
  mv.cr4_fixed0 = rdmsr(MSR_IA32_VMX_CR4_FIXED0);
  mv.cr4_fixed1 = rdmsr(MSR_IA32_VMX_CR4_FIXED1);
  /* No interception of external interrupts, NMIs, HLT, I/O or MSRs: the bitmaps are zero. */
  mv.pin = adjust("pin-based", 0, 0, true_ctls ? MSR_IA32_VMX_TRUE_PINBASED_CTLS : MSR_IA32_VMX_PINBASED_CTLS);
  mv.proc = adjust("processor-based", CPU_BASED_USE_IO_BITMAPS | CPU_BASED_USE_MSR_BITMAPS | CPU_BASED_ACTIVATE_SECONDARY,
                   0, true_ctls ? MSR_IA32_VMX_TRUE_PROCBASED_CTLS : MSR_IA32_VMX_PROCBASED_CTLS);
  /* Instructions L2 may use only when their enable is set (else #UD): as the CPU has them. */
  uint32_t optional2 = 0;
  if (cpuid(0x80000001).d & (1u << 27)) optional2 |= SECONDARY_ENABLE_RDTSCP;
  if (cpuid_count(7, 0).b & (1u << 10)) optional2 |= SECONDARY_ENABLE_INVPCID;
  if (cpuid(0).a >= 0xd && (cpuid_count(0xd, 1).a & (1u << 3))) optional2 |= SECONDARY_ENABLE_XSAVES;
  mv.proc2 = adjust("secondary processor-based", SECONDARY_ENABLE_EPT | SECONDARY_UNRESTRICTED_GUEST, optional2,
                    MSR_IA32_VMX_PROCBASED_CTLS2);
  mv.exit = adjust("VM-exit", EXIT_HOST_ADDR_SPACE_SIZE | EXIT_SAVE_IA32_EFER | EXIT_LOAD_IA32_EFER,
                   EXIT_SAVE_IA32_PAT | EXIT_LOAD_IA32_PAT, true_ctls ? MSR_IA32_VMX_TRUE_EXIT_CTLS : MSR_IA32_VMX_EXIT_CTLS);
  mv.entry = adjust("VM-entry", ENTRY_LOAD_IA32_EFER, ENTRY_LOAD_IA32_PAT,
                    true_ctls ? MSR_IA32_VMX_TRUE_ENTRY_CTLS : MSR_IA32_VMX_ENTRY_CTLS) & ~ENTRY_IA32E_MODE;
  const uint64_t ept = rdmsr(MSR_IA32_VMX_EPT_VPID_CAP);
  if (!(ept & EPT_CAP_WALK_4) || !(ept & EPT_CAP_2M)) {
    printf("minivisor: EPT lacks 4-level walks or 2 MiB pages (IA32_VMX_EPT_VPID_CAP %#lx)\n", ept);
    return false;
  }
  if (!(rdmsr(MSR_IA32_VMX_MISC) & VMX_MISC_WAIT_FOR_SIPI)) {
    printf("minivisor: no wait-for-SIPI activity state (IA32_VMX_MISC): L2's processors cannot start\n");
    return false;
  }
  printf("minivisor: VMX revision %#x, controls pin %#x proc %#x proc2 %#x exit %#x entry %#x\n", mv.revision, mv.pin,
         mv.proc, mv.proc2, mv.exit, mv.entry);
  return true;
}

void vmx_enable(struct vcpu* v) {
  /* IA32_FEATURE_CONTROL (SDM Vol. 3 24.7): VMXON needs it locked with VMXON outside SMX. */
  uint64_t fc = rdmsr(MSR_IA32_FEATURE_CONTROL);
  if (!(fc & FEATURE_CONTROL_LOCKED)) {
    fc |= FEATURE_CONTROL_LOCKED | FEATURE_CONTROL_VMXON_OUTSIDE_SMX;
    wrmsr(MSR_IA32_FEATURE_CONTROL, fc);
  } else if (!(fc & FEATURE_CONTROL_VMXON_OUTSIDE_SMX)) {
    minivisor_stop(MINIVISOR_EXIT_ERROR, "cpu %u: IA32_FEATURE_CONTROL is locked with VMX off (%#lx)", v->index, fc);
  }
  /* CR0 and CR4 as VMX operation requires (SDM Vol. 3 24.8, A.7, A.8); OSXSAVE so that L2's
   * XSETBV can be carried out here. */
  write_cr0((read_cr0() | mv.cr0_fixed0) & mv.cr0_fixed1);
  uint64_t cr4 = read_cr4() | mv.cr4_fixed0;
  if (cpuid(1).c & CPUID1_ECX_XSAVE) cr4 |= CR4_OSXSAVE;
  write_cr4(cr4 & mv.cr4_fixed1);
  *(volatile uint32_t*)(uintptr_t)v->vmxon_region = mv.revision;
  if (!vmxon(v->vmxon_region))
    minivisor_stop(MINIVISOR_EXIT_ERROR, "cpu %u: VMXON failed (rflags %#lx)", v->index, read_rflags());
}

/* L2's CR0 and CR4: the bits VMX fixes are owned by the minivisor (guest/host mask) and read by
 * L2 from the shadow, which holds what L2 last wrote. Unrestricted guest frees PE and PG. */
static uint64_t cr0_mask(void) { return ((mv.cr0_fixed0 & ~(CR0_PE | CR0_PG)) | ~mv.cr0_fixed1) & 0xffffffffull; }
static uint64_t cr4_mask(void) { return (mv.cr4_fixed0 | ~mv.cr4_fixed1) & 0xffffffffull; }
static uint64_t real_cr0(uint64_t shadow) { return (shadow | (mv.cr0_fixed0 & ~(CR0_PE | CR0_PG))) & mv.cr0_fixed1; }
static uint64_t real_cr4(uint64_t shadow) { return (shadow | mv.cr4_fixed0) & mv.cr4_fixed1; }

static void set_segment(unsigned seg, uint16_t sel, uint64_t base, uint32_t limit, uint32_t ar) {
  /* ES, CS, SS, DS, FS, GS, LDTR, TR: consecutive encodings (SDM Vol. 3 Appendix B). */
  vmw(VMCS_GUEST_ES_SELECTOR + 2 * seg, sel);
  vmw(VMCS_GUEST_ES_BASE + 2 * seg, base);
  vmw(VMCS_GUEST_ES_LIMIT + 2 * seg, limit);
  vmw(VMCS_GUEST_ES_AR_BYTES + 2 * seg, ar);
}
enum { SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS, SEG_LDTR, SEG_TR };

static void set_cr0_cr4(uint64_t cr0_shadow, uint64_t cr4_shadow) {
  vmw(VMCS_CR0_READ_SHADOW, cr0_shadow);
  vmw(VMCS_GUEST_CR0, real_cr0(cr0_shadow));
  vmw(VMCS_CR4_READ_SHADOW, cr4_shadow);
  vmw(VMCS_GUEST_CR4, real_cr4(cr4_shadow));
}

static void set_common_state(void) {
  vmw(VMCS_GUEST_DR7, 0x400);
  vmw(VMCS_GUEST_RFLAGS, 0x2);
  vmw(VMCS_GUEST_IA32_DEBUGCTL, 0);
  vmw(VMCS_GUEST_IA32_PAT, 0x0007040600070406ull);
  vmw(VMCS_GUEST_SYSENTER_CS, 0);
  vmw(VMCS_GUEST_SYSENTER_ESP, 0);
  vmw(VMCS_GUEST_SYSENTER_EIP, 0);
  vmw(VMCS_GUEST_INTERRUPTIBILITY_INFO, 0);
  vmw(VMCS_GUEST_PENDING_DBG_EXCEPTIONS, 0);
  vmw(VMCS_VM_ENTRY_INTR_INFO_FIELD, 0);
}

/* The multiboot state (what nestvm's boot_protected_mode/boot_long_mode give L1). */
static void set_boot_state(struct vcpu* v) {
  const struct mvl_boot* b = &mv.boot;
  const bool lm = b->long_mode;
  set_common_state();
  set_cr0_cr4(CR0_PE | CR0_ET | (lm ? CR0_PG : 0), lm ? CR4_PAE : 0);
  vmw(VMCS_GUEST_CR3, lm ? MVL_PML4 : 0);
  vmw(VMCS_GUEST_IA32_EFER, lm ? (EFER_LME | EFER_LMA) : 0);
  vmw(VMCS_VM_ENTRY_CONTROLS, mv.entry | (lm ? ENTRY_IA32E_MODE : 0));
  set_segment(SEG_CS, lm ? MVL_SEL_CODE64 : MVL_SEL_CODE32, 0, 0xffffffff, lm ? MVL_AR_CODE64 : MVL_AR_CODE32);
  for (unsigned s = SEG_ES; s <= SEG_GS; ++s)
    if (s != SEG_CS) set_segment(s, MVL_SEL_DATA, 0, 0xffffffff, MVL_AR_DATA);
  set_segment(SEG_LDTR, 0, 0, 0, 0x10000); /* unusable */
  set_segment(SEG_TR, MVL_SEL_TSS, MVL_TSS, MVL_TSS_LIMIT, MVL_AR_TSS_BUSY);
  vmw(VMCS_GUEST_GDTR_BASE, MVL_GDT);
  vmw(VMCS_GUEST_GDTR_LIMIT, MVL_GDT_LIMIT);
  vmw(VMCS_GUEST_IDTR_BASE, 0);
  vmw(VMCS_GUEST_IDTR_LIMIT, 0);
  vmw(VMCS_GUEST_RIP, b->entry);
  vmw(VMCS_GUEST_RSP, MVL_STACK_TOP);
  memset(&v->regs, 0, sizeof(v->regs));
  v->regs.rax = b->eax;
  v->regs.rbx = b->ebx;
  if (lm) v->regs.rdi = b->ebx;
  /* The APs wait for INIT-SIPI-SIPI from L2's bootstrap processor (SDM Vol. 3 9.4.4.1). */
  vmw(VMCS_GUEST_ACTIVITY_STATE, v->bsp ? ACTIVITY_ACTIVE : ACTIVITY_WAIT_FOR_SIPI);
}

/* The state INIT leaves and a start-up IPI completes (SDM Vol. 3 Table 10-1): real mode at
 * vector:0000 with CS = vector << 8. */
static void set_sipi_state(struct vcpu* v, uint8_t vector, unsigned activity) {
  set_common_state();
  set_cr0_cr4(CR0_CD | CR0_NW | CR0_ET, 0);
  vmw(VMCS_GUEST_CR3, 0);
  vmw(VMCS_GUEST_IA32_EFER, 0);
  vmw(VMCS_VM_ENTRY_CONTROLS, mv.entry);
  set_segment(SEG_CS, (uint16_t)(vector << 8), (uint64_t)vector << 12, 0xffff, 0x9b);
  for (unsigned s = SEG_ES; s <= SEG_GS; ++s)
    if (s != SEG_CS) set_segment(s, 0, 0, 0xffff, 0x93);
  set_segment(SEG_LDTR, 0, 0, 0xffff, 0x82);
  set_segment(SEG_TR, 0, 0, 0xffff, 0x8b);
  vmw(VMCS_GUEST_GDTR_BASE, 0);
  vmw(VMCS_GUEST_GDTR_LIMIT, 0xffff);
  vmw(VMCS_GUEST_IDTR_BASE, 0);
  vmw(VMCS_GUEST_IDTR_LIMIT, 0xffff);
  vmw(VMCS_GUEST_RIP, 0);
  vmw(VMCS_GUEST_RSP, 0);
  memset(&v->regs, 0, sizeof(v->regs));
  v->regs.rdx = cpuid(1).a; /* the processor signature */
  vmw(VMCS_GUEST_ACTIVITY_STATE, activity);
}

static void set_host_state(void) {
  struct {
    uint16_t limit;
    uint64_t base;
  } __attribute__((packed)) gdtr, idtr;
  __asm__ volatile("sgdt %0; sidt %1" : "=m"(gdtr), "=m"(idtr));
  uint16_t tr;
  __asm__ volatile("str %0" : "=r"(tr));
  vmw(VMCS_HOST_CR0, read_cr0());
  vmw(VMCS_HOST_CR3, read_cr3());
  vmw(VMCS_HOST_CR4, read_cr4());
  vmw(VMCS_HOST_CS_SELECTOR, SEL_KERNEL_CS);
  vmw(VMCS_HOST_SS_SELECTOR, SEL_KERNEL_DS);
  vmw(VMCS_HOST_DS_SELECTOR, 0);
  vmw(VMCS_HOST_ES_SELECTOR, 0);
  vmw(VMCS_HOST_FS_SELECTOR, 0);
  vmw(VMCS_HOST_GS_SELECTOR, 0);
  vmw(VMCS_HOST_TR_SELECTOR, tr);
  vmw(VMCS_HOST_FS_BASE, rdmsr(MSR_FS_BASE));
  vmw(VMCS_HOST_GS_BASE, rdmsr(MSR_GS_BASE));
  vmw(VMCS_HOST_TR_BASE, (uint64_t)(uintptr_t)&this_cpu()->tss);
  vmw(VMCS_HOST_GDTR_BASE, gdtr.base);
  vmw(VMCS_HOST_IDTR_BASE, idtr.base);
  vmw(VMCS_HOST_IA32_SYSENTER_CS, 0);
  vmw(VMCS_HOST_IA32_SYSENTER_ESP, 0);
  vmw(VMCS_HOST_IA32_SYSENTER_EIP, 0);
  if (mv.exit & EXIT_LOAD_IA32_PAT) vmw(VMCS_HOST_IA32_PAT, rdmsr(MSR_IA32_PAT));
  vmw(VMCS_HOST_IA32_EFER, rdmsr(MSR_EFER));
  vmw(VMCS_HOST_RIP, (uint64_t)(uintptr_t)vmx_exit_entry);
}

static void setup_vmcs(struct vcpu* v) {
  *(volatile uint32_t*)(uintptr_t)v->vmcs = mv.revision;
  if (!vmclear(v->vmcs) || !vmptrld(v->vmcs))
    minivisor_stop(MINIVISOR_EXIT_ERROR, "cpu %u: VMCLEAR/VMPTRLD of the L2 VMCS failed", v->index);
  vmw(VMCS_PIN_BASED_VM_EXEC_CONTROL, mv.pin);
  vmw(VMCS_CPU_BASED_VM_EXEC_CONTROL, mv.proc);
  vmw(VMCS_SECONDARY_VM_EXEC_CONTROL, mv.proc2);
  vmw(VMCS_VM_EXIT_CONTROLS, mv.exit);
  vmw(VMCS_VM_ENTRY_CONTROLS, mv.entry);
  vmw(VMCS_EXCEPTION_BITMAP, 0);
  vmw(VMCS_PAGE_FAULT_ERROR_CODE_MASK, 0);
  vmw(VMCS_PAGE_FAULT_ERROR_CODE_MATCH, 0);
  vmw(VMCS_CR3_TARGET_COUNT, 0);
  vmw(VMCS_VM_EXIT_MSR_STORE_COUNT, 0);
  vmw(VMCS_VM_EXIT_MSR_LOAD_COUNT, 0);
  vmw(VMCS_VM_ENTRY_MSR_LOAD_COUNT, 0);
  vmw(VMCS_IO_BITMAP_A, mv.io_bitmap_a);
  vmw(VMCS_IO_BITMAP_B, mv.io_bitmap_b);
  vmw(VMCS_MSR_BITMAP, mv.msr_bitmap);
  vmw(VMCS_EPT_POINTER, mv.eptp);
  vmw(VMCS_VMCS_LINK_POINTER, ~0ull);
  vmw(VMCS_TSC_OFFSET, 0);
  vmw(VMCS_CR0_GUEST_HOST_MASK, cr0_mask());
  vmw(VMCS_CR4_GUEST_HOST_MASK, cr4_mask());
  set_host_state();
  set_boot_state(v);
}

/* Exits. */

static uint64_t* gpr(struct vcpu* v, unsigned n) {
  /* Register numbers as the exit qualification gives them: RAX, RCX, RDX, RBX, RSP, RBP, ... */
  static uint64_t* const none = 0;
  switch (n) {
    case 0: return &v->regs.rax;
    case 1: return &v->regs.rcx;
    case 2: return &v->regs.rdx;
    case 3: return &v->regs.rbx;
    case 5: return &v->regs.rbp;
    case 6: return &v->regs.rsi;
    case 7: return &v->regs.rdi;
    case 8: return &v->regs.r8;
    case 9: return &v->regs.r9;
    case 10: return &v->regs.r10;
    case 11: return &v->regs.r11;
    case 12: return &v->regs.r12;
    case 13: return &v->regs.r13;
    case 14: return &v->regs.r14;
    case 15: return &v->regs.r15;
  }
  return none; /* RSP: in the VMCS */
}
static uint64_t read_gpr(struct vcpu* v, unsigned n) { return n == 4 ? vmread(VMCS_GUEST_RSP) : *gpr(v, n); }
static void write_gpr(struct vcpu* v, unsigned n, uint64_t value) {
  if (n == 4) vmw(VMCS_GUEST_RSP, value);
  else *gpr(v, n) = value;
}

/* Completes an emulated instruction: RIP past it, and no blocking by STI or MOV SS left over
 * (SDM Vol. 3 25.4.2). */
static void skip_instruction(void) {
  vmw(VMCS_GUEST_RIP, vmread(VMCS_GUEST_RIP) + vmread(VMCS_VM_EXIT_INSTRUCTION_LEN));
  vmw(VMCS_GUEST_INTERRUPTIBILITY_INFO, vmread(VMCS_GUEST_INTERRUPTIBILITY_INFO) & ~3ull);
}

static void inject_exception(unsigned vector, bool has_error_code, uint32_t error_code) {
  uint32_t info = INTR_INFO_VALID | INTR_TYPE_HARD_EXCEPTION | vector;
  /* No error code is delivered in real mode (SDM Vol. 3 27.2.1.3). */
  if (has_error_code && (vmread(VMCS_GUEST_CR0) & CR0_PE)) {
    info |= INTR_INFO_DELIVER_CODE;
    vmw(VMCS_VM_ENTRY_EXCEPTION_ERROR_CODE, error_code);
  }
  vmw(VMCS_VM_ENTRY_INTR_INFO_FIELD, info);
}
static void inject_ud(void) { inject_exception(6, false, 0); }
static void inject_gp(void) { inject_exception(13, true, 0); }

static void handle_cpuid(struct vcpu* v) {
  const uint32_t leaf = (uint32_t)v->regs.rax, sub = (uint32_t)v->regs.rcx;
  struct cpuid_regs r = cpuid_count(leaf, sub);
  const uint64_t cr4 = vmread(VMCS_GUEST_CR4);
  if (leaf == 1) {
    /* The minivisor does not virtualize VMX: L2 does not see it. OSXSAVE reflects L2's CR4
     * (SDM Vol. 2 CPUID), not the minivisor's. */
    r.c &= ~(CPUID1_ECX_VMX | CPUID1_ECX_OSXSAVE);
    if (cr4 & CR4_OSXSAVE) r.c |= CPUID1_ECX_OSXSAVE;
  } else if (leaf == 7 && sub == 0) {
    r.c &= ~CPUID7_ECX_OSPKE;
    if (cr4 & CR4_PKE) r.c |= CPUID7_ECX_OSPKE;
  }
  v->regs.rax = r.a;
  v->regs.rbx = r.b;
  v->regs.rcx = r.c;
  v->regs.rdx = r.d;
  skip_instruction();
}

/* XSETBV (SDM Vol. 2): #GP for any XCR but 0, for x87 state off, AVX without SSE, an
 * incomplete AVX-512 set, or a component the processor does not support. */
static void handle_xsetbv(struct vcpu* v) {
  const uint32_t xcr = (uint32_t)v->regs.rcx;
  const uint64_t value = (uint32_t)v->regs.rax | ((uint64_t)(uint32_t)v->regs.rdx << 32);
  const struct cpuid_regs d = cpuid_count(0xd, 0);
  const uint64_t supported = d.a | ((uint64_t)d.d << 32);
  const uint64_t avx512 = 0xe0;
  if (xcr != 0 || !(value & 1) || (value & ~supported) || ((value & 4) && !(value & 2)) ||
      ((value & avx512) && (value & avx512) != avx512) || ((value & avx512) && !(value & 4))) {
    inject_gp();
    return;
  }
  __asm__ volatile("xsetbv" : : "c"(xcr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)) : "memory");
  skip_instruction();
}

/* With EPT, PAE paging takes its PDPTEs from the VMCS (SDM Vol. 3 27.3.2.4): after an emulated
 * write that leaves PAE paging on, load them from L2's CR3 (L2 memory is identity-mapped). */
static void load_pdptrs(void) {
  const uint64_t cr0 = vmread(VMCS_GUEST_CR0), cr4 = vmread(VMCS_GUEST_CR4);
  if (!(cr0 & CR0_PG) || !(cr4 & CR4_PAE) || (vmread(VMCS_GUEST_IA32_EFER) & EFER_LMA)) return;
  const uint64_t* pdpt = (const uint64_t*)(uintptr_t)(vmread(VMCS_GUEST_CR3) & 0xffffffe0ull);
  for (unsigned i = 0; i < 4; ++i) vmw(VMCS_GUEST_PDPTR0 + 2 * i, pdpt[i]);
}

/* MOV to CR0 (and LMSW) when L2 changes a bit the minivisor owns (SDM Vol. 2 MOV CR). */
static bool emulate_cr0(uint64_t value) {
  const uint64_t old = vmread(VMCS_CR0_READ_SHADOW);
  uint64_t efer = vmread(VMCS_GUEST_IA32_EFER);
  if ((value >> 32) || ((value & CR0_PG) && !(value & CR0_PE)) || ((value & CR0_NW) && !(value & CR0_CD))) return false;
  if ((value & CR0_PG) && !(old & CR0_PG) && (efer & EFER_LME)) {
    if (!(vmread(VMCS_CR4_READ_SHADOW) & CR4_PAE)) return false;
    efer |= EFER_LMA; /* IA-32e mode activates (SDM Vol. 3 10.8.5) */
  } else if (!(value & CR0_PG) && (efer & EFER_LMA)) {
    efer &= ~EFER_LMA;
  }
  vmw(VMCS_GUEST_IA32_EFER, efer);
  const uint32_t entry = (uint32_t)vmread(VMCS_VM_ENTRY_CONTROLS) & ~ENTRY_IA32E_MODE;
  vmw(VMCS_VM_ENTRY_CONTROLS, entry | ((efer & EFER_LMA) ? ENTRY_IA32E_MODE : 0));
  vmw(VMCS_CR0_READ_SHADOW, value);
  vmw(VMCS_GUEST_CR0, real_cr0(value));
  return true;
}

static bool emulate_cr4(uint64_t value) {
  /* VMXE: VMX is hidden from L2, so the bit is reserved for it; so is anything the processor lacks. */
  if ((value & CR4_VMXE) || (value & ~(mv.cr4_fixed1 & 0xffffffffull))) return false;
  if (!(value & CR4_PAE) && (vmread(VMCS_GUEST_IA32_EFER) & EFER_LMA)) return false;
  vmw(VMCS_CR4_READ_SHADOW, value);
  vmw(VMCS_GUEST_CR4, real_cr4(value));
  return true;
}

/* Control-register accesses (exit qualification: SDM Vol. 3 Table 28-3). */
static void handle_cr_access(struct vcpu* v, uint64_t q) {
  const unsigned cr = q & 0xf, type = (q >> 4) & 3, reg = (q >> 8) & 0xf;
  bool ok = true;
  if (type == 0) { /* MOV to CR */
    const uint64_t value = read_gpr(v, reg);
    if (cr == 0) ok = emulate_cr0(value);
    else if (cr == 4) ok = emulate_cr4(value);
    else if (cr == 3) vmw(VMCS_GUEST_CR3, value);
    else minivisor_stop(MINIVISOR_EXIT_ERROR, "cpu %u: unexpected MOV to CR%u exit", v->index, cr);
  } else if (type == 1) { /* MOV from CR */
    if (cr != 3) minivisor_stop(MINIVISOR_EXIT_ERROR, "cpu %u: unexpected MOV from CR%u exit", v->index, cr);
    write_gpr(v, reg, vmread(VMCS_GUEST_CR3));
  } else if (type == 3) { /* LMSW: bits 3:0 of CR0, PE never cleared */
    const uint64_t src = (q >> 16) & 0xf, old = vmread(VMCS_CR0_READ_SHADOW);
    ok = emulate_cr0((old & ~0xeull) | src | (old & CR0_PE));
  } else { /* CLTS: TS is not owned by the minivisor */
    minivisor_stop(MINIVISOR_EXIT_ERROR, "cpu %u: unexpected CLTS exit", v->index);
  }
  if (!ok) {
    inject_gp();
    return;
  }
  load_pdptrs();
  skip_instruction();
}

static const char* exit_name(unsigned reason) {
  switch (reason) {
    case EXIT_REASON_EXCEPTION_NMI: return "exception or NMI";
    case EXIT_REASON_EXTERNAL_INTERRUPT: return "external interrupt";
    case EXIT_REASON_TRIPLE_FAULT: return "triple fault";
    case EXIT_REASON_TASK_SWITCH: return "task switch";
    case EXIT_REASON_HLT: return "HLT";
    case EXIT_REASON_INVALID_STATE: return "invalid guest state";
    case EXIT_REASON_EPT_VIOLATION: return "EPT violation";
    case EXIT_REASON_EPT_MISCONFIG: return "EPT misconfiguration";
  }
  return "unexpected";
}

static void report_exit(struct vcpu* v, uint32_t reason, uint32_t code, const char* what) __attribute__((noreturn));
static void report_exit(struct vcpu* v, uint32_t reason, uint32_t code, const char* what) {
  minivisor_stop(code, "cpu %u: L2 %s: exit reason %u%s (%s), qualification %#lx, guest RIP %#lx, guest-physical %#lx, "
                 "interruption info %#lx, IDT-vectoring info %#lx",
                 v->index, what, reason & 0xffff, (reason & EXIT_REASON_ENTRY_FAILED) ? " (VM-entry failure)" : "",
                 exit_name(reason & 0xffff), vmread(VMCS_EXIT_QUALIFICATION), vmread(VMCS_GUEST_RIP),
                 vmread(VMCS_GUEST_PHYSICAL_ADDRESS), vmread(VMCS_VM_EXIT_INTR_INFO),
                 vmread(VMCS_IDT_VECTORING_INFO_FIELD));
}

void vcpu_run(struct vcpu* v) {
  cli();
  vmx_enable(v);
  setup_vmcs(v);
  __atomic_store_n(&v->ready, true, __ATOMIC_RELEASE);
  for (;;) {
    const int failed = vmx_run(&v->regs, v->launched);
    if (failed)
      minivisor_stop(MINIVISOR_EXIT_ERROR, "cpu %u: %s failed: %s (VM-instruction error %lu)", v->index,
                     v->launched ? "VMRESUME" : "VMLAUNCH", failed == 1 ? "VMfailInvalid" : "VMfailValid",
                     failed == 2 ? vmread(VMCS_VM_INSTRUCTION_ERROR) : 0);
    v->launched = true;
    const uint32_t reason = (uint32_t)vmread(VMCS_VM_EXIT_REASON);
    if (reason & EXIT_REASON_ENTRY_FAILED) report_exit(v, reason, MINIVISOR_EXIT_ERROR, "could not be entered");
    const uint64_t q = vmread(VMCS_EXIT_QUALIFICATION);
    switch (reason & 0xffff) {
      case EXIT_REASON_CPUID: handle_cpuid(v); break;
      case EXIT_REASON_XSETBV: handle_xsetbv(v); break;
      case EXIT_REASON_CR_ACCESS: handle_cr_access(v, q); break;
      case EXIT_REASON_INVD: skip_instruction(); break; /* caches are coherent: nothing to drop */
      case EXIT_REASON_INIT:
        /* INIT always exits in VMX non-root operation (SDM Vol. 3 26.2): an AP goes to
         * wait-for-SIPI, as it would outside VMX; the BSP would restart at the reset vector,
         * where a multiboot machine has no firmware. */
        if (v->bsp) report_exit(v, reason, MINIVISOR_EXIT_ERROR, "INIT of the bootstrap processor");
        set_sipi_state(v, 0, ACTIVITY_WAIT_FOR_SIPI);
        break;
      case EXIT_REASON_SIPI: /* in wait-for-SIPI: the vector is in the qualification (Table 28-1) */
        set_sipi_state(v, (uint8_t)q, ACTIVITY_ACTIVE);
        break;
      case EXIT_REASON_VMCALL: case EXIT_REASON_VMCLEAR: case EXIT_REASON_VMLAUNCH: case EXIT_REASON_VMPTRLD:
      case EXIT_REASON_VMPTRST: case EXIT_REASON_VMREAD: case EXIT_REASON_VMRESUME: case EXIT_REASON_VMWRITE:
      case EXIT_REASON_VMOFF: case EXIT_REASON_VMON: case EXIT_REASON_INVEPT: case EXIT_REASON_INVVPID:
        /* L2 has no VMX (CPUID hides it): the instructions are undefined for it. */
        inject_ud();
        break;
      case EXIT_REASON_TRIPLE_FAULT:
        report_exit(v, reason, MINIVISOR_EXIT_L2_TRIPLE_FAULT, "triple fault (shutdown)");
      case EXIT_REASON_EPT_VIOLATION:
      case EXIT_REASON_EPT_MISCONFIG:
        report_exit(v, reason, MINIVISOR_EXIT_ERROR, "access outside its memory");
      default:
        report_exit(v, reason, MINIVISOR_EXIT_ERROR, "exit the minivisor does not handle");
    }
  }
}
