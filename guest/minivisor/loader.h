/* The minivisor's loader: boots the user's kernel in L2 memory exactly as nestvm's loader boots
 * a kernel as L1 (src/vmm/loader: the multiboot v1 header in the first 8 KiB, then the a.out
 * kludge or the ELF32/ELF64 program headers; a plain ELF32 or ELF64; a flat binary at 1 MiB),
 * with the same multiboot information at the same addresses: mem_lower/mem_upper, the memory
 * map at 0x9000, the structure at 0x9500, the module list, strings and modules after the
 * image, the command line "<kernel name> <append>", the boot GDT at 0x500 and TSS at 0x580, and
 * for a plain ELF64 the identity page tables at 0x1000.
 *
 * Portable C: the minivisor runs it in L1 (where L2's memory is identity-mapped), and the unit
 * tests build it on the host and compare its result with nestvm's loader, byte for byte
 * (tests/unit/vmm/minivisor_loader_test.cpp). Memory is reached only through callbacks. */
#ifndef NESTVM_MINIVISOR_LOADER_H
#define NESTVM_MINIVISOR_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MVL_MAX_MODULES 32
#define MVL_MAX_MMAP 48
#define MVL_CMDLINE_MAX 4096
#define MVL_ERROR_MAX 192

/* Multiboot boot GDT selectors and addresses (src/vmm/loader/loader.h, boot_layout). */
#define MVL_GDT 0x500u
#define MVL_TSS 0x580u
#define MVL_PML4 0x1000u
#define MVL_MMAP 0x9000u
#define MVL_MBI 0x9500u
#define MVL_BOOT_END 0x9600u
#define MVL_STACK_TOP 0x9f000u
#define MVL_SEL_CODE32 0x08
#define MVL_SEL_DATA 0x10
#define MVL_SEL_CODE64 0x18
#define MVL_SEL_TSS 0x20
#define MVL_GDT_LIMIT (6 * 8 - 1)
#define MVL_TSS_LIMIT 0x67
/* VMX-format access rights of those descriptors (SDM Vol. 3 25.4.1, Table 25-2). */
#define MVL_AR_CODE32 0xc09bu
#define MVL_AR_DATA 0xc093u
#define MVL_AR_CODE64 0xa09bu
#define MVL_AR_TSS_BUSY 0x008bu

/* L2 guest-physical memory: write/zero return false when any byte is not L2 RAM. */
struct mvl_mem {
  void* ctx;
  bool (*write)(void* ctx, uint64_t gpa, const void* src, uint64_t len);
  bool (*zero)(void* ctx, uint64_t gpa, uint64_t len);
};

struct mvl_module {
  const uint8_t* bytes;
  uint64_t size;
  const char* string; /* "file args", as -initrd gave it */
};

struct mvl_mmap_entry {
  uint64_t addr, len;
  uint32_t type; /* e820 types: 1 available, 2 reserved, ... */
};

struct mvl_request {
  const uint8_t* kernel;
  uint64_t kernel_size;
  const char* cmdline; /* L2's whole command line: "<kernel name> <append>" */
  const struct mvl_module* modules;
  unsigned module_count;
  const struct mvl_mmap_entry* mmap;
  unsigned mmap_count;
  uint32_t mem_lower, mem_upper; /* KiB */
};

/* How L2's bootstrap processor starts. */
struct mvl_boot {
  uint64_t entry;
  bool long_mode; /* a plain ELF64: 64-bit mode with CR3 = MVL_PML4; otherwise 32-bit protected mode */
  uint32_t eax, ebx; /* multiboot magic and information (RDI = EBX too in long mode) */
  uint64_t image_low, image_high;
  const char* protocol;
  char error[MVL_ERROR_MAX];
};

/* Loads the kernel, its modules and the boot information; false with boot->error set on failure. */
bool mvl_load(const struct mvl_mem* mem, const struct mvl_request* req, struct mvl_boot* boot);

/* L1 memory as the minivisor sees it: a pointer to len readable bytes at gpa, or NULL. */
struct mvl_l1 {
  void* ctx;
  const void* (*ptr)(void* ctx, uint64_t gpa, uint64_t len);
};

/* nestvm's hand-over at --level 2 (src/vmm/level.h), decoded from the multiboot information
 * the minivisor was booted with: module 0 is L2's kernel, named by its string; modules 1.. are
 * L2's modules; the minivisor's command line is "private=<address>,<size> -- <L2's -append>",
 * the private range being RAM the memory map lists for L1 only (L2's map is L1's without it).
 * Everything is copied (L2's boot overwrites L1's information) except the module contents,
 * which stay where nestvm put them, after the minivisor's image (which ends at image_end). */
struct mvl_handover {
  struct mvl_request req;
  struct mvl_module modules[MVL_MAX_MODULES];
  struct mvl_mmap_entry mmap[MVL_MAX_MMAP];
  char cmdline[MVL_CMDLINE_MAX];
  char module_strings[MVL_MAX_MODULES][256];
  uint64_t own_low, own_high;   /* the RAM private to L1 */
  uint64_t free_low;            /* the first page after the minivisor's image, boot information and modules */
  uint64_t l2_low_ram_top;      /* one past L2's RAM below 4 GiB */
};
bool mvl_handover_parse(const struct mvl_l1* l1, uint32_t mbi_addr, uint64_t image_end,
                        struct mvl_handover* out, char* error, size_t error_size);

#ifdef __cplusplus
}
#endif

#endif
