/* BSP start-up in 64-bit C: tables, devices into a known state, the command line, main(). */
#include "runtime/runtime.h"

#include "runtime/apic.h"
#include "runtime/desc.h"
#include "runtime/libc.h"
#include "runtime/multiboot.h"
#include "runtime/percpu.h"
#include "runtime/pic.h"
#include "runtime/report.h"
#include "runtime/serial.h"
#include "runtime/x86.h"

struct percpu percpu_area[MAX_CPUS] __attribute__((aligned(4096)));

static int g_argc;
static char** g_argv;

const char* program_name(void) {
  static char name[64];
  if (!name[0]) {
    const char* slash = g_argv ? strrchr(g_argv[0], '/') : NULL;
    strncpy(name, g_argv ? (slash ? slash + 1 : g_argv[0]) : "guest", sizeof(name) - 1);
    char* dot = strrchr(name, '.');
    if (dot && !strcmp(dot, ".elf")) *dot = 0;
  }
  return name;
}

const char* arg_value(const char* key) {
  size_t n = strlen(key);
  for (int i = 1; i < g_argc; ++i)
    if (!strncmp(g_argv[i], key, n) && g_argv[i][n] == '=') return g_argv[i] + n + 1;
  return NULL;
}

uint64_t arg_u64(const char* key, uint64_t fallback) {
  const char* v = arg_value(key);
  return v ? strtou64(v, NULL) : fallback;
}

void runtime_start(void) {
  serial_init();
  struct percpu* p = &percpu_area[0];
  p->cpu = 0;
  cpu_tables_init(p);
  /* Firmware may have left the 8259s on vectors 8-15, where an IRQ would look like #DF;
   * move them out of the exception range and mask everything until a test asks. */
  pic_init();
  lapic_init(true);
  p->apic_id = lapic_id();
  p->online = 1;
  multiboot_parse(&g_argc, &g_argv);
  printf("RUN: %s", g_argv[0]);
  for (int i = 1; i < g_argc; ++i) printf(" %s", g_argv[i]);
  printf("\n");
  main(g_argc, g_argv);
  cli();
  debug_exit((uint32_t)report_summary());
}
