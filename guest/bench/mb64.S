/* A multiboot v1 wrapper for the benchmark workloads: 32-bit entry from the boot loader,
 * identity map of 4 GiB with 2 MiB pages, long mode, then the workload in 64-bit C with the
 * round count from the command line ("<kernel> <rounds>"), the result printed on COM1 and the
 * run ended through isa-debug-exit (port 0xf4, value 0: exit status 1). The same image runs
 * under nestvm and under qemu-system-x86_64 (ELF32, which QEMU's multiboot loader needs). */
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00000003
#define PML4 0x70000
#define PDPT 0x71000
#define PD0 0x72000

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .section .text.start, "ax"
    .code32
    .globl _start
_start:
    mov $stack_top, %esp
    mov %ebx, mbi
    /* Page tables: PML4[0] -> PDPT, PDPT[0..3] -> PD0..PD3, 2048 2 MiB pages. */
    mov $PML4, %edi
    xor %eax, %eax
    mov $(6 * 4096 / 4), %ecx
    rep stosl
    movl $(PDPT | 3), PML4
    mov $0, %ecx
1:  mov %ecx, %eax
    shl $12, %eax
    add $(PD0 | 3), %eax
    mov %eax, PDPT(, %ecx, 8)
    inc %ecx
    cmp $4, %ecx
    jne 1b
    mov $0, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, PD0(, %ecx, 8)
    mov %ecx, %eax
    shr $11, %eax
    mov %eax, PD0 + 4(, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b
    mov %cr4, %eax
    or $0x20, %eax              /* PAE */
    mov %eax, %cr4
    mov $PML4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx       /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax        /* PG | PE */
    mov %eax, %cr0
    lgdt gdt_desc
    ljmp $0x08, $long_entry

    .code64
long_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $stack_top, %rsp
    mov mbi(%rip), %edi
    call bench_main
    mov $0xf4, %dx
    xor %eax, %eax
    out %al, %dx
    hlt
    jmp .

    .data
    .align 8
gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
gdt_desc:
    .word gdt_desc - gdt - 1
    .long gdt
mbi:
    .long 0

    .bss
    .align 16
    .space 65536
stack_top:
    .section .note.GNU-stack, "", @progbits
