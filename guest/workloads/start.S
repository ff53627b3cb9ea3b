/* Entry of a bare 64-bit workload image: the host put the round count at MAILBOX and
 * RSP at the top of the stack; run the workload, store its result, halt. */
#define MAILBOX 0x7000
    .text
    .globl _start
_start:
    mov MAILBOX, %rdi
    call WORKLOAD
    mov %rax, MAILBOX + 8
    hlt
    jmp .
    .section .note.GNU-stack,"",@progbits
