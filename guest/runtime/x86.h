/* Processor access for test guests: port I/O, MSRs, control registers, CPUID, descriptor
 * tables. Everything is static inline so that a test sees exactly the instruction it asks for. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Segment selectors of the runtime's GDT (desc.c). The user selectors sit in the order SYSRET
 * wants (SDM Vol. 2 SYSRET: SS = STAR[63:48] + 8, CS = STAR[63:48] + 16). */
#define SEL_KERNEL_CS 0x08
#define SEL_KERNEL_DS 0x10
#define SEL_KERNEL_CS32 0x18
#define SEL_USER_CS32 0x23
#define SEL_USER_DS 0x2b
#define SEL_USER_CS 0x33
#define SEL_TSS0 0x38 /* one 16-byte TSS descriptor per CPU from here */

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_EM (1ull << 2)
#define CR0_TS (1ull << 3)
#define CR0_WP (1ull << 16)
#define CR0_AM (1ull << 18)
#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_PGE (1ull << 7)
#define CR4_OSFXSR (1ull << 9)
#define CR4_SMEP (1ull << 20)
#define CR4_SMAP (1ull << 21)

#define RFLAGS_CF (1ull << 0)
#define RFLAGS_TF (1ull << 8)
#define RFLAGS_IF (1ull << 9)
#define RFLAGS_AC (1ull << 18)

#define MSR_APIC_BASE 0x1b
#define MSR_TSC_DEADLINE 0x6e0
#define MSR_EFER 0xc0000080
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define EFER_NXE (1ull << 11)

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint16_t inw(uint16_t port) {
  uint16_t v;
  __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint32_t inl(uint16_t port) {
  uint32_t v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

static inline uint64_t rdmsr(uint32_t msr) {
  uint32_t lo, hi;
  __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
  return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v) {
  __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

struct cpuid_regs {
  uint32_t a, b, c, d;
};
static inline struct cpuid_regs cpuid_count(uint32_t leaf, uint32_t subleaf) {
  struct cpuid_regs r;
  __asm__ volatile("cpuid" : "=a"(r.a), "=b"(r.b), "=c"(r.c), "=d"(r.d) : "a"(leaf), "c"(subleaf));
  return r;
}
static inline struct cpuid_regs cpuid(uint32_t leaf) { return cpuid_count(leaf, 0); }

static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

#define DEFINE_CR(n)                                                          \
  static inline uint64_t read_cr##n(void) {                                   \
    uint64_t v;                                                               \
    __asm__ volatile("mov %%cr" #n ", %0" : "=r"(v));                         \
    return v;                                                                 \
  }                                                                           \
  static inline void write_cr##n(uint64_t v) {                                \
    __asm__ volatile("mov %0, %%cr" #n : : "r"(v) : "memory");                \
  }
DEFINE_CR(0)
DEFINE_CR(2)
DEFINE_CR(3)
DEFINE_CR(4)
#undef DEFINE_CR

static inline uint64_t read_rflags(void) {
  uint64_t v;
  __asm__ volatile("pushfq; popq %0" : "=r"(v));
  return v;
}
static inline uint64_t read_rsp(void) {
  uint64_t v;
  __asm__ volatile("mov %%rsp, %0" : "=r"(v));
  return v;
}
static inline uint16_t read_cs(void) {
  uint16_t v;
  __asm__ volatile("mov %%cs, %0" : "=r"(v));
  return v;
}

static inline void cli(void) { __asm__ volatile("cli" : : : "memory"); }
static inline void sti(void) { __asm__ volatile("sti" : : : "memory"); }
/* STI's one-instruction shadow makes "sti; hlt" wait without losing a wake-up (SDM Vol. 2 STI). */
static inline void safe_halt(void) { __asm__ volatile("sti; hlt" : : : "memory"); }
static inline void halt(void) { __asm__ volatile("hlt" : : : "memory"); }
static inline void pause(void) { __asm__ volatile("pause" : : : "memory"); }
static inline void barrier(void) { __asm__ volatile("" : : : "memory"); }
static inline void invlpg(const volatile void* p) { __asm__ volatile("invlpg (%0)" : : "r"(p) : "memory"); }

/* Interrupt flag save/restore around short critical sections. */
static inline uint64_t irq_save(void) {
  uint64_t f = read_rflags();
  cli();
  return f;
}
static inline void irq_restore(uint64_t flags) {
  if (flags & RFLAGS_IF) sti();
}

static inline uint8_t mmio_read8(uint64_t a) { return *(volatile uint8_t*)a; }
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t*)a; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t*)a = v; }

/* A spinlock for output and the few shared structures; interrupts stay off while it is held so
 * that an interrupt handler on the same CPU can take it too. */
struct spinlock {
  volatile uint32_t locked;
};
static inline uint64_t spin_lock_irqsave(struct spinlock* l) {
  uint64_t f = irq_save();
  while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE)) pause();
  return f;
}
static inline void spin_unlock_irqrestore(struct spinlock* l, uint64_t f) {
  __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
  irq_restore(f);
}
