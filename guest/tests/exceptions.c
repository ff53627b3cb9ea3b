/* Exceptions on the full path (SDM Vol. 3 chapter 6): the vector, the error code, and the
 * saved RIP (faults at the instruction, traps after it) of #DE, #DB, #BP, #UD, #NM, #NP, #SS and
 * #GP from ring 0 and ring 3; a gate with an IST runs on its own stack; and a fault while
 * delivering a fault becomes #DF, delivered on IST1.
 * Arguments, for checks QEMU 7.2's TCG gets wrong (tests/guest/CMakeLists.txt runs them under
 * nestvm only):
 *   ss=1: #SS(0) for a non-canonical stack reference (SDM Vol. 3 6.15 "Interrupt 12"; TCG
 *         raises #GP);
 *   idt_index=1: the error code of a fault on an IDT gate holds the vector in bits 15:3 (SDM
 *         6.13; Linux reports "error:402" for INT 0x80 to a DPL 0 gate; TCG puts vector * 16
 *         there in long mode).
 * Without idt_index=1 those error codes are checked for the IDT and EXT bits only. */
#include "runtime/desc.h"
#include "runtime/libc.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/traps.h"
#include "runtime/x86.h"

/* Each snippet is a cpu_fn; <name>_at labels the instruction that raises, <name>_after the one
 * after it. */
#define SNIPPET(name, before, insn, after) \
  "  .globl " #name "\n" #name ":\n" before "\n  .globl " #name "_at\n" #name "_at:\n  " insn \
  "\n  .globl " #name "_after\n" #name "_after:\n" after "\n  ret\n"
__asm__(".text\n"
        SNIPPET(div_zero, "  xor %ecx, %ecx\n  mov $1, %eax\n  xor %edx, %edx", "div %ecx", "")
        SNIPPET(idiv_overflow, "  movabs $0x8000000000000000, %rax\n  cqo\n  mov $-1, %rcx", "idiv %rcx", "")
        SNIPPET(ud2_insn, "", "ud2", "")
        SNIPPET(push_es, "", ".byte 0x06", "")
        SNIPPET(into_insn, "", ".byte 0xce", "")
        SNIPPET(int3_insn, "", "int3", "")
        SNIPPET(int_3_insn, "", "int $3", "")
        SNIPPET(noncanonical_load, "  movabs $0x8000000000000000, %rax", "mov (%rax), %rax", "")
        SNIPPET(bad_selector, "  mov $0xfff8, %eax", "mov %eax, %ds", "")
        SNIPPET(noncanonical_stack, "  push %rbp\n  movabs $0x8000000000000000, %rbp", "mov (%rbp), %rax",
                "  pop %rbp")
        SNIPPET(int_85, "", "int $0x85", "")
        SNIPPET(int_80, "", "int $0x80", "")
        SNIPPET(hlt_insn, "", "hlt", "")
        SNIPPET(cli_insn, "", "cli", "")
        SNIPPET(in_insn, "", "inb $0x80, %al", "")
        SNIPPET(mov_cr3, "", "mov %cr3, %rax", "")
        SNIPPET(fnop_insn, "", "fnop", "")
        SNIPPET(single_step, "  pushfq\n  orq $0x100, (%rsp)\n  popfq", "nop", "  nop")
        SNIPPET(int_86, "", "int $0x86", "")
        SNIPPET(stack_overflow, "  movabs $0x200000000000, %rsp", "ud2", ""));

#define DECLARE(name) extern void name(void*); extern char name##_at[], name##_after[];
DECLARE(div_zero) DECLARE(idiv_overflow) DECLARE(ud2_insn) DECLARE(push_es) DECLARE(into_insn)
DECLARE(int3_insn) DECLARE(int_3_insn) DECLARE(noncanonical_load) DECLARE(bad_selector)
DECLARE(noncanonical_stack) DECLARE(int_85) DECLARE(int_80) DECLARE(hlt_insn) DECLARE(cli_insn)
DECLARE(in_insn) DECLARE(mov_cr3) DECLARE(fnop_insn) DECLARE(single_step) DECLARE(int_86)
DECLARE(stack_overflow)

static bool strict_idt_index;

/* Runs fn and checks vector, error code and saved RIP. */
static void expect(const char* what, cpu_fn fn, bool user, int vector, uint64_t error, const char* rip) {
  struct fault_info fi;
  int v = user ? trap_run_user(fn, NULL, &fi) : trap_run(fn, NULL, &fi);
  char name[128];
  snprintf(name, sizeof(name), "%s: %s", what, exception_name((unsigned)vector));
  if (!report_why(v == vector, name, "got %s (vector %d)", v < 0 ? "no exception" : exception_name((unsigned)v), v))
    return;
  snprintf(name, sizeof(name), "%s: error code %#lx", what, error);
  if ((error & 2) && !strict_idt_index) {
    snprintf(name, sizeof(name), "%s: error code has IDT set, EXT clear", what);
    check_eq(name, fi.error_code & 3, error & 3);
  } else {
    check_eq(name, fi.error_code, error);
  }
  if (rip) {
    snprintf(name, sizeof(name), "%s: saved RIP", what);
    check_eq(name, fi.rip, (uint64_t)rip);
  }
  snprintf(name, sizeof(name), "%s: saved CS has RPL %d", what, user ? 3 : 0);
  check_eq(name, fi.cs & 3, user ? 3 : 0);
}

static volatile uint64_t ist_frame;
static void int86_handler(struct trap_frame* f) { ist_frame = (uint64_t)f; }

int main(int argc, char** argv) {
  strict_idt_index = arg_u64("idt_index", 0);
  expect("DIV by zero", div_zero, false, DE_VECTOR, 0, div_zero_at);
  expect("IDIV overflow", idiv_overflow, false, DE_VECTOR, 0, idiv_overflow_at);
  expect("UD2", ud2_insn, false, UD_VECTOR, 0, ud2_insn_at);
  expect("PUSH ES in 64-bit mode", push_es, false, UD_VECTOR, 0, push_es_at);
  expect("INTO in 64-bit mode", into_insn, false, UD_VECTOR, 0, into_insn_at);
  expect("INT3 (trap: RIP after it)", int3_insn, false, BP_VECTOR, 0, int3_insn_after);
  expect("INT 3 (CD 03)", int_3_insn, false, BP_VECTOR, 0, int_3_insn_after);
  expect("INT3 from ring 3 (gate DPL 3)", int3_insn, true, BP_VECTOR, 0, int3_insn_after);
  expect("non-canonical load", noncanonical_load, false, GP_VECTOR, 0, noncanonical_load_at);
  expect("MOV DS beyond the GDT limit", bad_selector, false, GP_VECTOR, 0xfff8, bad_selector_at);
  if (arg_u64("ss", 0))
    expect("non-canonical reference through RBP", noncanonical_stack, false, SS_VECTOR, 0, noncanonical_stack_at);

  idt_set_present(0x85, false);
  /* SDM 6.13: IDT bit (1) set, EXT clear, index = vector. */
  expect("INT to a not-present gate", int_85, false, NP_VECTOR, (0x85 << 3) | 2, int_85_at);
  idt_set_present(0x85, true);
  expect("INT from ring 3 to a DPL 0 gate", int_80, true, GP_VECTOR, (0x80 << 3) | 2, int_80_at);
  expect("HLT at ring 3", hlt_insn, true, GP_VECTOR, 0, hlt_insn_at);
  expect("CLI at ring 3 with IOPL 0", cli_insn, true, GP_VECTOR, 0, cli_insn_at);
  expect("IN at ring 3 with IOPL 0 and no I/O bitmap", in_insn, true, GP_VECTOR, 0, in_insn_at);
  expect("MOV from CR3 at ring 3", mov_cr3, true, GP_VECTOR, 0, mov_cr3_at);

  write_cr0(read_cr0() | CR0_TS);
  expect("x87 instruction with CR0.TS", fnop_insn, false, NM_VECTOR, 0, fnop_insn_at);
  write_cr0(read_cr0() & ~CR0_TS);
  report(trap_run(fnop_insn, NULL, NULL) == -1, "the same instruction runs once CR0.TS is clear");

  __asm__ volatile("mov %0, %%dr6" : : "r"(0ull));
  expect("single-step with RFLAGS.TF (trap after the next instruction)", single_step, false, DB_VECTOR, 0,
         single_step_after);
  uint64_t dr6;
  __asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
  report_why(dr6 & (1u << 14), "DR6.BS is set by a single-step trap", "DR6 %#lx", dr6);

  struct percpu* p = this_cpu();
  set_trap_handler(0x86, int86_handler);
  idt_set_ist(0x86, 2);
  ist_frame = 0;
  trap_run(int_86, NULL, NULL);
  report_why(ist_frame >= (uint64_t)p->ist_stack[1] && ist_frame < ist_stack_top(p, 2),
             "a gate with IST 2 runs its handler on the IST2 stack", "frame at %#lx", ist_frame);
  idt_set_ist(0x86, 0);
  ist_frame = 0;
  trap_run(int_86, NULL, NULL);
  uint64_t rsp = read_rsp();
  report_why(ist_frame < rsp && ist_frame > rsp - 4096, "without IST the handler runs on the current stack",
             "frame at %#lx, RSP %#lx", ist_frame, rsp);

  /* #UD with RSP on an unmapped page: pushing its frame faults (#PF), pushing the #PF frame
   * faults again, and a #PF during #PF delivery is a double fault (SDM Table 6-5). */
  struct fault_info fi;
  int v = trap_run(stack_overflow, NULL, &fi);
  report_why(v == DF_VECTOR, "a fault while delivering a fault on a bad stack is #DF", "got vector %d", v);
  check_eq("#DF pushes error code 0", fi.error_code, 0);
  report_why(fi.frame >= (uint64_t)p->ist_stack[0] && fi.frame < ist_stack_top(p, 1), "#DF runs on IST1",
             "frame at %#lx", fi.frame);
  check_eq("#DF saved the faulting RSP", fi.rsp, 0x200000000000ull);
  return 0;
}
