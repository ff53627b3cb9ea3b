/* The minivisor's loader (loader.h): nestvm's loader (src/vmm/loader) redone in portable C. Each
 * function names the nestvm function whose result it must reproduce. */
#include "minivisor/loader.h"

#if defined(__STDC_HOSTED__) && __STDC_HOSTED__
#include <stdio.h>
#include <string.h>
#else
#include "runtime/libc.h"
#endif

#define MB_HEADER_MAGIC 0x1badb002u
#define MB_BOOTLOADER_MAGIC 0x2badb002u
#define MB_SEARCH_LIMIT 8192u
#define MB_FLAG_AOUT_KLUDGE (1u << 16)
#define MBI_SIZE 88u
#define MBI_FLAGS (1u << 0 | 1u << 1 | 1u << 2 | 1u << 3 | 1u << 6 | 1u << 9)
#define MBI_MOD_SIZE 16u
#define MBI_MMAP_ENTRY_SIZE 24u
#define FLAT_LOAD_ADDRESS 0x100000u
#define FOUR_GIB 0x100000000ull
#define PAGE 4096ull

static uint64_t page_align(uint64_t a) { return (a + PAGE - 1) & ~(PAGE - 1); }

static uint32_t le32(const uint8_t* b) {
  uint32_t v;
  memcpy(&v, b, 4);
  return v;
}
static uint64_t le64(const uint8_t* b) {
  uint64_t v;
  memcpy(&v, b, 8);
  return v;
}
static uint16_t le16(const uint8_t* b) {
  uint16_t v;
  memcpy(&v, b, 2);
  return v;
}
static void put32(uint8_t* b, uint32_t v) { memcpy(b, &v, 4); }
static void put64(uint8_t* b, uint64_t v) { memcpy(b, &v, 8); }

static bool fail(struct mvl_boot* boot, const char* what, uint64_t a, uint64_t b) {
  snprintf(boot->error, sizeof(boot->error), what, (unsigned long long)a, (unsigned long long)b);
  return false;
}

/* find_multiboot_header */
struct mb_header {
  bool found;
  uint32_t offset, flags;
  uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
};

static struct mb_header find_header(const uint8_t* image, uint64_t size) {
  struct mb_header h;
  memset(&h, 0, sizeof(h));
  const uint64_t limit = size < MB_SEARCH_LIMIT ? size : MB_SEARCH_LIMIT;
  for (uint64_t off = 0; off + 12 <= limit; off += 4) {
    if (le32(image + off) != MB_HEADER_MAGIC) continue;
    const uint32_t flags = le32(image + off + 4);
    if ((uint32_t)(MB_HEADER_MAGIC + flags + le32(image + off + 8)) != 0) continue;
    h.found = true;
    h.offset = (uint32_t)off;
    h.flags = flags;
    if ((flags & MB_FLAG_AOUT_KLUDGE) && off + 32 <= size) {
      h.header_addr = le32(image + off + 12);
      h.load_addr = le32(image + off + 16);
      h.load_end_addr = le32(image + off + 20);
      h.bss_end_addr = le32(image + off + 24);
      h.entry_addr = le32(image + off + 28);
    }
    return h;
  }
  return h;
}

/* parse_elf */
#define MAX_SEGMENTS 32
struct elf_segment {
  uint64_t paddr, vaddr, offset, filesz, memsz;
  uint32_t flags;
};
struct elf_image {
  bool is64;
  uint64_t entry;
  unsigned count;
  struct elf_segment seg[MAX_SEGMENTS];
};

static bool is_elf(const uint8_t* b, uint64_t size) {
  return size >= 4 && b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F';
}

static bool parse_elf(const uint8_t* b, uint64_t size, struct elf_image* elf, struct mvl_boot* boot) {
  if (!is_elf(b, size) || size < 52) return fail(boot, "not an ELF image", 0, 0);
  if (b[4] != 1 && b[4] != 2) return fail(boot, "ELF: invalid class %llu", b[4], 0);
  if (b[5] != 1) return fail(boot, "ELF: not little-endian", 0, 0);
  elf->is64 = b[4] == 2;
  elf->count = 0;
  if (elf->is64 && size < 64) return fail(boot, "ELF: truncated ELF64 header", 0, 0);
  if (le16(b + 16) != 2) return fail(boot, "ELF: not an executable (e_type %llu)", le16(b + 16), 0);
  if (le16(b + 18) != (elf->is64 ? 62 : 3)) return fail(boot, "ELF: e_machine %llu does not match the class", le16(b + 18), 0);
  uint64_t phoff;
  unsigned phentsize, phnum;
  if (elf->is64) {
    elf->entry = le64(b + 24);
    phoff = le64(b + 32);
    phentsize = le16(b + 54);
    phnum = le16(b + 56);
  } else {
    elf->entry = le32(b + 24);
    phoff = le32(b + 28);
    phentsize = le16(b + 42);
    phnum = le16(b + 44);
  }
  if (phnum == 0) return fail(boot, "ELF: no program headers", 0, 0);
  if (phentsize < (elf->is64 ? 56u : 32u)) return fail(boot, "ELF: e_phentsize %llu too small", phentsize, 0);
  if (phoff > size || (uint64_t)phnum * phentsize > size - phoff)
    return fail(boot, "ELF: program headers beyond the end of the file", 0, 0);
  for (unsigned i = 0; i < phnum; ++i) {
    const uint8_t* p = b + phoff + (uint64_t)i * phentsize;
    struct elf_segment s;
    uint32_t type = le32(p);
    if (elf->is64) {
      s.flags = le32(p + 4);
      s.offset = le64(p + 8);
      s.vaddr = le64(p + 16);
      s.paddr = le64(p + 24);
      s.filesz = le64(p + 32);
      s.memsz = le64(p + 40);
    } else {
      s.offset = le32(p + 4);
      s.vaddr = le32(p + 8);
      s.paddr = le32(p + 12);
      s.filesz = le32(p + 16);
      s.memsz = le32(p + 20);
      s.flags = le32(p + 24);
    }
    if (type != 1 || s.memsz == 0) continue;
    if (s.filesz > s.memsz) return fail(boot, "ELF: segment %llu has p_filesz > p_memsz", i, 0);
    if (s.offset > size || s.filesz > size - s.offset)
      return fail(boot, "ELF: segment %llu extends beyond the end of the file", i, 0);
    if (s.paddr + s.memsz < s.paddr) return fail(boot, "ELF: segment %llu wraps the address space", i, 0);
    if (elf->count == MAX_SEGMENTS) return fail(boot, "ELF: more than %llu loadable segments", MAX_SEGMENTS, 0);
    elf->seg[elf->count++] = s;
  }
  if (elf->count == 0) return fail(boot, "ELF: no loadable segment", 0, 0);
  return true;
}

/* load_elf_segments: the extent goes to boot->image_low/high, the physical entry to boot->entry. */
static bool load_segments(const struct mvl_mem* mem, const uint8_t* image, const struct elf_image* elf,
                          struct mvl_boot* boot) {
  boot->image_low = ~0ull;
  boot->image_high = 0;
  boot->entry = elf->entry;
  for (unsigned i = 0; i < elf->count; ++i) {
    const struct elf_segment* s = &elf->seg[i];
    if (s->paddr < MVL_BOOT_END && s->paddr + s->memsz > MVL_GDT)
      return fail(boot, "ELF: segment at %#llx overlaps the boot area [0x500, 0x9600)", s->paddr, 0);
    if (!mem->write(mem->ctx, s->paddr, image + s->offset, s->filesz) ||
        !mem->zero(mem->ctx, s->paddr + s->filesz, s->memsz - s->filesz))
      return fail(boot, "ELF: segment [%#llx, %#llx) is outside L2's RAM", s->paddr, s->paddr + s->memsz);
    if (s->paddr < boot->image_low) boot->image_low = s->paddr;
    if (s->paddr + s->memsz > boot->image_high) boot->image_high = s->paddr + s->memsz;
    /* A kernel linked high and loaded low enters through the physical address of the
     * executable segment holding the entry point (QEMU's load_elf). */
    if (s->vaddr != s->paddr && (s->flags & 1) && elf->entry >= s->vaddr && elf->entry - s->vaddr < s->filesz)
      boot->entry = elf->entry - s->vaddr + s->paddr;
  }
  return true;
}

/* write_multiboot_info */
static bool write_info(const struct mvl_mem* mem, const struct mvl_request* req, struct mvl_boot* boot) {
  const uint64_t mods_addr = boot->image_low + page_align(boot->image_high - boot->image_low);
  uint64_t strings = mods_addr + (uint64_t)MBI_MOD_SIZE * req->module_count;
  uint32_t mod_strings[MVL_MAX_MODULES];
  uint32_t cmdline = 0, loader_name = 0;
  for (unsigned i = 0; i < req->module_count + 2; ++i) {
    const char* s = i < req->module_count ? req->modules[i].string : i == req->module_count ? req->cmdline : "nestvm";
    const uint64_t len = strlen(s) + 1;
    if (strings + len > FOUR_GIB || !mem->write(mem->ctx, strings, s, len))
      return fail(boot, "multiboot: boot information at %#llx does not fit in L2's RAM below 4 GiB", strings, 0);
    if (i < req->module_count) mod_strings[i] = (uint32_t)strings;
    else if (i == req->module_count) cmdline = (uint32_t)strings;
    else loader_name = (uint32_t)strings;
    strings += len;
  }
  uint64_t next = page_align(strings);
  for (unsigned i = 0; i < req->module_count; ++i) {
    const struct mvl_module* m = &req->modules[i];
    const uint64_t start = next, end = start + m->size;
    if (end > FOUR_GIB || !mem->write(mem->ctx, start, m->bytes, m->size))
      return fail(boot, "multiboot: a module (%llu bytes at %#llx) does not fit in L2's RAM below 4 GiB", m->size, start);
    uint8_t mod[MBI_MOD_SIZE];
    put32(mod, (uint32_t)start);
    put32(mod + 4, (uint32_t)end);
    put32(mod + 8, mod_strings[i]);
    put32(mod + 12, 0);
    if (!mem->write(mem->ctx, mods_addr + (uint64_t)MBI_MOD_SIZE * i, mod, sizeof(mod)))
      return fail(boot, "multiboot: module list outside L2's RAM", 0, 0);
    next = page_align(end);
  }
  uint8_t mmap[MVL_MAX_MMAP * MBI_MMAP_ENTRY_SIZE];
  uint32_t mmap_length = 0;
  for (unsigned i = 0; i < req->mmap_count; ++i) {
    uint8_t* e = mmap + mmap_length;
    put32(e, MBI_MMAP_ENTRY_SIZE - 4);
    put64(e + 4, req->mmap[i].addr);
    put64(e + 12, req->mmap[i].len);
    put32(e + 20, req->mmap[i].type);
    mmap_length += MBI_MMAP_ENTRY_SIZE;
  }
  if (MVL_MMAP + mmap_length > MVL_MBI || !mem->write(mem->ctx, MVL_MMAP, mmap, mmap_length))
    return fail(boot, "multiboot: cannot write the memory map", 0, 0);
  uint8_t info[MBI_SIZE];
  memset(info, 0, sizeof(info));
  put32(info + 0, MBI_FLAGS);
  put32(info + 4, req->mem_lower);
  put32(info + 8, req->mem_upper);
  put32(info + 12, 0x8000ffffu); /* first BIOS disk, no partition (as QEMU) */
  put32(info + 16, cmdline);
  put32(info + 20, req->module_count);
  put32(info + 24, (uint32_t)mods_addr);
  put32(info + 44, mmap_length);
  put32(info + 48, MVL_MMAP);
  put32(info + 64, loader_name);
  if (!mem->write(mem->ctx, MVL_MBI, info, sizeof(info))) return fail(boot, "multiboot: cannot write the boot information", 0, 0);
  boot->eax = MB_BOOTLOADER_MAGIC;
  boot->ebx = MVL_MBI;
  return true;
}

/* boot_cpu.cpp's descriptor() and write_gdt(). */
static uint64_t descriptor(uint32_t base, uint32_t limit_pages, uint32_t access) {
  return (uint64_t)(limit_pages & 0xffff) | ((uint64_t)(base & 0xffffff) << 16) | ((uint64_t)(access & 0xff) << 40) |
         ((uint64_t)((limit_pages >> 16) & 0xf) << 48) | ((uint64_t)((access >> 12) & 0xf) << 52) |
         ((uint64_t)(base >> 24) << 56);
}

static bool write_boot_tables(const struct mvl_mem* mem, bool long_mode, struct mvl_boot* boot) {
  uint64_t gdt[6];
  gdt[0] = 0;
  gdt[1] = descriptor(0, 0xfffff, MVL_AR_CODE32);
  gdt[2] = descriptor(0, 0xfffff, MVL_AR_DATA);
  gdt[3] = descriptor(0, 0xfffff, MVL_AR_CODE64);
  gdt[4] = descriptor(MVL_TSS, MVL_TSS_LIMIT, MVL_AR_TSS_BUSY);
  gdt[5] = 0;
  if (!mem->write(mem->ctx, MVL_GDT, gdt, sizeof(gdt)) || !mem->zero(mem->ctx, MVL_TSS, MVL_TSS_LIMIT + 1))
    return fail(boot, "cannot write the boot GDT: no RAM below 64 KiB", 0, 0);
  if (!long_mode) return true;
  /* PML4[0] -> PDPT, PDPT[0..3] -> four page directories of 2 MiB pages: 4 GiB, identity. */
  const uint64_t pml4e = (MVL_PML4 + 0x1000) | 3;
  bool ok = mem->zero(mem->ctx, MVL_PML4, 2 * PAGE) && mem->write(mem->ctx, MVL_PML4, &pml4e, 8);
  for (uint64_t i = 0; ok && i < 4; ++i) {
    const uint64_t pdpte = (MVL_PML4 + 0x2000 + 0x1000 * i) | 3;
    ok = mem->write(mem->ctx, MVL_PML4 + 0x1000 + 8 * i, &pdpte, 8);
  }
  uint64_t pd[512];
  for (uint64_t d = 0; ok && d < 4; ++d) {
    for (uint64_t i = 0; i < 512; ++i) pd[i] = ((d * 512 + i) << 21) | 0x83;
    ok = mem->write(mem->ctx, MVL_PML4 + 0x2000 + 0x1000 * d, pd, sizeof(pd));
  }
  if (!ok) return fail(boot, "cannot write the boot page tables: no RAM below 64 KiB", 0, 0);
  return true;
}

/* load_aout_kludge */
static bool load_aout(const struct mvl_mem* mem, const struct mvl_request* req, const struct mb_header* h,
                      struct mvl_boot* boot) {
  if (h->header_addr < h->load_addr) return fail(boot, "multiboot: invalid load_addr (above header_addr)", 0, 0);
  const int64_t text_offset_signed = (int64_t)h->offset - (int64_t)(h->header_addr - h->load_addr);
  if (text_offset_signed < 0) return fail(boot, "multiboot: header_addr - load_addr is beyond the file's start", 0, 0);
  const uint64_t text_offset = (uint64_t)text_offset_signed;
  uint64_t load_size;
  if (h->load_end_addr) {
    if (h->load_end_addr < h->load_addr) return fail(boot, "multiboot: invalid load_end_addr (below load_addr)", 0, 0);
    load_size = h->load_end_addr - h->load_addr;
  } else {
    load_size = req->kernel_size - text_offset;
  }
  if (text_offset + load_size > req->kernel_size)
    return fail(boot, "multiboot: load_end_addr asks for more than the file holds", 0, 0);
  uint64_t image_size = load_size;
  if (h->bss_end_addr) {
    if (h->bss_end_addr < h->load_addr + load_size) return fail(boot, "multiboot: invalid bss_end_addr (below the image)", 0, 0);
    image_size = h->bss_end_addr - h->load_addr;
  }
  const uint64_t low = h->load_addr, high = low + image_size;
  if (low < MVL_BOOT_END && high > MVL_GDT)
    return fail(boot, "multiboot: image at %#llx overlaps the boot area [0x500, 0x9600)", low, 0);
  if (!mem->write(mem->ctx, low, req->kernel + text_offset, load_size))
    return fail(boot, "multiboot: image [%#llx, %#llx) is outside L2's RAM", low, high);
  if (!mem->zero(mem->ctx, low + load_size, image_size - load_size))
    return fail(boot, "multiboot: bss [%#llx, %#llx) is outside L2's RAM", low + load_size, high);
  boot->protocol = "multiboot (a.out kludge)";
  boot->image_low = low;
  boot->image_high = high;
  boot->entry = h->entry_addr;
  return true;
}

bool mvl_load(const struct mvl_mem* mem, const struct mvl_request* req, struct mvl_boot* boot) {
  memset(boot, 0, sizeof(*boot));
  if (req->module_count > MVL_MAX_MODULES) return fail(boot, "more than %llu modules", MVL_MAX_MODULES, 0);
  if (req->mmap_count > MVL_MAX_MMAP) return fail(boot, "more than %llu memory-map entries", MVL_MAX_MMAP, 0);
  const struct mb_header h = find_header(req->kernel, req->kernel_size);
  static struct elf_image elf; /* large: not on the stack */
  if (h.found) {
    /* load_multiboot */
    if (h.flags & MB_FLAG_AOUT_KLUDGE) {
      if ((uint64_t)h.offset + 32 > req->kernel_size) return fail(boot, "multiboot: header address fields beyond the file", 0, 0);
      if (!load_aout(mem, req, &h, boot)) return false;
    } else {
      if (!parse_elf(req->kernel, req->kernel_size, &elf, boot)) return false;
      if (!load_segments(mem, req->kernel, &elf, boot)) return false;
      if (boot->entry > 0xffffffffull) return fail(boot, "multiboot: entry point %#llx is not a 32-bit address", boot->entry, 0);
      boot->protocol = elf.is64 ? "multiboot (ELF64)" : "multiboot (ELF32)";
    }
    return write_info(mem, req, boot) && write_boot_tables(mem, false, boot);
  }
  if (is_elf(req->kernel, req->kernel_size)) {
    /* load_plain_elf */
    if (!parse_elf(req->kernel, req->kernel_size, &elf, boot) || !load_segments(mem, req->kernel, &elf, boot)) return false;
    if (boot->entry >= FOUR_GIB) return fail(boot, "ELF: entry point %#llx is not below 4 GiB", boot->entry, 0);
    boot->long_mode = elf.is64;
    boot->protocol = elf.is64 ? "ELF64 (64-bit entry)" : "ELF32 (32-bit entry)";
    return write_info(mem, req, boot) && write_boot_tables(mem, elf.is64, boot);
  }
  if (req->kernel_size >= 0x206 && !memcmp(req->kernel + 0x202, "HdrS", 4))
    return fail(boot, "a Linux kernel (bzImage): the Linux boot protocol is not supported yet", 0, 0);
  /* load_flat */
  if (req->kernel_size == 0) return fail(boot, "the kernel image is empty", 0, 0);
  if (!mem->write(mem->ctx, FLAT_LOAD_ADDRESS, req->kernel, req->kernel_size))
    return fail(boot, "flat binary of %llu bytes does not fit in L2's RAM at %#llx", req->kernel_size, FLAT_LOAD_ADDRESS);
  boot->protocol = "flat binary";
  boot->image_low = FLAT_LOAD_ADDRESS;
  boot->image_high = FLAT_LOAD_ADDRESS + req->kernel_size;
  boot->entry = FLAT_LOAD_ADDRESS;
  return write_info(mem, req, boot) && write_boot_tables(mem, false, boot);
}

/* The hand-over (loader.h, src/vmm/level.h). */

static bool copy_string(const struct mvl_l1* l1, uint64_t gpa, char* dst, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    const char* c = (const char*)l1->ptr(l1->ctx, gpa + i, 1);
    if (!c) return false;
    dst[i] = *c;
    if (!*c) return true;
  }
  return false;
}

static uint64_t parse_number(const char** p) {
  uint64_t v = 0;
  const char* s = *p;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    for (s += 2;; ++s) {
      const char c = *s;
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) break;
      v = v * 16 + (uint64_t)d;
    }
  } else {
    for (; *s >= '0' && *s <= '9'; ++s) v = v * 10 + (uint64_t)(*s - '0');
  }
  *p = s;
  return v;
}

static bool herr(char* error, size_t size, const char* what) {
  snprintf(error, size, "%s", what);
  return false;
}

bool mvl_handover_parse(const struct mvl_l1* l1, uint32_t mbi_addr, uint64_t image_end,
                        struct mvl_handover* out, char* error, size_t error_size) {
  memset(out, 0, sizeof(*out));
  const uint8_t* mbi = (const uint8_t*)l1->ptr(l1->ctx, mbi_addr, MBI_SIZE);
  if (!mbi) return herr(error, error_size, "no multiboot information");
  const uint32_t flags = le32(mbi);
  const uint32_t need = 1u << 0 | 1u << 2 | 1u << 3 | 1u << 6;
  if ((flags & need) != need)
    return herr(error, error_size, "the multiboot information lacks memory sizes, command line, modules or memory map");

  /* The memory map: the minivisor's RAM is the available range holding its image. */
  const uint32_t mmap_length = le32(mbi + 44), mmap_addr = le32(mbi + 48);
  struct mvl_mmap_entry l1_map[MVL_MAX_MMAP];
  unsigned n = 0;
  for (uint64_t p = mmap_addr; p + 4 <= (uint64_t)mmap_addr + mmap_length;) {
    const uint8_t* e = (const uint8_t*)l1->ptr(l1->ctx, p, 24);
    if (!e || le32(e) < 20) return herr(error, error_size, "malformed memory map");
    if (n == MVL_MAX_MMAP) return herr(error, error_size, "memory map too long");
    l1_map[n].addr = le64(e + 4);
    l1_map[n].len = le64(e + 12);
    l1_map[n].type = le32(e + 20);
    ++n;
    p += (uint64_t)le32(e) + 4;
  }
  /* The RAM nestvm gave the minivisor alone: "private=<address>,<size>" before " -- ". */
  static char l1_cmdline[MVL_CMDLINE_MAX];
  if (!copy_string(l1, le32(mbi + 16), l1_cmdline, sizeof(l1_cmdline))) return herr(error, error_size, "command line too long");
  const char* append = NULL;
  for (const char* s = l1_cmdline; *s && !append; ++s)
    if (s[0] == ' ' && s[1] == '-' && s[2] == '-' && (s[3] == ' ' || s[3] == 0)) append = s[3] ? s + 4 : s + 3;
  if (!append) return herr(error, error_size, "the command line has no \" -- \" before L2's -append");
  for (const char* s = l1_cmdline; s < append; ++s)
    if ((s == l1_cmdline || s[-1] == ' ') && !strncmp(s, "private=", 8)) {
      const char* p = s + 8;
      out->own_low = parse_number(&p);
      if (*p == ',') {
        ++p;
        out->own_high = out->own_low + parse_number(&p);
      }
    }
  bool listed = false;
  for (unsigned i = 0; i < n; ++i)
    if (l1_map[i].type == 1 && l1_map[i].addr == out->own_low && l1_map[i].addr + l1_map[i].len == out->own_high)
      listed = true;
  if (!listed || out->own_high <= out->own_low)
    return herr(error, error_size, "no private=<address>,<size> naming an available range of the memory map");
  for (unsigned i = 0; i < n; ++i) {
    /* L1's map less the minivisor's RAM: what is left of each entry on either side of it. */
    const uint64_t a = l1_map[i].addr, b = a + l1_map[i].len;
    uint64_t parts[2][2] = {{a, b}, {0, 0}};
    if (a < out->own_high && out->own_low < b) {
      parts[0][1] = a < out->own_low ? out->own_low : a;
      parts[1][0] = out->own_high < b ? out->own_high : b;
      parts[1][1] = b;
    }
    for (unsigned k = 0; k < 2; ++k) {
      if (parts[k][0] >= parts[k][1]) continue;
      if (out->req.mmap_count == MVL_MAX_MMAP) return herr(error, error_size, "memory map too long");
      struct mvl_mmap_entry* e = &out->mmap[out->req.mmap_count++];
      e->addr = parts[k][0];
      e->len = parts[k][1] - parts[k][0];
      e->type = l1_map[i].type;
      if (e->type == 1 && e->addr + e->len <= FOUR_GIB && e->addr + e->len > out->l2_low_ram_top)
        out->l2_low_ram_top = e->addr + e->len;
    }
  }
  out->req.mmap = out->mmap;
  out->req.mem_lower = le32(mbi + 4);
  out->req.mem_upper = le32(mbi + 8);

  /* Module 0 is the kernel; the others are its modules. */
  const uint32_t mods_count = le32(mbi + 20), mods_addr = le32(mbi + 24);
  if (mods_count == 0) return herr(error, error_size, "no kernel: nestvm passes it as the first module");
  if (mods_count - 1 > MVL_MAX_MODULES) return herr(error, error_size, "too many modules");
  uint64_t free_low = image_end;
  static char kernel_name[MVL_CMDLINE_MAX];
  for (uint32_t i = 0; i < mods_count; ++i) {
    const uint8_t* m = (const uint8_t*)l1->ptr(l1->ctx, mods_addr + (uint64_t)MBI_MOD_SIZE * i, MBI_MOD_SIZE);
    if (!m) return herr(error, error_size, "module list outside L1's memory");
    const uint32_t start = le32(m), end = le32(m + 4);
    if (end < start) return herr(error, error_size, "a module ends before it starts");
    const uint8_t* bytes = (const uint8_t*)l1->ptr(l1->ctx, start, end - start);
    if (!bytes && end > start) return herr(error, error_size, "a module lies outside L1's memory");
    char* name = i == 0 ? kernel_name : out->module_strings[i - 1];
    const size_t name_size = i == 0 ? sizeof(kernel_name) : sizeof(out->module_strings[0]);
    if (!copy_string(l1, le32(m + 8), name, name_size)) return herr(error, error_size, "a module's string is too long");
    if (end > free_low) free_low = end;
    if (i == 0) {
      out->req.kernel = bytes;
      out->req.kernel_size = end - start;
    } else {
      struct mvl_module* mod = &out->modules[i - 1];
      mod->bytes = bytes;
      mod->size = end - start;
      mod->string = name;
    }
  }
  out->req.modules = out->modules;
  out->req.module_count = mods_count - 1;
  out->free_low = page_align(free_low);

  /* L2's command line: "<kernel name> <append>". */
  const size_t name_len = strlen(kernel_name), append_len = strlen(append);
  if (name_len + 1 + append_len + 1 > sizeof(out->cmdline)) return herr(error, error_size, "L2's command line is too long");
  memcpy(out->cmdline, kernel_name, name_len);
  out->cmdline[name_len] = ' ';
  memcpy(out->cmdline + name_len + 1, append, append_len + 1);
  out->req.cmdline = out->cmdline;
  return true;
}
