#include "vmm/level.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "vmm/loader/multiboot.h"

namespace nestvm::vmm {

uint64_t level_private_ram(unsigned level) { return level == 2 ? kMinivisorSize : 0; }

Result<KernelImage> level_kernel(unsigned level, const KernelImage& user, std::span<const uint8_t> minivisor,
                                 std::string& append) {
  if (level != 2) return user;
  if (minivisor.empty()) return Error{"--level 2: this build has no built-in minivisor"};
  KernelImage l1;
  l1.name = "minivisor";
  l1.bytes.assign(minivisor.begin(), minivisor.end());
  l1.modules.push_back({user.name, user.bytes});
  for (const BootModule& m : user.modules) l1.modules.push_back(m);
  append = fmt::format("private={:#x},{:#x} -- {}", kMinivisorBase, kMinivisorSize, append);
  return l1;
}

Result<Ok> add_level_ram(hv::GuestMemory& mem, unsigned level) {
  if (level != 2) return Ok{};
  mem.add_slot(kMinivisorBase, kMinivisorSize);
  return Ok{};
}

Result<Ok> describe_level_ram(hv::GuestMemory& mem, unsigned level, const BootState& boot) {
  if (level != 2) return Ok{};
  if (!boot.info_addr) return Error{"--level 2: the minivisor was not booted through multiboot"};
  uint32_t length = 0, addr = 0;
  if (!mem.read(boot.info_addr + mbi::kMmapLength, &length, 4) || !mem.read(boot.info_addr + mbi::kMmapAddr, &addr, 4))
    return Error{"--level 2: cannot read the multiboot information"};
  struct Entry {
    uint64_t base, len;
    uint32_t type;
  };
  std::vector<Entry> entries;
  for (uint32_t off = 0; off + mbi::kMmapEntrySize <= length; off += mbi::kMmapEntrySize) {
    uint8_t raw[mbi::kMmapEntrySize];
    if (!mem.read(addr + off, raw, sizeof(raw))) return Error{"--level 2: cannot read the memory map"};
    Entry e;
    std::memcpy(&e.base, raw + 4, 8);
    std::memcpy(&e.len, raw + 12, 8);
    std::memcpy(&e.type, raw + 20, 4);
    entries.push_back(e);
  }
  entries.push_back({kMinivisorBase, kMinivisorSize, uint32_t(E820Type::kRam)});
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.base < b.base; });
  std::vector<uint8_t> out;
  for (const Entry& e : entries) {
    uint8_t raw[mbi::kMmapEntrySize];
    const uint32_t size = mbi::kMmapEntrySize - 4;
    std::memcpy(raw, &size, 4);
    std::memcpy(raw + 4, &e.base, 8);
    std::memcpy(raw + 12, &e.len, 8);
    std::memcpy(raw + 20, &e.type, 4);
    out.insert(out.end(), raw, raw + sizeof(raw));
  }
  const uint32_t new_length = uint32_t(out.size());
  if (addr + out.size() > boot_layout::kMbi || !mem.write(addr, out.data(), out.size()) ||
      !mem.write(boot.info_addr + mbi::kMmapLength, &new_length, 4))
    return Error{"--level 2: cannot write the memory map"};
  return Ok{};
}

}  // namespace nestvm::vmm
