/* Interrupt and exception entry: one stub per vector pushes a zero where the processor pushes
 * no error code (SDM Vol. 3 6.13: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX push one),
 * then the vector, then every general-purpose register, forming struct trap_frame (traps.h). */
#include "runtime/config.h"

    .text
    .altmacro
.macro ISR_STUB v
    .balign 16
isr_stub_\v:
    .if (\v == 8) || (\v == 10) || (\v == 11) || (\v == 12) || (\v == 13) || (\v == 14) || (\v == 17) || (\v == 21) || (\v == 29) || (\v == 30)
    .else
    pushq $0
    .endif
    pushq $\v
    jmp isr_common
.endm

.set vec, 0
.rept 256
    ISR_STUB %vec
    .set vec, vec + 1
.endr

isr_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    cld
    /* The processor aligned RSP to 16 before pushing SS (SDM Vol. 3 6.14.2); 22 quadwords
     * later it is aligned again, as the ABI wants at a call. */
    mov %rsp, %rdi
    call trap_dispatch
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

.macro STUB_ADDR v
    .quad isr_stub_\v
.endm
    .section .rodata
    .balign 8
    .globl isr_stubs
isr_stubs:
.set vec, 0
.rept 256
    STUB_ADDR %vec
    .set vec, vec + 1
.endr

/* uint64_t catch_call(void (*fn)(void*), void* arg): runs fn(arg); an exception while it runs
 * (traps.c) comes back here with RSP restored and RAX = vector + 1; a normal return gives 0.
 * Calls nest: the previous catch context is saved on the stack. */
    .text
    .globl catch_call
catch_call:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    pushq %gs:PERCPU_CATCH_RSP
    mov %rsp, %gs:PERCPU_CATCH_RSP
    mov %rdi, %rax
    mov %rsi, %rdi
    call *%rax
    xor %eax, %eax
    .globl catch_resume
catch_resume:
    popq %gs:PERCPU_CATCH_RSP
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

/* void enter_user(void (*fn)(void*), void* arg, uint64_t stack_top): IRET to ring 3 at fn with
 * RDI = arg and the return address user_exit on the user stack. Used under catch_call only. */
    .globl enter_user
enter_user:
    lea -8(%rdx), %rax
    movq $user_exit, (%rax)
    pushq $0x2b                /* SS: user data, RPL 3 */
    pushq %rax                 /* RSP */
    pushq $0x2                 /* RFLAGS: IF = 0 */
    pushq $0x33                /* CS: user code, RPL 3 */
    pushq %rdi                 /* RIP */
    mov %rsi, %rdi
    iretq
user_exit:
    int $VECTOR_USER_EXIT
    ud2

    .section .note.GNU-stack, "", @progbits
