/* Multiboot v1 entry: the boot loader leaves us in 32-bit protected mode with paging off
 * (Multiboot 0.6.96, 3.2 "Machine state"). Record that state for the boot-protocol test, zero
 * .bss, identity-map the first 4 GiB with 2 MiB pages, enter long mode and call
 * runtime_start() in 64-bit C. */
#include "runtime/config.h"

#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00000003 /* bit 0: modules page-aligned; bit 1: memory information */

    .section .multiboot, "a"
    .balign 4
multiboot_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .text.boot, "ax"
    .code32
    .globl _start
_start:
    /* The boot register state, before anything changes it (struct boot_state, runtime.h). */
    mov %eax, boot_state + 0
    mov %ebx, boot_state + 4
    mov %cr0, %eax
    mov %eax, boot_state + 8
    mov $boot_stack_top, %esp
    pushfl
    popl boot_state + 12
    mov %cs, %ax
    mov %ax, boot_state + 16
    mov %ds, %ax
    mov %ax, boot_state + 18
    mov %ss, %ax
    mov %ax, boot_state + 20
    mov %es, %ax
    mov %ax, boot_state + 22
    movzwl boot_state + 16, %ecx
    lsl %ecx, %eax
    mov %eax, boot_state + 24
    lar %ecx, %eax
    mov %eax, boot_state + 28
    movzwl boot_state + 18, %ecx
    lsl %ecx, %eax
    mov %eax, boot_state + 32
    lar %ecx, %eax
    mov %eax, boot_state + 36
    mov %cr4, %eax
    mov %eax, boot_state + 40

    /* .bss is not in the file; the loader zeroes it, but say so ourselves. */
    cld
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    /* Long mode is required (CPUID.80000001H:EDX.LM[29]); NX is used when present ([20]). */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    bt $29, %edx
    jnc no_long_mode
    shr $20, %edx
    and $1, %edx
    mov %edx, boot_nx

    /* PML4[0] -> PDPT; PDPT[0..3] -> four page directories of 2 MiB pages covering 4 GiB.
     * All levels are user-accessible so that ring-3 tests can run the same code; the leaf
     * decides. The top GiB (APIC, IOAPIC, firmware) is uncached. */
    mov $boot_pdpt, %eax
    or $0x7, %eax
    mov %eax, boot_pml4
    mov $boot_pd, %eax
    or $0x7, %eax
    mov $boot_pdpt, %edi
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $0x1000, %eax
    add $8, %edi
    loop 1b
    mov $boot_pd, %edi
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x87, %eax         /* P | RW | US | PS */
    cmp $1536, %ecx        /* 1536 * 2 MiB = 3 GiB */
    jb 3f
    or $0x18, %eax         /* PWT | PCD */
3:  mov %eax, (%edi, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jb 2b

    lgdt gdt_descriptor
    mov %cr4, %eax
    or $0x20, %eax         /* CR4.PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx  /* IA32_EFER */
    rdmsr
    or $0x100, %eax        /* LME */
    testl $1, boot_nx
    jz 4f
    or $0x800, %eax        /* NXE */
4:  wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax   /* PG | WP | PE */
    mov %eax, %cr0
    ljmp $0x08, $start64

no_long_mode:
    /* Nothing to run: report through the debug port (status 3 in QEMU's terms) and stop. */
    mov $DEBUG_EXIT_PORT, %dx
    mov $1, %eax
    outl %eax, %dx
5:  hlt
    jmp 5b

    .code64
start64:
    /* Data segments are null in 64-bit mode (their bases are ignored, GS's comes from the
     * MSR), so IRET to ring 3 has none to clear (SDM Vol. 2 IRET). */
    mov $0x10, %ax
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov $boot_stack_top, %rsp
    xor %ebp, %ebp
    call runtime_start
6:  hlt
    jmp 6b

    /* Application processors arrive here from the trampoline with RSP set (smp.c). */
    .globl ap_start64
ap_start64:
    mov $0x10, %ax
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    xor %ebp, %ebp
    call ap_main
7:  hlt
    jmp 7b

    .data
    .balign 8
    /* Flat segments; the TSS descriptors of every CPU follow (desc.c fills them). */
    .globl gdt
gdt:
    .quad 0
    .quad 0x00af9a000000ffff   /* 0x08 kernel code, 64-bit */
    .quad 0x00cf92000000ffff   /* 0x10 kernel data */
    .quad 0x00cf9a000000ffff   /* 0x18 kernel code, 32-bit */
    .quad 0x00cffa000000ffff   /* 0x20 user code, 32-bit */
    .quad 0x00cff2000000ffff   /* 0x28 user data */
    .quad 0x00affa000000ffff   /* 0x30 user code, 64-bit */
    .fill 2 * MAX_CPUS, 8, 0   /* 0x38 + 16 * cpu: TSS */
gdt_end:
    .globl gdt_descriptor
gdt_descriptor:
    .word gdt_end - gdt - 1
    .quad gdt

    .globl boot_state
boot_state:
    .fill 48, 1, 0
    .globl boot_nx
boot_nx:
    .long 0

    .bss
    .balign 4096
    .globl boot_pml4
boot_pml4:
    .fill 4096, 1, 0
boot_pdpt:
    .fill 4096, 1, 0
    .globl boot_pd
boot_pd:
    .fill 4 * 4096, 1, 0
    .balign 16
boot_stack:
    .fill KERNEL_STACK_SIZE, 1, 0
    .globl boot_stack_top
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
