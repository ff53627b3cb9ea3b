// Boot images built byte by byte for the loader tests (ELF32/ELF64 with chosen program
// headers, multiboot headers), and guest RAM laid out as the PC machine lays it out.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "hv/guest_memory.h"
#include "hv/host_memory.h"
#include "vmm/memory_map.h"

namespace nestvm::test {

struct ElfSegmentSpec {
  uint64_t vaddr = 0, paddr = 0;
  std::vector<uint8_t> data;
  uint64_t memsz = 0;  // 0: data.size()
  uint32_t flags = 5;  // PF_R | PF_X
  uint32_t type = 1;   // PT_LOAD
};

inline void put(std::vector<uint8_t>& b, size_t off, const void* v, size_t n) {
  if (b.size() < off + n) b.resize(off + n);
  std::memcpy(b.data() + off, v, n);
}
template <typename T>
void put_le(std::vector<uint8_t>& b, size_t off, T v) {
  put(b, off, &v, sizeof(T));
}

// An executable ELF with the given segments; segment data start at `data_offset` in the file,
// one after the other, each 16-byte aligned.
inline std::vector<uint8_t> make_elf(bool is64, uint16_t machine, uint64_t entry, const std::vector<ElfSegmentSpec>& segs,
                                     size_t data_offset = 0x100) {
  std::vector<uint8_t> b(data_offset, 0);
  const uint8_t ident[16] = {0x7f, 'E', 'L', 'F', uint8_t(is64 ? 2 : 1), 1, 1};
  put(b, 0, ident, 16);
  put_le<uint16_t>(b, 16, 2);  // ET_EXEC
  put_le<uint16_t>(b, 18, machine);
  put_le<uint32_t>(b, 20, 1);
  const size_t ehsize = is64 ? 64 : 52, phentsize = is64 ? 56 : 32;
  if (is64) {
    put_le<uint64_t>(b, 24, entry);
    put_le<uint64_t>(b, 32, ehsize);
    put_le<uint16_t>(b, 52, uint16_t(ehsize));
    put_le<uint16_t>(b, 54, uint16_t(phentsize));
    put_le<uint16_t>(b, 56, uint16_t(segs.size()));
  } else {
    put_le<uint32_t>(b, 24, uint32_t(entry));
    put_le<uint32_t>(b, 28, uint32_t(ehsize));
    put_le<uint16_t>(b, 40, uint16_t(ehsize));
    put_le<uint16_t>(b, 42, uint16_t(phentsize));
    put_le<uint16_t>(b, 44, uint16_t(segs.size()));
  }
  size_t off = data_offset;
  for (size_t i = 0; i < segs.size(); ++i) {
    const ElfSegmentSpec& s = segs[i];
    const size_t ph = ehsize + i * phentsize;
    const uint64_t memsz = s.memsz ? s.memsz : s.data.size();
    if (is64) {
      put_le<uint32_t>(b, ph, s.type);
      put_le<uint32_t>(b, ph + 4, s.flags);
      put_le<uint64_t>(b, ph + 8, off);
      put_le<uint64_t>(b, ph + 16, s.vaddr);
      put_le<uint64_t>(b, ph + 24, s.paddr);
      put_le<uint64_t>(b, ph + 32, s.data.size());
      put_le<uint64_t>(b, ph + 40, memsz);
      put_le<uint64_t>(b, ph + 48, 16);
    } else {
      put_le<uint32_t>(b, ph, s.type);
      put_le<uint32_t>(b, ph + 4, uint32_t(off));
      put_le<uint32_t>(b, ph + 8, uint32_t(s.vaddr));
      put_le<uint32_t>(b, ph + 12, uint32_t(s.paddr));
      put_le<uint32_t>(b, ph + 16, uint32_t(s.data.size()));
      put_le<uint32_t>(b, ph + 20, uint32_t(memsz));
      put_le<uint32_t>(b, ph + 24, s.flags);
      put_le<uint32_t>(b, ph + 28, 16);
    }
    put(b, off, s.data.data(), s.data.size());
    off = (off + s.data.size() + 15) & ~size_t(15);
  }
  return b;
}

// A multiboot header: magic, flags, checksum, then (with flag 16) the five address fields.
inline std::vector<uint8_t> mb_header(uint32_t flags, std::vector<uint32_t> addr_fields = {}) {
  std::vector<uint8_t> b;
  const uint32_t magic = 0x1BADB002;
  put_le<uint32_t>(b, 0, magic);
  put_le<uint32_t>(b, 4, flags);
  put_le<uint32_t>(b, 8, uint32_t(-(magic + flags)));
  for (size_t i = 0; i < addr_fields.size(); ++i) put_le<uint32_t>(b, 12 + 4 * i, addr_fields[i]);
  return b;
}

// Guest RAM of a PC with `ram` bytes, as the machine sets it up.
struct PcRam {
  explicit PcRam(uint64_t ram) : layout(vmm::pc_ram_layout(ram)), host(ram + (16ull << 20)), mem(host) {
    mem.add_slot(0, layout.below_4g);
    if (layout.above_4g) mem.add_slot(vmm::PcRamLayout::kFourGiB, layout.above_4g);
  }
  uint32_t u32(uint64_t gpa) {
    uint32_t v = 0;
    mem.read(gpa, &v, 4);
    return v;
  }
  uint64_t u64(uint64_t gpa) {
    uint64_t v = 0;
    mem.read(gpa, &v, 8);
    return v;
  }
  std::string str(uint64_t gpa) {
    std::string s;
    for (char c; mem.read(gpa, &c, 1) && c; ++gpa) s += c;
    return s;
  }
  std::vector<uint8_t> bytes(uint64_t gpa, size_t n) {
    std::vector<uint8_t> v(n);
    mem.read(gpa, v.data(), n);
    return v;
  }
  vmm::PcRamLayout layout;
  hv::HostMemory host;
  hv::GuestMemory mem;
};

}  // namespace nestvm::test
