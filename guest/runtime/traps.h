/* Exceptions and interrupts: handlers by vector, and running code that is expected to fault. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "runtime/percpu.h"

/* What isr.S pushes: general-purpose registers, vector, error code, the processor's frame. */
struct trap_frame {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
  uint64_t vector, error_code;
  uint64_t rip, cs, rflags, rsp, ss;
};

#define DE_VECTOR 0
#define DB_VECTOR 1
#define NMI_VECTOR 2
#define BP_VECTOR 3
#define OF_VECTOR 4
#define UD_VECTOR 6
#define NM_VECTOR 7
#define DF_VECTOR 8
#define TS_VECTOR 10
#define NP_VECTOR 11
#define SS_VECTOR 12
#define GP_VECTOR 13
#define PF_VECTOR 14
#define AC_VECTOR 17

/* #PF error code bits (SDM Vol. 3 4.7). */
#define PFEC_P (1u << 0)
#define PFEC_W (1u << 1)
#define PFEC_U (1u << 2)
#define PFEC_RSVD (1u << 3)
#define PFEC_I (1u << 4)

typedef void (*trap_handler)(struct trap_frame* f);

/* A handler for a vector, shared by every CPU (NULL restores the default: exceptions are
 * unexpected and end the test, interrupts are reported as failures). Interrupt handlers send
 * their own EOI. */
void set_trap_handler(int vector, trap_handler h);

/* Runs fn(arg) at CPL 0. Returns -1 if it returned, or the vector of the exception that stopped
 * it, with the details in *info (may be NULL). Execution resumes after the call either way. */
int trap_run(cpu_fn fn, void* arg, struct fault_info* info);
/* The same at CPL 3 (RFLAGS.IF = 0, IOPL 0) on a per-CPU user stack. The identity map is
 * user-accessible, so fn and its data are reachable from ring 3. */
int trap_run_user(cpu_fn fn, void* arg, struct fault_info* info);

const char* exception_name(unsigned vector);

/* Counts of interrupts that arrived at a vector without a handler (each is also a FAIL line). */
unsigned unexpected_interrupts(void);

uint64_t catch_call(cpu_fn fn, void* arg);
