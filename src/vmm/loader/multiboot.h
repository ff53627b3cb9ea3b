// Multiboot v1 (Multiboot Specification 0.6.96), as QEMU's loader (hw/i386/multiboot.c) does
// it: the header in the first 8 KiB; the image loaded by its ELF program headers, or by the
// header's address fields when flag 16 (the a.out kludge) is set; the information structure
// with memory sizes, the memory map, the command line "<kernel file> <-append text>", one
// module per -initrd entry placed after the kernel on page boundaries, and the boot loader's
// name; the machine state of spec §3.2 (EAX = 0x2BADB002, EBX = the structure, flat 32-bit
// protected mode, paging off, IF = 0, A20 on).
//
// One difference from QEMU: QEMU refuses an ELF64 image without the a.out kludge ("Cannot load
// x86-64 image, give a 32bit one."); nestvm loads it by its program headers like an ELF32 one
// and enters it the same way, in 32-bit protected mode at its (physical) entry point, which
// must be below 4 GiB. Images meant to run under QEMU too must be ELF32 or use the kludge.
#pragma once
#include <cstdint>
#include <optional>
#include <span>

#include "vmm/loader/loader.h"

namespace nestvm::vmm {

inline constexpr uint32_t kMultibootHeaderMagic = 0x1BADB002;
inline constexpr uint32_t kMultibootBootloaderMagic = 0x2BADB002;
inline constexpr uint32_t kMultibootSearchLimit = 8192;

// Header flags (spec §3.1.2).
namespace mb_header_flag {
inline constexpr uint32_t kPageAlign = 1u << 0;  // modules on 4 KiB boundaries
inline constexpr uint32_t kMemoryInfo = 1u << 1;
inline constexpr uint32_t kVideoMode = 1u << 2;
inline constexpr uint32_t kAoutKludge = 1u << 16;  // the address fields are valid
}  // namespace mb_header_flag

// The information structure (spec §3.3): byte offsets and flags.
namespace mbi {
inline constexpr unsigned kFlags = 0, kMemLower = 4, kMemUpper = 8, kBootDevice = 12, kCmdline = 16,
                          kModsCount = 20, kModsAddr = 24, kMmapLength = 44, kMmapAddr = 48,
                          kBootLoaderName = 64, kSize = 88;
inline constexpr uint32_t kFlagMemory = 1u << 0, kFlagBootDevice = 1u << 1, kFlagCmdline = 1u << 2,
                          kFlagMods = 1u << 3, kFlagMmap = 1u << 6, kFlagBootLoaderName = 1u << 9;
inline constexpr unsigned kModSize = 16;      // mod_start, mod_end, string, reserved
inline constexpr unsigned kMmapEntrySize = 24;  // size (= 20), base_addr, length, type
}  // namespace mbi

inline constexpr const char* kBootLoaderName = "nestvm";

struct MultibootHeader {
  uint32_t offset = 0;  // in the file
  uint32_t flags = 0;
  // Valid with the a.out kludge (flag 16).
  uint32_t header_addr = 0, load_addr = 0, load_end_addr = 0, bss_end_addr = 0, entry_addr = 0;
};

// The first valid header (magic and checksum) on a 4-byte boundary wholly inside the first
// 8 KiB of the image.
std::optional<MultibootHeader> find_multiboot_header(std::span<const uint8_t> image);

Result<BootState> load_multiboot(hv::GuestMemory& mem, const BootRequest& req, const MultibootHeader& header);

// Writes the information structure, the memory map, the command lines, the boot loader name
// and the modules for a kernel occupying [image_low, image_high), in QEMU's layout (module
// list, strings, then the modules, from the first page after the image); returns the
// structure's address. Plain ELF and flat boots pass the same structure.
Result<uint32_t> write_multiboot_info(hv::GuestMemory& mem, const BootRequest& req, uint64_t image_low,
                                      uint64_t image_high);

}  // namespace nestvm::vmm
