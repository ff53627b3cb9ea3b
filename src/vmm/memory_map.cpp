#include "vmm/memory_map.h"

#include <algorithm>

namespace nestvm::vmm {

PcRamLayout pc_ram_layout(uint64_t ram_bytes) {
  // pc_init1: max-ram-below-4g is 0xe0000000; a machine that must split moves the split down
  // to 3 GiB so that the high part starts gigabyte-aligned.
  constexpr uint64_t kMaxBelow4g = 0xe0000000;
  constexpr uint64_t kGigabyteSplit = 0xc0000000;
  if (ram_bytes >= kMaxBelow4g) return {kGigabyteSplit, ram_bytes - kGigabyteSplit};
  return {ram_bytes, 0};
}

std::vector<E820Entry> pc_e820_map(const PcRamLayout& ram) {
  using namespace pc_layout;
  std::vector<E820Entry> map;
  // What SeaBIOS reports on QEMU: conventional memory up to the EBDA, the EBDA and the BIOS
  // area reserved, RAM from 1 MiB.
  map.push_back({0, std::min(kEbda, ram.below_4g), E820Type::kRam});
  if (ram.below_4g > kEbda) map.push_back({kEbda, kConventionalEnd - kEbda, E820Type::kReserved});
  if (ram.below_4g > kBiosArea) map.push_back({kBiosArea, kHighMemory - kBiosArea, E820Type::kReserved});
  if (ram.below_4g > kHighMemory) map.push_back({kHighMemory, ram.below_4g - kHighMemory, E820Type::kRam});
  // The IOAPIC and local APIC pages, so that an OS does not put anything there.
  map.push_back({kIoApic, 0x1000, E820Type::kReserved});
  map.push_back({kLapic, 0x1000, E820Type::kReserved});
  if (ram.above_4g) map.push_back({PcRamLayout::kFourGiB, ram.above_4g, E820Type::kRam});
  return map;
}

}  // namespace nestvm::vmm
