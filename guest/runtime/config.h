/* Constants shared by the runtime's C and assembly (this file is included by .S files too). */
#pragma once

#define MAX_CPUS 16
#define PAGE_SIZE 4096
#define KERNEL_STACK_SIZE 16384
#define IST_STACK_SIZE 4096

/* Real-mode start-up code for application processors is copied here; the SIPI vector is this
 * address >> 12 (SDM Vol. 3 10.4.4.1: the vector is the 4-KByte page of the start-up code). */
#define AP_TRAMPOLINE_BASE 0x8000

/* Offsets in struct percpu that assembly uses through %gs (percpu.h checks them). */
#define PERCPU_SELF 0
#define PERCPU_CATCH_RSP 8

/* isa-debug-exit, as QEMU's "-device isa-debug-exit,iobase=0xf4,iosize=0x4". */
#define DEBUG_EXIT_PORT 0xf4

/* Vectors the runtime owns. */
#define VECTOR_USER_EXIT 0x81   /* ring 3 returns to the kernel through "int $0x81" */
#define VECTOR_CALL_FUNCTION 0xf0 /* wakes a CPU to run an on_cpu() request */
#define VECTOR_SPURIOUS 0xff

/* The 8259 PICs are remapped to these vectors (IRQ n -> PIC_VECTOR_BASE + n). */
#define PIC_VECTOR_BASE 0x20
