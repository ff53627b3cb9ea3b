#include "runtime/traps.h"

#include "runtime/apic.h"
#include "runtime/libc.h"
#include "runtime/pic.h"
#include "runtime/report.h"
#include "runtime/x86.h"

static trap_handler handlers[256];
static volatile unsigned unexpected_count;

extern char catch_resume[];
void enter_user(cpu_fn fn, void* arg, uint64_t stack_top);

static const char* const names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "#15",
    "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23", "#24", "#25", "#26", "#27", "#HV", "#VC", "#SX", "#31"};

const char* exception_name(unsigned vector) { return vector < 32 ? names[vector] : "interrupt"; }

void set_trap_handler(int vector, trap_handler h) { handlers[vector] = h; }

unsigned unexpected_interrupts(void) { return unexpected_count; }

/* Sends execution back into catch_call() as if fn had returned vector + 1 (0: returned). */
static void resume_catch(struct trap_frame* f, uint64_t result) {
  f->rip = (uint64_t)catch_resume;
  f->cs = SEL_KERNEL_CS;
  f->rsp = this_cpu()->catch_rsp;
  f->ss = SEL_KERNEL_DS;
  f->rflags &= ~(RFLAGS_TF | RFLAGS_AC);
  f->rax = result;
}

void trap_dispatch(struct trap_frame* f) {
  unsigned v = (unsigned)f->vector;
  struct percpu* p = this_cpu();
  if (handlers[v]) {
    handlers[v](f);
    return;
  }
  if (v < 32 && p->catch_rsp) {
    p->fault.vector = v;
    p->fault.error_code = f->error_code;
    p->fault.rip = f->rip;
    p->fault.cr2 = v == PF_VECTOR ? read_cr2() : 0;
    p->fault.cs = f->cs;
    p->fault.rsp = f->rsp;
    p->fault.frame = (uint64_t)f;
    resume_catch(f, v + 1);
    return;
  }
  if (v == VECTOR_USER_EXIT && p->catch_rsp && (f->cs & 3) == 3) {
    resume_catch(f, 0);
    return;
  }
  if (v < 32) {
    report_abort("unexpected exception %s (vector %u) on CPU %u: rip=%#lx cs=%#lx error=%#lx cr2=%#lx rsp=%#lx rflags=%#lx",
                 exception_name(v), v, p->cpu, f->rip, f->cs, f->error_code, read_cr2(), f->rsp, f->rflags);
  }
  if (v == VECTOR_SPURIOUS) return; /* no EOI for the spurious vector (SDM Vol. 3 11.9) */
  if (v == VECTOR_CALL_FUNCTION) {  /* only wakes the CPU; smp.c's idle loop does the work */
    lapic_eoi();
    return;
  }
  __atomic_add_fetch(&unexpected_count, 1, __ATOMIC_RELAXED);
  report_fail("interrupts", "unexpected interrupt vector %#x on CPU %u at rip=%#lx", v, p->cpu, f->rip);
  if (lapic_in_service(v)) lapic_eoi();
  if (v >= PIC_VECTOR_BASE && v < PIC_VECTOR_BASE + 16) pic_eoi_if_in_service(v - PIC_VECTOR_BASE);
}

int trap_run(cpu_fn fn, void* arg, struct fault_info* info) {
  memset(&this_cpu()->fault, 0, sizeof(struct fault_info));
  uint64_t r = catch_call(fn, arg);
  if (info) *info = this_cpu()->fault;
  return r ? (int)r - 1 : -1;
}

static uint8_t user_stacks[MAX_CPUS][8192] __attribute__((aligned(16)));

struct user_call {
  cpu_fn fn;
  void* arg;
};

static void user_call(void* a) {
  struct user_call* c = a;
  enter_user(c->fn, c->arg, (uint64_t)&user_stacks[cpu_index()][sizeof(user_stacks[0])]);
}

int trap_run_user(cpu_fn fn, void* arg, struct fault_info* info) {
  struct user_call c = {fn, arg};
  return trap_run(user_call, &c, info);
}
