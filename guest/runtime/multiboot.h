/* Multiboot v1 boot information (Multiboot Specification 0.6.96, section 3.3). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2badb002

#define MBI_FLAG_MEM (1u << 0)
#define MBI_FLAG_BOOTDEV (1u << 1)
#define MBI_FLAG_CMDLINE (1u << 2)
#define MBI_FLAG_MODS (1u << 3)
#define MBI_FLAG_AOUT_SYMS (1u << 4)
#define MBI_FLAG_ELF_SHDR (1u << 5)
#define MBI_FLAG_MMAP (1u << 6)
#define MBI_FLAG_DRIVES (1u << 7)
#define MBI_FLAG_CONFIG (1u << 8)
#define MBI_FLAG_LOADER_NAME (1u << 9)
#define MBI_FLAG_APM (1u << 10)
#define MBI_FLAG_VBE (1u << 11)

struct multiboot_info {
  uint32_t flags;
  uint32_t mem_lower; /* KiB from 0 */
  uint32_t mem_upper; /* KiB from 1 MiB */
  uint32_t boot_device;
  uint32_t cmdline;
  uint32_t mods_count;
  uint32_t mods_addr;
  uint32_t syms[4];
  uint32_t mmap_length;
  uint32_t mmap_addr;
  uint32_t drives_length;
  uint32_t drives_addr;
  uint32_t config_table;
  uint32_t boot_loader_name;
  uint32_t apm_table;
} __attribute__((packed));

struct multiboot_module {
  uint32_t mod_start;
  uint32_t mod_end;
  uint32_t string;
  uint32_t reserved;
} __attribute__((packed));

/* `size` counts the bytes after itself; the next entry is at (entry + size + 4). */
struct multiboot_mmap_entry {
  uint32_t size;
  uint64_t addr;
  uint64_t len;
  uint32_t type; /* 1 available, 2 reserved, 3 ACPI reclaimable, 4 ACPI NVS, 5 bad */
} __attribute__((packed));

#define MMAP_AVAILABLE 1

/* The information as the loader left it (NULL if EAX did not hold the magic). */
const struct multiboot_info* multiboot_info(void);

/* Calls fn for every memory-map entry; returns the number of entries (0 without a map). */
unsigned multiboot_mmap_foreach(void (*fn)(const struct multiboot_mmap_entry* e, void* ctx), void* ctx);
/* Is [addr, addr + len) inside memory the map calls available? */
bool multiboot_mmap_is_available(uint64_t addr, uint64_t len);

/* Called once by the runtime: copies the command line and splits it into words. */
void multiboot_parse(int* argc, char*** argv);
