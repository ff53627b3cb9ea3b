#include "runtime/desc.h"

#include "runtime/libc.h"
#include "runtime/x86.h"

extern uint64_t gdt[];
extern const uint64_t isr_stubs[256];

struct idt_gate {
  uint16_t offset_low;
  uint16_t selector;
  uint8_t ist;
  uint8_t type_attr;
  uint16_t offset_mid;
  uint32_t offset_high;
  uint32_t reserved;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));
static int idt_built;

struct table_register {
  uint16_t limit;
  uint64_t base;
} __attribute__((packed));

static void idt_build(void) {
  for (int v = 0; v < 256; ++v) {
    uint64_t a = isr_stubs[v];
    idt[v].offset_low = (uint16_t)a;
    idt[v].selector = SEL_KERNEL_CS;
    idt[v].ist = 0;
    idt[v].type_attr = 0x8e; /* present, DPL 0, 64-bit interrupt gate */
    idt[v].offset_mid = (uint16_t)(a >> 16);
    idt[v].offset_high = (uint32_t)(a >> 32);
    idt[v].reserved = 0;
  }
  /* Ring 3 may raise #BP and #OF and come back through the user-exit gate (as Linux allows
   * INT3 and INTO). */
  idt_set_dpl(3, 3);
  idt_set_dpl(4, 3);
  idt_set_dpl(VECTOR_USER_EXIT, 3);
  /* #DF always gets a known-good stack (SDM Vol. 3 6.14.5). */
  idt_set_ist(8, 1);
}

void idt_set_dpl(int vector, int dpl) {
  idt[vector].type_attr = (uint8_t)((idt[vector].type_attr & ~0x60) | ((dpl & 3) << 5));
}

void idt_set_ist(int vector, int ist) { idt[vector].ist = (uint8_t)(ist & 7); }

void idt_set_present(int vector, bool present) {
  idt[vector].type_attr = (uint8_t)(present ? idt[vector].type_attr | 0x80 : idt[vector].type_attr & ~0x80);
}

static void gdt_set_tss(unsigned cpu, struct tss64* tss) {
  uint64_t base = (uint64_t)tss;
  uint64_t limit = sizeof(*tss) - 1;
  /* SDM Vol. 3 8.2.3: a 16-byte system descriptor; type 9 = available 64-bit TSS. */
  uint64_t low = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
                 (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
  unsigned index = (SEL_TSS0 >> 3) + 2 * cpu;
  gdt[index] = low;
  gdt[index + 1] = base >> 32;
}

void cpu_tables_init(struct percpu* p) {
  if (!idt_built) {
    idt_build();
    idt_built = 1;
  }
  p->self = p;
  wrmsr(MSR_GS_BASE, (uint64_t)p);

  memset(&p->tss, 0, sizeof(p->tss));
  p->tss.rsp[0] = (uint64_t)&p->rsp0_stack[IST_STACK_SIZE];
  for (int i = 1; i <= 3; ++i) p->tss.ist[i] = ist_stack_top(p, i);
  p->tss.iomap_base = sizeof(p->tss); /* no I/O bitmap: ring 3 port I/O faults (IOPL 0) */
  gdt_set_tss(p->cpu, &p->tss);

  extern struct table_register gdt_descriptor;
  __asm__ volatile("lgdt %0" : : "m"(gdt_descriptor));
  struct table_register idtr = {sizeof(idt) - 1, (uint64_t)idt};
  __asm__ volatile("lidt %0" : : "m"(idtr));
  uint16_t tr = (uint16_t)(SEL_TSS0 + 16 * p->cpu);
  __asm__ volatile("ltr %0" : : "r"(tr));
}
