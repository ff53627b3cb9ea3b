// Kernel loading for -kernel: what every loader takes and what it hands back, and the choice
// between them. A loader writes the image (and the boot information) into guest memory and
// returns the state the bootstrap processor starts in.
//
// The choice, in QEMU's order: a multiboot v1 header in the first 8 KiB makes a multiboot
// boot (multiboot.h); otherwise an ELF image is booted as a plain ELF (elf.h); a Linux bzImage
// is refused (the Linux boot protocol is not implemented yet); anything else is a flat binary
// (flat.h).
//
// Where the boot puts things (below 1 MiB, in conventional memory):
//   0x0500  GDT: 0x08 flat 32-bit code, 0x10 flat data, 0x18 64-bit code, 0x20 TSS descriptor
//   0x0580  the TSS the boot TR points at (zeroed)
//   0x1000  PML4, 0x2000 PDPT, 0x3000-0x6fff page directories (plain ELF64 only)
//   0x9000  the memory map (multiboot mmap entries), 0x9500 the multiboot information
//   0x9f000 initial stack pointer (a courtesy: multiboot leaves ESP undefined)
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cpu/state.h"
#include "hv/guest_memory.h"
#include "vmm/memory_map.h"
#include "vmm/result.h"

namespace nestvm::vmm {

namespace boot_layout {
inline constexpr uint64_t kGdt = 0x500;
inline constexpr uint64_t kTss = 0x580;
inline constexpr uint64_t kPml4 = 0x1000;
inline constexpr uint64_t kPdpt = 0x2000;
inline constexpr uint64_t kPageDirs = 0x3000;  // four, mapping 4 GiB with 2 MiB pages
inline constexpr uint64_t kMmap = 0x9000;       // QEMU's ADDR_E820_MAP
inline constexpr uint64_t kMbi = 0x9500;        // QEMU's ADDR_MBI
inline constexpr uint64_t kEnd = 0x9600;        // end of what the boot writes below 1 MiB
inline constexpr uint64_t kStackTop = 0x9f000;
inline constexpr uint16_t kCode32 = 0x08, kData = 0x10, kCode64 = 0x18, kTssSel = 0x20;
}  // namespace boot_layout

struct BootModule {
  std::string cmdline;  // QEMU passes the -initrd entry as written: "file args"
  std::vector<uint8_t> bytes;
};

struct BootRequest {
  std::string kernel_name;  // as given to -kernel (the first word of a multiboot command line)
  std::span<const uint8_t> kernel;
  std::string append;
  std::vector<BootModule> modules;
  PcRamLayout ram;
};

struct BootState {
  cpu::CpuState cpu;                  // the bootstrap processor's initial state
  std::string protocol;               // "multiboot (ELF32)", "flat binary", ...
  uint64_t info_addr = 0;             // the multiboot information structure
  uint64_t image_low = 0, image_high = 0;  // the kernel's physical extent
  std::vector<std::string> warnings;  // without the "nestvm: warning: " prefix
};

// Picks the loader as described above and runs it.
Result<BootState> load_kernel(hv::GuestMemory& mem, const BootRequest& req);

// Reads a whole file (kernel, module).
Result<std::vector<uint8_t>> read_file(const std::string& path);

// Splits -initrd's text into module entries (",," is a comma) and reads each module's file:
// the entry up to the first space.
Result<std::vector<BootModule>> read_modules(const std::string& initrd);

// Boot CPU states and the tables they use (boot_cpu.cpp).
// 32-bit protected mode as multiboot promises: flat 4 GiB CS (execute/read) and DS, ES, FS, GS,
// SS (read/write), paging off, IF clear; writes the boot GDT and TSS.
Result<cpu::CpuState> boot_protected_mode(hv::GuestMemory& mem, uint32_t eip);
// 64-bit mode at CPL 0 with the first 4 GiB identity-mapped by 2 MiB pages; writes the boot
// GDT, TSS and page tables.
Result<cpu::CpuState> boot_long_mode(hv::GuestMemory& mem, uint64_t rip);

}  // namespace nestvm::vmm
