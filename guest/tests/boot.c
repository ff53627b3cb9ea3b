/* The multiboot v1 boot protocol as a loader must deliver it (Multiboot Specification 0.6.96):
 * machine state at entry (3.2), the information structure (3.3): flags, mem_lower/mem_upper,
 * the memory map, the command line "<kernel file name> <-append text>" as QEMU builds it, and
 * a module from -initrd with its own command line.
 * Arguments: mem=<MiB given to -m> mods=<modules expected> words: <the words that must follow>. */
#include "runtime/libc.h"
#include "runtime/multiboot.h"
#include "runtime/report.h"
#include "runtime/runtime.h"

/* tests/guest/data/boot_module.txt */
static const char module_text[] = "nestvm multiboot module: 0123456789abcdefghijklmnopqrstuvwxyz\n";

extern char __bss_end[];

static void check_machine_state(void) {
  check_eq("EAX holds the multiboot magic", boot_state.magic, MULTIBOOT_BOOTLOADER_MAGIC);
  report_why((boot_state.cr0 & 0x80000001) == 1, "CR0: PE set, PG clear", "cr0 %#x", boot_state.cr0);
  report_why(!(boot_state.eflags & (1u << 17)), "EFLAGS.VM clear", "eflags %#x", boot_state.eflags);
  report_why(!(boot_state.eflags & (1u << 9)), "EFLAGS.IF clear", "eflags %#x", boot_state.eflags);
  /* LAR: type in bits 11:8, S 12, P 15, D/B 22, G 23 (SDM Vol. 2 LAR). */
  report_why((boot_state.cs_access & 0x00c09a00) == 0x00c09a00 && (boot_state.cs_access & 0x0800),
             "CS: present 32-bit execute/read code, 4 KiB granularity", "LAR %#x", boot_state.cs_access);
  check_eq("CS limit is 4 GiB - 1", boot_state.cs_limit, 0xffffffffu);
  report_why((boot_state.ds_access & 0x00c09200) == 0x00c09200 && !(boot_state.ds_access & 0x0800),
             "DS: present 32-bit read/write data, 4 KiB granularity", "LAR %#x", boot_state.ds_access);
  check_eq("DS limit is 4 GiB - 1", boot_state.ds_limit, 0xffffffffu);
  check_eq("ES is DS's selector", boot_state.es, boot_state.ds);
  check_eq("SS is DS's selector", boot_state.ss, boot_state.ds);
}

struct map_stats {
  unsigned entries, bad_size, bad_type, overlaps;
  uint64_t available, hole_available;
  bool low_ok, high_ok;
  uint64_t high_len, above_4g;
  struct {
    uint64_t start, end;
  } avail[32];
  unsigned navail;
};

static void map_entry(const struct multiboot_mmap_entry* e, void* ctx) {
  struct map_stats* s = ctx;
  s->entries++;
  printf("  mmap %#014lx-%#014lx type %u\n", e->addr, e->addr + e->len, e->type);
  if (e->size != 20) s->bad_size++;
  if (e->type < 1 || e->type > 5) s->bad_type++;
  if (e->type != MMAP_AVAILABLE) return;
  uint64_t start = e->addr, end = e->addr + e->len;
  for (unsigned i = 0; i < s->navail; ++i)
    if (start < s->avail[i].end && s->avail[i].start < end) s->overlaps++;
  if (s->navail < 32) s->avail[s->navail++] = (typeof(s->avail[0])){start, end};
  s->available += e->len;
  if (start < 0x100000 && end > 0xa0000) s->hole_available++;
  if (start == 0 && end >= 0x9f000) s->low_ok = true;
  if (start <= 0x100000 && end > 0x100000) {
    s->high_ok = true;
    s->high_len = end - 0x100000;
  }
  if (start >= 0x100000000ull) s->above_4g += e->len;
}

static void check_memory(const struct multiboot_info* mbi, uint64_t mem_mib) {
  report_why(mbi->flags & MBI_FLAG_MEM, "flags: mem_lower/mem_upper valid (bit 0)", "flags %#x", mbi->flags);
  report_why(mbi->mem_lower >= 600 && mbi->mem_lower <= 640, "mem_lower is conventional memory (600..640 KiB)",
             "got %u", mbi->mem_lower);
  /* mem_upper: KiB of contiguous memory from 1 MiB up to the first hole (3.3), which is at most
   * the RAM below 4 GiB: QEMU's pc machine keeps it all there under 3.5 GiB and splits at
   * 3 GiB above. Firmware may keep a little at the top for itself (SeaBIOS does, 128 KiB). */
  uint64_t below_4g = mem_mib << 20;
  if (below_4g >= 0xe0000000ull) below_4g = 0xc0000000ull;
  uint64_t upper_max = below_4g / 1024 - 1024;
  report_why(mbi->mem_upper <= upper_max && mbi->mem_upper + 4096 >= upper_max,
             "mem_upper is RAM below 4 GiB less 1 MiB (less at most 4 MiB of firmware use), in KiB",
             "got %u, want %lu or a little less", mbi->mem_upper, upper_max);

  report_why(mbi->flags & MBI_FLAG_MMAP, "flags: memory map valid (bit 6)", "flags %#x", mbi->flags);
  if (!(mbi->flags & MBI_FLAG_MMAP)) return;
  struct map_stats s = {0};
  multiboot_mmap_foreach(map_entry, &s);
  report_why(s.entries >= 2, "memory map has at least 2 entries", "%u", s.entries);
  report_why(s.bad_size == 0, "every entry's size field is 20", "%u entries differ", s.bad_size);
  report_why(s.bad_type == 0, "every entry's type is 1..5", "%u entries differ", s.bad_type);
  report_why(s.overlaps == 0, "available ranges do not overlap", "%u overlaps", s.overlaps);
  report_why(s.low_ok, "conventional memory from 0 is available", "no available entry [0, >=0x9f000)");
  report_why(s.hole_available == 0, "nothing is available in the VGA/BIOS hole 0xa0000-0xfffff", "%lu entries",
             s.hole_available);
  report_why(s.high_ok, "memory from 1 MiB is available", "no entry covers 0x100000");
  check_eq("mem_upper is the length of the available region at 1 MiB", (uint64_t)mbi->mem_upper * 1024, s.high_len);
  uint64_t ram = mem_mib << 20;
  report_why(s.available <= ram && s.available >= ram - (8u << 20),
             "available memory adds up to -m (less at most 8 MiB of holes and firmware)", "%#lx of %#lx", s.available,
             ram);
  check_eq("RAM above 4 GiB in the map", s.above_4g, ram - below_4g);
  report_why(multiboot_mmap_is_available(0x100000, (uint64_t)(uintptr_t)__bss_end - 0x100000),
             "the kernel image lies in available memory", "[0x100000, %p) is not", __bss_end);
}

static int split_words(char* s, char** words, int max) {
  int n = 0;
  while (*s && n < max) {
    while (*s == ' ') *s++ = 0;
    if (!*s) break;
    words[n++] = s;
    while (*s && *s != ' ') ++s;
  }
  return n;
}

static void check_cmdline(const struct multiboot_info* mbi, int argc, char** argv) {
  report_why(mbi->flags & MBI_FLAG_CMDLINE, "flags: command line valid (bit 2)", "flags %#x", mbi->flags);
  if (!(mbi->flags & MBI_FLAG_CMDLINE)) return;
  const char* raw = (const char*)(uintptr_t)mbi->cmdline;
  printf("command line \"%s\"\n", raw);
  report_why(str_ends_with(argv[0], "boot.elf"), "the first word is the kernel's file name", "\"%s\"", argv[0]);
  /* "<file> <append>": the words separated by single spaces, nothing before or after. */
  char rebuilt[512] = "";
  size_t len = 0;
  for (int i = 0; i < argc; ++i) len += (size_t)snprintf(rebuilt + len, sizeof(rebuilt) - len, i ? " %s" : "%s", argv[i]);
  report_why(!strcmp(raw, rebuilt), "command line is \"<kernel> <append>\" with single spaces",
             "raw \"%s\"", raw);
  int words_at = -1;
  for (int i = 1; i < argc; ++i)
    if (!strcmp(argv[i], "words:")) words_at = i;
  static const char* const want[] = {"alpha", "beta=2", "--gamma"};
  bool ok = words_at > 0 && argc - words_at - 1 == (int)ARRAY_SIZE(want);
  for (size_t i = 0; ok && i < ARRAY_SIZE(want); ++i) ok = !strcmp(argv[words_at + 1 + i], want[i]);
  report_why(ok, "the -append words arrive in order", "want \"words: alpha beta=2 --gamma\" at the end");
}

static void check_modules(const struct multiboot_info* mbi, unsigned mods) {
  if (mods == 0) {
    report_why(!(mbi->flags & MBI_FLAG_MODS) || mbi->mods_count == 0, "no modules without -initrd",
               "flags %#x, %u modules", mbi->flags, mbi->mods_count);
    return;
  }
  report_why(mbi->flags & MBI_FLAG_MODS, "flags: modules valid (bit 3)", "flags %#x", mbi->flags);
  if (!(mbi->flags & MBI_FLAG_MODS)) return;
  check_eq("mods_count", mbi->mods_count, mods);
  if (mbi->mods_count < 1) return;
  const struct multiboot_module* m = (const void*)(uintptr_t)mbi->mods_addr;
  printf("module 0: [%#x, %#x) \"%s\"\n", m->mod_start, m->mod_end, (const char*)(uintptr_t)m->string);
  check_eq("module is page-aligned (header flag bit 0)", m->mod_start & 0xfff, 0);
  check_eq("module size", m->mod_end - m->mod_start, sizeof(module_text) - 1);
  report_why(!memcmp((const void*)(uintptr_t)m->mod_start, module_text, sizeof(module_text) - 1),
             "module content", "differs from tests/guest/data/boot_module.txt");
  report_why(m->mod_start >= (uint64_t)(uintptr_t)__bss_end || m->mod_end <= 0x100000,
             "module does not overlap the kernel image (including .bss)", "module at %#x, image ends at %p",
             m->mod_start, __bss_end);
  report_why(multiboot_mmap_is_available(m->mod_start, m->mod_end - m->mod_start), "module lies in available memory",
             "[%#x, %#x)", m->mod_start, m->mod_end);
  char str[256];
  strncpy(str, (const char*)(uintptr_t)m->string, sizeof(str) - 1);
  str[sizeof(str) - 1] = 0;
  char* w[8];
  int n = split_words(str, w, 8);
  report_why(n == 2 && str_ends_with(w[0], "boot_module.txt") && !strcmp(w[1], "modarg=1"),
             "module command line is the -initrd text \"<file> modarg=1\"", "\"%s\"",
             (const char*)(uintptr_t)m->string);
}

int main(int argc, char** argv) {
  check_machine_state();
  const struct multiboot_info* mbi = multiboot_info();
  if (!mbi) report_abort("no multiboot information (EAX %#x)", boot_state.magic);
  printf("flags %#x mem_lower %u mem_upper %u\n", mbi->flags, mbi->mem_lower, mbi->mem_upper);
  check_memory(mbi, arg_u64("mem", 128));
  check_cmdline(mbi, argc, argv);
  check_modules(mbi, (unsigned)arg_u64("mods", 0));
  if (mbi->flags & MBI_FLAG_LOADER_NAME) {
    const char* name = (const char*)(uintptr_t)mbi->boot_loader_name;
    printf("boot loader \"%s\"\n", name);
    report_why(name[0] && strlen(name) < 64, "boot loader name is a short string", "\"%.64s\"", name);
  }
  return 0;
}
