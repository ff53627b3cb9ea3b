/* The runtime's entry points and what it offers every test: the boot register state, the
 * command line, and main(). A test is a program with
 *     int main(int argc, char** argv);
 * that reports its checks (report.h); the runtime prints the summary and exits through
 * isa-debug-exit when main returns. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

/* Registers as the boot loader left them, recorded by boot.S before anything changed them. */
struct boot_state {
  uint32_t magic; /* EAX */
  uint32_t mbi;   /* EBX */
  uint32_t cr0;
  uint32_t eflags;
  uint16_t cs, ds, ss, es;
  uint32_t cs_limit, cs_access; /* LSL and LAR of CS */
  uint32_t ds_limit, ds_access; /* LSL and LAR of DS */
  uint32_t cr4;
  uint32_t reserved;
};
_Static_assert(sizeof(struct boot_state) == 48, "boot.S fills 48 bytes");
extern struct boot_state boot_state;
extern uint32_t boot_nx; /* EFER.NXE was set (the CPU has NX) */
extern uint64_t boot_pml4[512];

int main(int argc, char** argv);

/* The program name: the last path component of the command line's first word, less ".elf". */
const char* program_name(void);
/* The value of a "key=value" argument, or NULL. */
const char* arg_value(const char* key);
uint64_t arg_u64(const char* key, uint64_t fallback);
