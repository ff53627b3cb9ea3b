// ELF images (System V ABI; ELF32 for EM_386, ELF64 for EM_X86_64, little-endian): parsing,
// loading PT_LOAD segments at their physical addresses (p_paddr) as QEMU's load_elf does, and
// booting a plain ELF (one without a multiboot header).
//
// A plain ELF64 kernel is entered in 64-bit mode at CPL 0 with the first 4 GiB identity-mapped
// (2 MiB pages at 0x1000, see loader.h), RDI = EBX = the multiboot information structure and
// EAX = 0x2BADB002; a plain ELF32 kernel is entered like a multiboot one. Either way it gets
// the same command line, modules and memory map as a multiboot kernel.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "vmm/loader/loader.h"

namespace nestvm::vmm {

inline constexpr uint16_t kEmI386 = 3;
inline constexpr uint16_t kEmX86_64 = 62;

struct ElfSegment {
  uint64_t paddr = 0, vaddr = 0, offset = 0, filesz = 0, memsz = 0;
  uint32_t flags = 0;  // PF_X = 1, PF_W = 2, PF_R = 4
};

struct ElfImage {
  bool is64 = false;
  uint16_t machine = 0;
  uint64_t entry = 0;                 // e_entry, as linked (a virtual address)
  std::vector<ElfSegment> segments;  // PT_LOAD with p_memsz > 0
};

bool is_elf(std::span<const uint8_t> image);
// Checks the headers against the file's size; the segments' contents lie inside the file.
Result<ElfImage> parse_elf(std::span<const uint8_t> image);

struct ElfExtent {
  uint64_t low = 0, high = 0;  // physical [low, high) covered by the segments
  uint64_t entry = 0;          // physical entry point
};
// Copies the segments to p_paddr and zeroes p_memsz - p_filesz after each. The entry point is
// translated to physical through the executable segment holding it when p_vaddr != p_paddr
// (QEMU's rule for kernels linked high and loaded low). No segment may touch the boot area
// below boot_layout::kEnd.
Result<ElfExtent> load_elf_segments(hv::GuestMemory& mem, std::span<const uint8_t> image, const ElfImage& elf);

// A plain ELF kernel, booted as described above.
Result<BootState> load_plain_elf(hv::GuestMemory& mem, const BootRequest& req, const ElfImage& elf);

}  // namespace nestvm::vmm
