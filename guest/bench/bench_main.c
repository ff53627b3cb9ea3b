/* 64-bit side of the benchmark images: rounds from the multiboot command line, the workload,
 * the result on COM1. */
#include <stdint.h>

#include "../workloads/workload.h"

struct multiboot_info {
  uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
};

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

static void putc_serial(char c) {
  while (!(inb(0x3f8 + 5) & 0x20)) {}
  outb(0x3f8, (uint8_t)c);
}

static void puts_serial(const char* s) {
  while (*s) putc_serial(*s++);
}

static void put_hex(uint64_t v) {
  for (int i = 60; i >= 0; i -= 4) putc_serial("0123456789abcdef"[(v >> i) & 15]);
}

/* The last number on the command line ("<kernel> <rounds>"), 1 if there is none. */
static uint64_t rounds_from(const struct multiboot_info* mbi) {
  if (!(mbi->flags & 4)) return 1;
  const char* s = (const char*)(uintptr_t)mbi->cmdline;
  uint64_t n = 0, last = 1;
  int in_number = 0;
  for (; *s; ++s) {
    if (*s >= '0' && *s <= '9') {
      n = n * 10 + (uint64_t)(*s - '0');
      in_number = 1;
    } else {
      if (in_number) last = n;
      n = 0;
      in_number = 0;
    }
  }
  return in_number ? n : last;
}

void bench_main(uint32_t mbi_addr) {
  const uint64_t rounds = rounds_from((const struct multiboot_info*)(uintptr_t)mbi_addr);
  puts_serial(BENCH_NAME " rounds=");
  put_hex(rounds);
  const uint64_t r = BENCH_ENTRY(rounds);
  puts_serial(" result=");
  put_hex(r);
  puts_serial("\n");
}
