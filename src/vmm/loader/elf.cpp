#include "vmm/loader/elf.h"

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "cpu/state.h"
#include "vmm/loader/multiboot.h"

namespace nestvm::vmm {

namespace {

constexpr uint32_t kPtLoad = 1;
constexpr uint32_t kPfX = 1;
constexpr uint16_t kEtExec = 2;

template <typename T>
T get(std::span<const uint8_t> b, uint64_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

Result<Ok> zero_fill(hv::GuestMemory& mem, uint64_t gpa, uint64_t len) {
  static const std::array<uint8_t, 4096> zeros{};
  while (len) {
    const uint64_t n = std::min<uint64_t>(len, zeros.size());
    if (!mem.write(gpa, zeros.data(), n)) return Error{fmt::format("address {:#x} is not RAM", gpa)};
    gpa += n;
    len -= n;
  }
  return Ok{};
}

}  // namespace

bool is_elf(std::span<const uint8_t> image) {
  return image.size() >= 4 && image[0] == 0x7f && image[1] == 'E' && image[2] == 'L' && image[3] == 'F';
}

Result<ElfImage> parse_elf(std::span<const uint8_t> b) {
  if (!is_elf(b) || b.size() < 52) return Error{"not an ELF image"};
  const uint8_t cls = b[4], data = b[5];
  if (cls != 1 && cls != 2) return Error{fmt::format("ELF: invalid class {}", cls)};
  if (data != 1) return Error{"ELF: not little-endian"};
  ElfImage elf;
  elf.is64 = cls == 2;
  if (elf.is64 && b.size() < 64) return Error{"ELF: truncated ELF64 header"};
  const uint16_t type = get<uint16_t>(b, 16);
  elf.machine = get<uint16_t>(b, 18);
  if (type != kEtExec) return Error{fmt::format("ELF: not an executable (e_type {})", type)};
  const uint16_t want = elf.is64 ? kEmX86_64 : kEmI386;
  if (elf.machine != want)
    return Error{fmt::format("ELF: e_machine {} is not {} for an ELF{} image", elf.machine,
                             elf.is64 ? "x86-64 (62)" : "i386 (3)", elf.is64 ? 64 : 32)};
  uint64_t phoff;
  uint16_t phentsize, phnum;
  if (elf.is64) {
    elf.entry = get<uint64_t>(b, 24);
    phoff = get<uint64_t>(b, 32);
    phentsize = get<uint16_t>(b, 54);
    phnum = get<uint16_t>(b, 56);
  } else {
    elf.entry = get<uint32_t>(b, 24);
    phoff = get<uint32_t>(b, 28);
    phentsize = get<uint16_t>(b, 42);
    phnum = get<uint16_t>(b, 44);
  }
  const unsigned min_phent = elf.is64 ? 56 : 32;
  if (phnum == 0) return Error{"ELF: no program headers"};
  if (phentsize < min_phent) return Error{fmt::format("ELF: e_phentsize {} too small", phentsize)};
  if (phoff > b.size() || uint64_t(phnum) * phentsize > b.size() - phoff)
    return Error{"ELF: program headers beyond the end of the file"};
  for (unsigned i = 0; i < phnum; ++i) {
    const uint64_t p = phoff + uint64_t(i) * phentsize;
    ElfSegment s;
    uint32_t ptype;
    if (elf.is64) {
      ptype = get<uint32_t>(b, p);
      s.flags = get<uint32_t>(b, p + 4);
      s.offset = get<uint64_t>(b, p + 8);
      s.vaddr = get<uint64_t>(b, p + 16);
      s.paddr = get<uint64_t>(b, p + 24);
      s.filesz = get<uint64_t>(b, p + 32);
      s.memsz = get<uint64_t>(b, p + 40);
    } else {
      ptype = get<uint32_t>(b, p);
      s.offset = get<uint32_t>(b, p + 4);
      s.vaddr = get<uint32_t>(b, p + 8);
      s.paddr = get<uint32_t>(b, p + 12);
      s.filesz = get<uint32_t>(b, p + 16);
      s.memsz = get<uint32_t>(b, p + 20);
      s.flags = get<uint32_t>(b, p + 24);
    }
    if (ptype != kPtLoad || s.memsz == 0) continue;
    if (s.filesz > s.memsz) return Error{fmt::format("ELF: segment {} has p_filesz > p_memsz", i)};
    if (s.offset > b.size() || s.filesz > b.size() - s.offset)
      return Error{fmt::format("ELF: segment {} extends beyond the end of the file", i)};
    if (s.paddr + s.memsz < s.paddr) return Error{fmt::format("ELF: segment {} wraps the address space", i)};
    elf.segments.push_back(s);
  }
  if (elf.segments.empty()) return Error{"ELF: no loadable segment"};
  return elf;
}

Result<ElfExtent> load_elf_segments(hv::GuestMemory& mem, std::span<const uint8_t> image, const ElfImage& elf) {
  ElfExtent ext{~0ull, 0, elf.entry};
  for (const ElfSegment& s : elf.segments) {
    if (s.paddr < boot_layout::kEnd && s.paddr + s.memsz > boot_layout::kGdt)
      return Error{fmt::format("ELF: segment at {:#x} overlaps nestvm's boot area [{:#x}, {:#x})", s.paddr,
                               boot_layout::kGdt, boot_layout::kEnd)};
    if (!mem.write(s.paddr, image.data() + s.offset, s.filesz))
      return Error{fmt::format("ELF: segment [{:#x}, {:#x}) is outside guest RAM", s.paddr, s.paddr + s.memsz)};
    if (auto z = zero_fill(mem, s.paddr + s.filesz, s.memsz - s.filesz); !z)
      return Error{fmt::format("ELF: segment [{:#x}, {:#x}) is outside guest RAM", s.paddr, s.paddr + s.memsz)};
    ext.low = std::min(ext.low, s.paddr);
    ext.high = std::max(ext.high, s.paddr + s.memsz);
    // hw/core/loader.c (load_elf): the entry in the header is virtual; a kernel linked high
    // and loaded low enters through the physical address of the executable segment holding it.
    if (s.vaddr != s.paddr && (s.flags & kPfX) && elf.entry >= s.vaddr && elf.entry - s.vaddr < s.filesz)
      ext.entry = elf.entry - s.vaddr + s.paddr;
  }
  return ext;
}

Result<BootState> load_plain_elf(hv::GuestMemory& mem, const BootRequest& req, const ElfImage& elf) {
  auto ext = load_elf_segments(mem, req.kernel, elf);
  if (!ext) return Error{ext.error()};
  if (ext->entry >= PcRamLayout::kFourGiB)
    return Error{fmt::format("ELF: entry point {:#x} is not below 4 GiB (the boot identity map)", ext->entry)};
  auto info = write_multiboot_info(mem, req, ext->low, ext->high);
  if (!info) return Error{info.error()};
  auto cpu = elf.is64 ? boot_long_mode(mem, ext->entry) : boot_protected_mode(mem, uint32_t(ext->entry));
  if (!cpu) return Error{cpu.error()};
  BootState st;
  st.cpu = *cpu;
  st.cpu.gpr[cpu::kRax] = kMultibootBootloaderMagic;
  st.cpu.gpr[cpu::kRbx] = *info;
  if (elf.is64) st.cpu.gpr[cpu::kRdi] = *info;
  st.protocol = elf.is64 ? "ELF64 (64-bit entry)" : "ELF32 (32-bit entry)";
  st.info_addr = *info;
  st.image_low = ext->low;
  st.image_high = ext->high;
  return st;
}

}  // namespace nestvm::vmm
