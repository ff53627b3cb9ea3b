/* VM entry and exit (vmx.h: vmx_run). The host state of the VMCS points here: HOST_RSP at the
 * frame vmx_run leaves on its stack, HOST_RIP at vmx_exit_entry, which saves L2's general
 * registers and returns from vmx_run (SDM Vol. 3 28.5: a VM exit loads RSP and RIP from the
 * host-state area and clears RFLAGS but for bit 1). */
#define HOST_RSP 0x6c14

    .text
    .code64
    .globl vmx_run
vmx_run:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi                 /* struct guest_regs*, found again at the exit */
    mov $HOST_RSP, %eax
    vmwrite %rsp, %rax
    jbe .Lwrite_failed
    test %esi, %esi           /* launched? (MOVs below keep the flags) */
    mov 0x08(%rdi), %rcx
    mov 0x10(%rdi), %rdx
    mov 0x18(%rdi), %rbx
    mov 0x20(%rdi), %rbp
    mov 0x28(%rdi), %rsi
    mov 0x38(%rdi), %r8
    mov 0x40(%rdi), %r9
    mov 0x48(%rdi), %r10
    mov 0x50(%rdi), %r11
    mov 0x58(%rdi), %r12
    mov 0x60(%rdi), %r13
    mov 0x68(%rdi), %r14
    mov 0x70(%rdi), %r15
    mov 0x00(%rdi), %rax
    mov 0x30(%rdi), %rdi
    jnz 1f
    vmlaunch
    jmp .Lentry_failed
1:  vmresume
.Lentry_failed:
.Lwrite_failed:
    /* VMfailInvalid sets CF, VMfailValid ZF (SDM Vol. 3 31.2). */
    mov $1, %eax
    jc 2f
    mov $2, %eax
2:  pop %rdi
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

    .globl vmx_exit_entry
vmx_exit_entry:
    push %rdi                 /* L2's RDI */
    mov 8(%rsp), %rdi         /* struct guest_regs* */
    mov %rax, 0x00(%rdi)
    mov %rcx, 0x08(%rdi)
    mov %rdx, 0x10(%rdi)
    mov %rbx, 0x18(%rdi)
    mov %rbp, 0x20(%rdi)
    mov %rsi, 0x28(%rdi)
    mov %r8, 0x38(%rdi)
    mov %r9, 0x40(%rdi)
    mov %r10, 0x48(%rdi)
    mov %r11, 0x50(%rdi)
    mov %r12, 0x58(%rdi)
    mov %r13, 0x60(%rdi)
    mov %r14, 0x68(%rdi)
    mov %r15, 0x70(%rdi)
    pop %rax
    mov %rax, 0x30(%rdi)
    pop %rdi
    xor %eax, %eax
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

    .section .note.GNU-stack, "", @progbits
