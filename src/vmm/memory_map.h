// The PC's guest-physical memory map, as QEMU's pc machine lays it out (hw/i386/pc_piix.c):
// RAM from 0 up to the PCI hole, the rest of RAM from 4 GiB, and the map firmware reports
// (e820, which multiboot's memory map copies): conventional memory below 640 KiB, the BIOS
// area, RAM from 1 MiB, and the interrupt controllers' MMIO pages.
#pragma once
#include <cstdint>
#include <vector>

namespace nestvm::vmm {

struct PcRamLayout {
  uint64_t below_4g = 0;  // RAM at [0, below_4g)
  uint64_t above_4g = 0;  // RAM at [4 GiB, 4 GiB + above_4g)
  uint64_t total() const { return below_4g + above_4g; }
  // One past the highest RAM address.
  uint64_t top() const { return above_4g ? kFourGiB + above_4g : below_4g; }
  static constexpr uint64_t kFourGiB = 1ull << 32;
};

// QEMU's split for pc (i440FX, gigabyte-aligned since 1.7): with 3.5 GiB of RAM or more, the
// low part is 3 GiB and the rest goes above 4 GiB; otherwise all RAM is low.
PcRamLayout pc_ram_layout(uint64_t ram_bytes);

// e820 types (ACPI 6.4 Table 15.312, "Address Range Types").
enum class E820Type : uint32_t { kRam = 1, kReserved = 2, kAcpi = 3, kNvs = 4 };

struct E820Entry {
  uint64_t addr;
  uint64_t size;
  E820Type type;
};

namespace pc_layout {
inline constexpr uint64_t kConventionalEnd = 0xa0000;  // 640 KiB
inline constexpr uint64_t kEbda = 0x9fc00;             // extended BIOS data area (1 KiB)
inline constexpr uint64_t kBiosArea = 0xe0000;         // ACPI RSDP search area and BIOS
inline constexpr uint64_t kHighMemory = 0x100000;      // 1 MiB
inline constexpr uint64_t kIoApic = 0xfec00000;
inline constexpr uint64_t kLapic = 0xfee00000;
}  // namespace pc_layout

// The map, sorted by address and without overlaps.
std::vector<E820Entry> pc_e820_map(const PcRamLayout& ram);

}  // namespace nestvm::vmm
