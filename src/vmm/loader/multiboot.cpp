#include "vmm/loader/multiboot.h"

#include <fmt/core.h>

#include <array>
#include <cstring>

#include "vmm/loader/elf.h"

namespace nestvm::vmm {

namespace {

constexpr uint64_t kPage = 4096;
uint64_t page_align(uint64_t a) { return (a + kPage - 1) & ~(kPage - 1); }

uint32_t le32(std::span<const uint8_t> b, uint64_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, 4);
  return v;
}

void put32(std::array<uint8_t, mbi::kSize>& info, unsigned off, uint32_t v) { std::memcpy(&info[off], &v, 4); }

// The a.out kludge (spec §3.1.3): [load_addr, load_end_addr) comes from the file at the
// header's offset minus (header_addr - load_addr); bss up to bss_end_addr is zeroed. The checks
// are QEMU's.
Result<BootState> load_aout_kludge(hv::GuestMemory& mem, const BootRequest& req, const MultibootHeader& h) {
  if (h.header_addr < h.load_addr) return Error{"multiboot: invalid load_addr (above header_addr)"};
  const uint64_t text_offset_signed = int64_t(h.offset) - int64_t(h.header_addr - h.load_addr);
  if (int64_t(text_offset_signed) < 0) return Error{"multiboot: header_addr - load_addr is beyond the file's start"};
  const uint64_t text_offset = text_offset_signed;
  uint64_t load_size;
  if (h.load_end_addr) {
    if (h.load_end_addr < h.load_addr) return Error{"multiboot: invalid load_end_addr (below load_addr)"};
    load_size = h.load_end_addr - h.load_addr;
  } else {
    load_size = req.kernel.size() - text_offset;  // to the end of the file
  }
  if (text_offset + load_size > req.kernel.size())
    return Error{"multiboot: load_end_addr asks for more than the file holds"};
  uint64_t image_size = load_size;
  if (h.bss_end_addr) {
    if (h.bss_end_addr < h.load_addr + load_size) return Error{"multiboot: invalid bss_end_addr (below the image)"};
    image_size = h.bss_end_addr - h.load_addr;
  }
  const uint64_t low = h.load_addr, high = low + image_size;
  if (low < boot_layout::kEnd && high > boot_layout::kGdt)
    return Error{fmt::format("multiboot: image at {:#x} overlaps nestvm's boot area [{:#x}, {:#x})", low,
                             boot_layout::kGdt, boot_layout::kEnd)};
  if (!mem.write(low, req.kernel.data() + text_offset, load_size))
    return Error{fmt::format("multiboot: image [{:#x}, {:#x}) is outside guest RAM", low, high)};
  std::array<uint8_t, 4096> zeros{};
  for (uint64_t a = low + load_size; a < high; a += zeros.size())
    if (!mem.write(a, zeros.data(), std::min<uint64_t>(zeros.size(), high - a)))
      return Error{fmt::format("multiboot: bss [{:#x}, {:#x}) is outside guest RAM", low + load_size, high)};
  BootState st;
  st.protocol = "multiboot (a.out kludge)";
  st.image_low = low;
  st.image_high = high;
  st.cpu.rip = h.entry_addr;
  return st;
}

Result<BootState> load_multiboot_elf(hv::GuestMemory& mem, const BootRequest& req) {
  auto elf = parse_elf(req.kernel);
  if (!elf) return Error{fmt::format("multiboot: the image has no address fields (flag 16) and is not a loadable "
                                     "ELF: {}", elf.error())};
  auto ext = load_elf_segments(mem, req.kernel, *elf);
  if (!ext) return Error{"multiboot: " + ext.error()};
  if (ext->entry > 0xffffffffull)
    return Error{fmt::format("multiboot: entry point {:#x} is not a 32-bit address", ext->entry)};
  BootState st;
  st.protocol = elf->is64 ? "multiboot (ELF64)" : "multiboot (ELF32)";
  st.image_low = ext->low;
  st.image_high = ext->high;
  st.cpu.rip = ext->entry;
  return st;
}

}  // namespace

std::optional<MultibootHeader> find_multiboot_header(std::span<const uint8_t> image) {
  const uint64_t limit = std::min<uint64_t>(image.size(), kMultibootSearchLimit);
  for (uint64_t off = 0; off + 12 <= limit; off += 4) {
    if (le32(image, off) != kMultibootHeaderMagic) continue;
    const uint32_t flags = le32(image, off + 4);
    if (uint32_t(kMultibootHeaderMagic + flags + le32(image, off + 8)) != 0) continue;
    MultibootHeader h;
    h.offset = uint32_t(off);
    h.flags = flags;
    if ((flags & mb_header_flag::kAoutKludge) && off + 32 <= image.size()) {
      h.header_addr = le32(image, off + 12);
      h.load_addr = le32(image, off + 16);
      h.load_end_addr = le32(image, off + 20);
      h.bss_end_addr = le32(image, off + 24);
      h.entry_addr = le32(image, off + 28);
    }
    return h;
  }
  return std::nullopt;
}

Result<BootState> load_multiboot(hv::GuestMemory& mem, const BootRequest& req, const MultibootHeader& h) {
  Result<BootState> loaded = Error{};
  if (h.flags & mb_header_flag::kAoutKludge) {
    if (uint64_t(h.offset) + 32 > req.kernel.size()) return Error{"multiboot: header address fields beyond the file"};
    loaded = load_aout_kludge(mem, req, h);
  } else {
    loaded = load_multiboot_elf(mem, req);
  }
  if (!loaded) return loaded;
  BootState& st = *loaded;
  if (h.flags & mb_header_flag::kVideoMode)
    st.warnings.push_back("multiboot: the kernel asks for a video mode; nestvm has no display (ignored, as QEMU)");
  auto info = write_multiboot_info(mem, req, st.image_low, st.image_high);
  if (!info) return Error{info.error()};
  auto cpu = boot_protected_mode(mem, uint32_t(st.cpu.rip));
  if (!cpu) return Error{cpu.error()};
  st.cpu = *cpu;
  // Spec §3.2: EAX holds the magic value, EBX the information structure's physical address.
  st.cpu.gpr[cpu::kRax] = kMultibootBootloaderMagic;
  st.cpu.gpr[cpu::kRbx] = *info;
  st.info_addr = *info;
  return loaded;
}

Result<uint32_t> write_multiboot_info(hv::GuestMemory& mem, const BootRequest& req, uint64_t image_low,
                                      uint64_t image_high) {
  // hw/i386/multiboot.c: after the image (rounded up to a page from its start) come the module
  // list, the module command lines, the kernel's command line and the boot loader's name; the
  // modules follow, each on a page boundary.
  const uint64_t mods_addr = image_low + page_align(image_high - image_low);
  uint64_t strings = mods_addr + uint64_t(mbi::kModSize) * req.modules.size();
  auto add_string = [&](const std::string& s) -> Result<uint32_t> {
    const uint64_t at = strings;
    if (at + s.size() + 1 > PcRamLayout::kFourGiB || !mem.write(at, s.c_str(), s.size() + 1))
      return Error{fmt::format("multiboot: boot information at {:#x} does not fit in guest RAM below 4 GiB", at)};
    strings += s.size() + 1;
    return uint32_t(at);
  };
  std::vector<uint32_t> mod_cmdlines;
  for (const BootModule& m : req.modules) {
    auto a = add_string(m.cmdline);
    if (!a) return Error{a.error()};
    mod_cmdlines.push_back(*a);
  }
  // The command line as QEMU builds it: the kernel's file name, a space, then -append's text,
  // since guests read the first word as their program name.
  auto cmdline = add_string(req.kernel_name + " " + req.append);
  if (!cmdline) return Error{cmdline.error()};
  auto loader_name = add_string(kBootLoaderName);
  if (!loader_name) return Error{loader_name.error()};

  uint64_t next = page_align(strings);
  for (size_t i = 0; i < req.modules.size(); ++i) {
    const BootModule& m = req.modules[i];
    const uint64_t start = next, end = start + m.bytes.size();
    if (end > PcRamLayout::kFourGiB || !mem.write(start, m.bytes.data(), m.bytes.size()))
      return Error{fmt::format("multiboot: module '{}' ({} bytes at {:#x}) does not fit in guest RAM below 4 GiB",
                               m.cmdline, m.bytes.size(), start)};
    const std::array<uint32_t, 4> mod = {uint32_t(start), uint32_t(end), mod_cmdlines[i], 0};
    if (!mem.write(mods_addr + mbi::kModSize * i, mod.data(), sizeof(mod)))
      return Error{"multiboot: module list outside guest RAM"};
    next = page_align(end);
  }

  // The memory map (spec §3.3, mmap_*): entries of size 20 preceded by their size field.
  const std::vector<E820Entry> e820 = pc_e820_map(req.ram);
  std::vector<uint8_t> mmap;
  for (const E820Entry& e : e820) {
    uint8_t entry[mbi::kMmapEntrySize];
    const uint32_t size = mbi::kMmapEntrySize - 4, type = uint32_t(e.type);
    std::memcpy(entry, &size, 4);
    std::memcpy(entry + 4, &e.addr, 8);
    std::memcpy(entry + 12, &e.size, 8);
    std::memcpy(entry + 20, &type, 4);
    mmap.insert(mmap.end(), entry, entry + sizeof(entry));
  }
  if (boot_layout::kMmap + mmap.size() > boot_layout::kMbi || !mem.write(boot_layout::kMmap, mmap.data(), mmap.size()))
    return Error{"multiboot: cannot write the memory map"};

  std::array<uint8_t, mbi::kSize> info{};
  put32(info, mbi::kFlags, mbi::kFlagMemory | mbi::kFlagBootDevice | mbi::kFlagCmdline | mbi::kFlagMods |
                               mbi::kFlagMmap | mbi::kFlagBootLoaderName);
  // mem_lower: KiB from 0 (640); mem_upper: KiB from 1 MiB to the first hole (QEMU: all low RAM).
  put32(info, mbi::kMemLower, uint32_t(pc_layout::kConventionalEnd / 1024));
  put32(info, mbi::kMemUpper, uint32_t(req.ram.below_4g / 1024 - 1024));
  put32(info, mbi::kBootDevice, 0x8000ffff);  // first BIOS disk, no partition (as QEMU)
  put32(info, mbi::kCmdline, *cmdline);
  put32(info, mbi::kModsCount, uint32_t(req.modules.size()));
  put32(info, mbi::kModsAddr, uint32_t(mods_addr));
  put32(info, mbi::kMmapLength, uint32_t(mmap.size()));
  put32(info, mbi::kMmapAddr, uint32_t(boot_layout::kMmap));
  put32(info, mbi::kBootLoaderName, *loader_name);
  if (!mem.write(boot_layout::kMbi, info.data(), info.size())) return Error{"multiboot: cannot write the boot information"};
  return uint32_t(boot_layout::kMbi);
}

}  // namespace nestvm::vmm
