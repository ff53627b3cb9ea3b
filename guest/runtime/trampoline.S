/* Start-up code of the application processors. smp.c copies [ap_trampoline, ap_trampoline_end)
 * to AP_TRAMPOLINE_BASE and sends INIT-SIPI-SIPI; the AP starts in real mode with
 * CS = vector << 8, IP = 0 (SDM Vol. 3 10.4.4.1), and goes through protected mode to long mode
 * on the BSP's page tables and GDT. Every address is computed relative to the copy. */
#include "runtime/config.h"

#define REL(x) ((x) - ap_trampoline)
#define ABS(x) (AP_TRAMPOLINE_BASE + REL(x))

    .section .rodata.trampoline, "a"
    .code16
    .globl ap_trampoline
ap_trampoline:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl REL(tramp_gdt_descriptor)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x18, $ABS(tramp32)

    .code32
tramp32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov ABS(tramp_cr4), %eax
    mov %eax, %cr4
    mov ABS(tramp_cr3), %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or ABS(tramp_efer), %eax
    wrmsr
    mov ABS(tramp_cr0), %eax
    mov %eax, %cr0
    ljmp $0x08, $ABS(tramp64)

    .code64
tramp64:
    mov ABS(tramp_stack), %rsp
    mov ABS(tramp_entry), %rax
    jmp *%rax

    .balign 8
    /* Filled in by smp.c before each start-up (struct ap_trampoline_data). */
    .globl ap_trampoline_data
ap_trampoline_data:
tramp_gdt_descriptor:
    .word 0
    .long 0
    .word 0
tramp_cr0:
    .long 0
tramp_cr3:
    .long 0
tramp_cr4:
    .long 0
tramp_efer:
    .long 0
tramp_stack:
    .quad 0
tramp_entry:
    .quad 0
    .globl ap_trampoline_end
ap_trampoline_end:

    .section .note.GNU-stack, "", @progbits
