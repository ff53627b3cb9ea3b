// The multiboot v1 loader against images built in the test: header search, ELF32 and ELF64
// images, the a.out kludge, the information structure (memory sizes, command line, modules,
// memory map, boot loader name) and the machine state of spec §3.2.
#include "vmm/loader/multiboot.h"

#include <gtest/gtest.h>

#include "arch/cr.h"
#include "arch/rflags.h"
#include "unit/vmm/boot_images.h"
#include "vmm/loader/elf.h"

namespace nestvm::test {
namespace {

using namespace vmm;
using arch::SegReg;

std::vector<uint8_t> code_bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 7);
  return v;
}

// An ELF32 multiboot kernel at 1 MiB: the header, then code; a data segment with bss.
std::vector<uint8_t> mb_elf32(uint64_t entry = 0x100010) {
  std::vector<uint8_t> text = mb_header(0x3);
  const auto code = code_bytes(0x40, 1);
  text.insert(text.end(), code.begin(), code.end());
  return make_elf(false, kEmI386, entry,
                  {{0x100000, 0x100000, text, 0, 5}, {0x102000, 0x102000, code_bytes(0x20, 9), 0x3000, 6}});
}

BootRequest request(PcRam& ram, std::span<const uint8_t> kernel, std::string append = "") {
  BootRequest r;
  r.kernel_name = "kernel.elf";
  r.kernel = kernel;
  r.append = std::move(append);
  r.ram = ram.layout;
  return r;
}

TEST(MultibootHeader, FoundOnFourByteBoundariesInsideTheFirst8KiB) {
  std::vector<uint8_t> img(12000, 0);
  EXPECT_FALSE(find_multiboot_header(img));
  const auto h = mb_header(0x10003);
  put(img, 0x404, h.data(), h.size());
  auto found = find_multiboot_header(img);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->offset, 0x404u);
  EXPECT_EQ(found->flags, 0x10003u);
  // A header ending exactly at 8 KiB is inside; one starting at 8 KiB is not.
  std::vector<uint8_t> edge(12000, 0);
  put(edge, 8192 - 12, h.data(), 12);
  EXPECT_TRUE(find_multiboot_header(edge));
  std::vector<uint8_t> beyond(12000, 0);
  put(beyond, 8192, h.data(), h.size());
  EXPECT_FALSE(find_multiboot_header(beyond));
  // Misaligned: not a header.
  std::vector<uint8_t> odd(12000, 0);
  put(odd, 0x402, h.data(), h.size());
  EXPECT_FALSE(find_multiboot_header(odd));
}

TEST(MultibootHeader, ChecksumMustCancel) {
  auto h = mb_header(0x3);
  h[8] ^= 1;
  std::vector<uint8_t> img(64, 0);
  put(img, 0, h.data(), h.size());
  EXPECT_FALSE(find_multiboot_header(img));
  // The first valid one wins.
  const auto good = mb_header(0x2);
  put(img, 32, good.data(), good.size());
  auto found = find_multiboot_header(img);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->offset, 32u);
}

TEST(MultibootLoader, Elf32SegmentsBssAndMachineState) {
  PcRam ram(128ull << 20);
  // bss must come out zeroed even if RAM held something.
  std::vector<uint8_t> junk(0x3000, 0xcc);
  ram.mem.write(0x102000, junk.data(), junk.size());
  const auto img = mb_elf32();
  auto h = find_multiboot_header(img);
  ASSERT_TRUE(h);
  auto st = load_multiboot(ram.mem, request(ram, img), *h);
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->protocol, "multiboot (ELF32)");
  EXPECT_EQ(ram.bytes(0x10000c, 0x40), code_bytes(0x40, 1));
  EXPECT_EQ(ram.bytes(0x102000, 0x20), code_bytes(0x20, 9));
  EXPECT_EQ(ram.bytes(0x102020, 0x2fe0), std::vector<uint8_t>(0x2fe0, 0));
  EXPECT_EQ(st->image_low, 0x100000u);
  EXPECT_EQ(st->image_high, 0x105000u);
  // Spec §3.2.
  const cpu::CpuState& c = st->cpu;
  EXPECT_EQ(c.gpr[cpu::kRax], 0x2BADB002u);
  EXPECT_EQ(c.gpr[cpu::kRbx], boot_layout::kMbi);
  EXPECT_EQ(c.rip, 0x100010u);
  EXPECT_EQ(c.cr0 & (arch::cr0::kPE | arch::cr0::kPG), arch::cr0::kPE);
  EXPECT_EQ(c.rflags & (arch::rflags::kIF | arch::rflags::kVM), 0u);
  EXPECT_EQ(c.msr.efer, 0u);
  const auto& cs = c.seg[unsigned(SegReg::kCS)];
  EXPECT_EQ(cs.base, 0u);
  EXPECT_EQ(cs.limit, 0xffffffffu);
  EXPECT_EQ(cs.ar & 0xf, 0xbu);               // execute/read, accessed
  EXPECT_TRUE(cs.ar & arch::ar::kDB);         // 32-bit
  for (SegReg r : {SegReg::kDS, SegReg::kES, SegReg::kFS, SegReg::kGS, SegReg::kSS}) {
    const auto& s = c.seg[unsigned(r)];
    EXPECT_EQ(s.base, 0u);
    EXPECT_EQ(s.limit, 0xffffffffu);
    EXPECT_EQ(s.ar & 0xf, 0x3u);  // read/write, accessed
    EXPECT_EQ(s.selector, cs.selector + 8);
  }
  // The GDT behind the selectors holds the same descriptors.
  EXPECT_EQ(ram.u64(c.gdtr.base + cs.selector), 0x00cf9b000000ffffull);
  EXPECT_EQ(ram.u64(c.gdtr.base + c.seg[unsigned(SegReg::kDS)].selector), 0x00cf93000000ffffull);
}

TEST(MultibootLoader, InformationStructure) {
  PcRam ram(128ull << 20);
  const auto img = mb_elf32();
  BootRequest req = request(ram, img, "console=ttyS0 verbose");
  req.modules.push_back({"mod1.bin a b", code_bytes(5000, 3)});
  req.modules.push_back({"mod2.bin", code_bytes(10, 4)});
  auto st = load_multiboot(ram.mem, req, *find_multiboot_header(img));
  ASSERT_TRUE(st) << st.error();
  const uint64_t mbi = st->info_addr;
  EXPECT_EQ(mbi, 0x9500u);
  const uint32_t flags = ram.u32(mbi + mbi::kFlags);
  EXPECT_EQ(flags, (1u << 0) | (1u << 1) | (1u << 2) | (1u << 3) | (1u << 6) | (1u << 9));
  EXPECT_EQ(ram.u32(mbi + mbi::kMemLower), 640u);
  EXPECT_EQ(ram.u32(mbi + mbi::kMemUpper), 128u * 1024 - 1024);
  EXPECT_EQ(ram.u32(mbi + mbi::kBootDevice), 0x8000ffffu);
  // QEMU's command line: the kernel's file name, a space, -append's text.
  EXPECT_EQ(ram.str(ram.u32(mbi + mbi::kCmdline)), "kernel.elf console=ttyS0 verbose");
  EXPECT_EQ(ram.str(ram.u32(mbi + mbi::kBootLoaderName)), "nestvm");
  // Modules: after the kernel, each on a page boundary, with the whole -initrd entry as string.
  ASSERT_EQ(ram.u32(mbi + mbi::kModsCount), 2u);
  const uint32_t mods = ram.u32(mbi + mbi::kModsAddr);
  EXPECT_EQ(mods, 0x105000u);  // the first page after the image
  const uint32_t m0 = ram.u32(mods), m0_end = ram.u32(mods + 4);
  const uint32_t m1 = ram.u32(mods + 16), m1_end = ram.u32(mods + 20);
  EXPECT_EQ(m0 % 4096, 0u);
  EXPECT_EQ(m1 % 4096, 0u);
  EXPECT_GE(m0, mods + 32u);
  EXPECT_EQ(m0_end - m0, 5000u);
  EXPECT_EQ(m1, (m0_end + 4095) & ~4095u);
  EXPECT_EQ(m1_end - m1, 10u);
  EXPECT_EQ(ram.bytes(m0, 5000), code_bytes(5000, 3));
  EXPECT_EQ(ram.bytes(m1, 10), code_bytes(10, 4));
  EXPECT_EQ(ram.str(ram.u32(mods + 8)), "mod1.bin a b");
  EXPECT_EQ(ram.str(ram.u32(mods + 24)), "mod2.bin");
  // The memory map: the PC's e820 map, in entries of size 20.
  const uint32_t mmap = ram.u32(mbi + mbi::kMmapAddr), len = ram.u32(mbi + mbi::kMmapLength);
  const auto e820 = pc_e820_map(ram.layout);
  ASSERT_EQ(len, e820.size() * 24);
  for (size_t i = 0; i < e820.size(); ++i) {
    const uint64_t e = mmap + 24 * i;
    EXPECT_EQ(ram.u32(e), 20u);
    EXPECT_EQ(ram.u64(e + 4), e820[i].addr);
    EXPECT_EQ(ram.u64(e + 12), e820[i].size);
    EXPECT_EQ(ram.u32(e + 20), uint32_t(e820[i].type));
  }
  // RAM below 640K and from 1 MiB to the end of RAM are available.
  EXPECT_EQ(ram.u64(mmap + 4), 0u);
  EXPECT_EQ(ram.u32(mmap + 20), 1u);
  bool high_ram = false;
  for (size_t i = 0; i < e820.size(); ++i)
    if (ram.u64(mmap + 24 * i + 4) == 0x100000 && ram.u64(mmap + 24 * i + 12) == (127ull << 20) &&
        ram.u32(mmap + 24 * i + 20) == 1)
      high_ram = true;
  EXPECT_TRUE(high_ram);
}

TEST(MultibootLoader, EmptyAppendKeepsTheSpaceAsQemu) {
  PcRam ram(64ull << 20);
  const auto img = mb_elf32();
  auto st = load_multiboot(ram.mem, request(ram, img), *find_multiboot_header(img));
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(ram.str(ram.u32(st->info_addr + mbi::kCmdline)), "kernel.elf ");
  EXPECT_EQ(ram.u32(st->info_addr + mbi::kModsCount), 0u);
}

TEST(MultibootLoader, LargeRamSplitsAt3GiBAsQemuPc) {
  PcRam ram(4ull << 30);
  const auto img = mb_elf32();
  auto st = load_multiboot(ram.mem, request(ram, img), *find_multiboot_header(img));
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(ram.u32(st->info_addr + mbi::kMemUpper), 3u * 1024 * 1024 - 1024);
  const uint32_t mmap = ram.u32(st->info_addr + mbi::kMmapAddr), len = ram.u32(st->info_addr + mbi::kMmapLength);
  const uint64_t last = mmap + len - 24;
  EXPECT_EQ(ram.u64(last + 4), 1ull << 32);
  EXPECT_EQ(ram.u64(last + 12), 1ull << 30);
  EXPECT_EQ(ram.u32(last + 20), 1u);
}

TEST(MultibootLoader, Elf64ImageLoadsByProgramHeadersAndEntersIn32BitMode) {
  PcRam ram(64ull << 20);
  std::vector<uint8_t> text = mb_header(0x3);
  const auto code = code_bytes(0x30, 5);
  text.insert(text.end(), code.begin(), code.end());
  const auto img = make_elf(true, kEmX86_64, 0x20000c, {{0x200000, 0x200000, text, 0x2000, 7}});
  auto st = load_multiboot(ram.mem, request(ram, img), *find_multiboot_header(img));
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->protocol, "multiboot (ELF64)");
  EXPECT_EQ(st->cpu.rip, 0x20000cu);
  EXPECT_EQ(st->cpu.msr.efer, 0u);
  EXPECT_TRUE(st->cpu.seg[unsigned(SegReg::kCS)].ar & arch::ar::kDB);
  EXPECT_EQ(ram.bytes(0x20000c, 0x30), code);
  EXPECT_EQ(st->image_high, 0x202000u);
}

TEST(MultibootLoader, EntryOfAKernelLinkedHighIsTranslatedToPhysical) {
  PcRam ram(64ull << 20);
  std::vector<uint8_t> text = mb_header(0x3);
  text.resize(0x40, 0x90);
  const auto img = make_elf(false, kEmI386, 0xc0100020, {{0xc0100000, 0x100000, text, 0, 5}});
  auto st = load_multiboot(ram.mem, request(ram, img), *find_multiboot_header(img));
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->cpu.rip, 0x100020u);
  EXPECT_EQ(ram.bytes(0x100010, 4), std::vector<uint8_t>(4, 0x90));
}

TEST(MultibootLoader, AoutKludgeUsesTheAddressFields) {
  PcRam ram(64ull << 20);
  // A raw image: 0x20 bytes of prologue, the header at file offset 0x20 (address 0x300020),
  // code after it; load from 0x300000 to 0x300100, bss to 0x302000, entry 0x300040.
  std::vector<uint8_t> img = code_bytes(0x20, 2);
  const auto h = mb_header(0x10000, {0x300020, 0x300000, 0x300100, 0x302000, 0x300040});
  img.insert(img.end(), h.begin(), h.end());
  const auto code = code_bytes(0x200, 8);
  img.insert(img.end(), code.begin(), code.end());
  std::vector<uint8_t> junk(0x2000, 0xcc);
  ram.mem.write(0x300000, junk.data(), junk.size());
  auto st = load_multiboot(ram.mem, request(ram, img), *find_multiboot_header(img));
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->protocol, "multiboot (a.out kludge)");
  EXPECT_EQ(st->cpu.rip, 0x300040u);
  EXPECT_EQ(ram.bytes(0x300000, 0x100), std::vector<uint8_t>(img.begin(), img.begin() + 0x100));
  EXPECT_EQ(ram.bytes(0x300100, 0x1f00), std::vector<uint8_t>(0x1f00, 0));
  EXPECT_EQ(st->image_high, 0x302000u);
  EXPECT_EQ(ram.u32(st->info_addr + mbi::kModsAddr), 0x302000u);
}

TEST(MultibootLoader, AoutKludgeWithoutLoadEndLoadsTheRestOfTheFile) {
  PcRam ram(64ull << 20);
  std::vector<uint8_t> img = mb_header(0x10000, {0x400000, 0x400000, 0, 0, 0x400020});
  const auto code = code_bytes(0x1234, 6);
  img.insert(img.end(), code.begin(), code.end());
  auto st = load_multiboot(ram.mem, request(ram, img), *find_multiboot_header(img));
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->image_high, 0x400000u + img.size());
  EXPECT_EQ(ram.bytes(0x400000, img.size()), img);
}

TEST(MultibootLoader, Errors) {
  PcRam ram(16ull << 20);
  // a.out kludge with header_addr below load_addr.
  auto bad = mb_header(0x10000, {0x100000, 0x100100, 0, 0, 0x100000});
  bad.resize(256);
  auto st = load_multiboot(ram.mem, request(ram, bad), *find_multiboot_header(bad));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().find("load_addr"), std::string::npos) << st.error();
  // Neither address fields nor ELF.
  auto raw = mb_header(0x3);
  raw.resize(256);
  st = load_multiboot(ram.mem, request(ram, raw), *find_multiboot_header(raw));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().find("not a loadable ELF"), std::string::npos) << st.error();
  // A segment beyond RAM.
  std::vector<uint8_t> text = mb_header(0x3);
  auto far = make_elf(false, kEmI386, 0x2000000, {{0x2000000, 0x2000000, text, 0, 5}});
  st = load_multiboot(ram.mem, request(ram, far), *find_multiboot_header(far));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().find("outside guest RAM"), std::string::npos) << st.error();
  // A segment over the boot area (where the information structure goes).
  auto low = make_elf(false, kEmI386, 0x9000, {{0x9000, 0x9000, text, 0, 5}});
  st = load_multiboot(ram.mem, request(ram, low), *find_multiboot_header(low));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().find("boot area"), std::string::npos) << st.error();
  // Modules that do not fit in RAM.
  const auto img = mb_elf32();
  BootRequest req = request(ram, img);
  req.modules.push_back({"big", std::vector<uint8_t>(20u << 20, 1)});
  st = load_multiboot(ram.mem, req, *find_multiboot_header(img));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().find("module 'big'"), std::string::npos) << st.error();
}

TEST(MultibootLoader, VideoModeRequestIsAWarning) {
  PcRam ram(64ull << 20);
  std::vector<uint8_t> text = mb_header(0x7);
  text.resize(64);
  const auto img = make_elf(false, kEmI386, 0x100000, {{0x100000, 0x100000, text, 0, 5}});
  auto st = load_multiboot(ram.mem, request(ram, img), *find_multiboot_header(img));
  ASSERT_TRUE(st) << st.error();
  ASSERT_EQ(st->warnings.size(), 1u);
  EXPECT_NE(st->warnings[0].find("video mode"), std::string::npos);
}

}  // namespace
}  // namespace nestvm::test
