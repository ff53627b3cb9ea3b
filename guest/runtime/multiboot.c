#include "runtime/multiboot.h"

#include "runtime/libc.h"
#include "runtime/runtime.h"

#define MAX_ARGS 32

static char cmdline_copy[1024];
static char* args[MAX_ARGS + 1];
static char unnamed[] = "guest";

const struct multiboot_info* multiboot_info(void) {
  if (boot_state.magic != MULTIBOOT_BOOTLOADER_MAGIC) return NULL;
  return (const struct multiboot_info*)(uintptr_t)boot_state.mbi;
}

unsigned multiboot_mmap_foreach(void (*fn)(const struct multiboot_mmap_entry* e, void* ctx), void* ctx) {
  const struct multiboot_info* mbi = multiboot_info();
  if (!mbi || !(mbi->flags & MBI_FLAG_MMAP)) return 0;
  unsigned n = 0;
  uint64_t p = mbi->mmap_addr, end = (uint64_t)mbi->mmap_addr + mbi->mmap_length;
  while (p + 4 <= end) {
    const struct multiboot_mmap_entry* e = (const void*)(uintptr_t)p;
    if (e->size < 20) break; /* malformed; the boot test reports the shape */
    if (fn) fn(e, ctx);
    ++n;
    p += (uint64_t)e->size + 4;
  }
  return n;
}

struct range_query {
  uint64_t addr, len;
  bool inside;
};

static void check_range(const struct multiboot_mmap_entry* e, void* ctx) {
  struct range_query* q = ctx;
  if (e->type == MMAP_AVAILABLE && q->addr >= e->addr && q->addr + q->len <= e->addr + e->len) q->inside = true;
}

bool multiboot_mmap_is_available(uint64_t addr, uint64_t len) {
  struct range_query q = {addr, len, false};
  multiboot_mmap_foreach(check_range, &q);
  return q.inside;
}

void multiboot_parse(int* argc, char*** argv) {
  const struct multiboot_info* mbi = multiboot_info();
  int n = 0;
  if (mbi && (mbi->flags & MBI_FLAG_CMDLINE) && mbi->cmdline) {
    strncpy(cmdline_copy, (const char*)(uintptr_t)mbi->cmdline, sizeof(cmdline_copy) - 1);
    char* s = cmdline_copy;
    while (*s && n < MAX_ARGS) {
      while (*s == ' ') *s++ = 0;
      if (!*s) break;
      args[n++] = s;
      while (*s && *s != ' ') ++s;
    }
  }
  if (n == 0) args[n++] = unnamed;
  args[n] = NULL;
  *argc = n;
  *argv = args;
}
