// Plain ELF (ELF64 entered in long mode with an identity map, ELF32 in protected mode), flat
// binaries, the choice between loaders, ELF validation and -initrd module files.
#include "vmm/loader/loader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "arch/cr.h"
#include "unit/vmm/boot_images.h"
#include "vmm/loader/elf.h"
#include "vmm/loader/flat.h"
#include "vmm/loader/multiboot.h"

namespace nestvm::test {
namespace {

using namespace vmm;
using arch::SegReg;

BootRequest request(PcRam& ram, std::span<const uint8_t> kernel) {
  BootRequest r;
  r.kernel_name = "k";
  r.kernel = kernel;
  r.append = "x=1";
  r.ram = ram.layout;
  return r;
}

TEST(PlainElf, Elf64EntersLongModeWithAnIdentityMapOf4GiB) {
  PcRam ram(64ull << 20);
  const std::vector<uint8_t> code(0x80, 0x90);
  const auto img = make_elf(true, kEmX86_64, 0xffffffff80100010ull,
                            {{0xffffffff80100000ull, 0x100000, code, 0x1000, 5}});
  auto st = load_kernel(ram.mem, request(ram, img));
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->protocol, "ELF64 (64-bit entry)");
  const cpu::CpuState& c = st->cpu;
  EXPECT_EQ(c.rip, 0x100010u);  // translated through the segment's p_paddr, as QEMU
  EXPECT_EQ(c.msr.efer & (arch::efer::kLME | arch::efer::kLMA), arch::efer::kLME | arch::efer::kLMA);
  EXPECT_EQ(c.cr0 & (arch::cr0::kPE | arch::cr0::kPG), arch::cr0::kPE | arch::cr0::kPG);
  EXPECT_TRUE(c.cr4 & arch::cr4::kPAE);
  EXPECT_TRUE(c.seg[unsigned(SegReg::kCS)].ar & arch::ar::kL);
  EXPECT_FALSE(c.seg[unsigned(SegReg::kCS)].ar & arch::ar::kDB);
  EXPECT_EQ(c.gpr[cpu::kRdi], boot_layout::kMbi);
  EXPECT_EQ(c.gpr[cpu::kRbx], boot_layout::kMbi);
  EXPECT_EQ(ram.str(ram.u32(boot_layout::kMbi + mbi::kCmdline)), "k x=1");
  // Walk the tables: every 2 MiB page of the first 4 GiB maps to itself.
  const uint64_t pml4e = ram.u64(c.cr3);
  ASSERT_EQ(pml4e & 1, 1u);
  for (uint64_t va : {0x0ull, 0x100000ull, 0x3fe00000ull, 0x40000000ull, 0xfee00000ull, 0xffffffffull}) {
    const uint64_t pdpte = ram.u64((pml4e & ~0xfffull) + 8 * ((va >> 30) & 511));
    ASSERT_EQ(pdpte & 1, 1u) << std::hex << va;
    const uint64_t pde = ram.u64((pdpte & ~0xfffull) + 8 * ((va >> 21) & 511));
    ASSERT_EQ(pde & 0x81, 0x81u) << std::hex << va;  // present, 2 MiB page
    EXPECT_EQ((pde & ~0x1fffffull) | (va & 0x1fffff), va);
  }
  EXPECT_EQ(ram.u64((pml4e & ~0xfffull) + 8 * 4), 0u);  // nothing above 4 GiB
  // The GDT's 64-bit code descriptor: L set, D clear.
  EXPECT_EQ(ram.u64(c.gdtr.base + c.seg[unsigned(SegReg::kCS)].selector), 0x00af9b000000ffffull);
}

TEST(PlainElf, Elf32EntersProtectedModeLikeMultiboot) {
  PcRam ram(64ull << 20);
  const auto img = make_elf(false, kEmI386, 0x100000, {{0x100000, 0x100000, std::vector<uint8_t>(16, 0xf4)}});
  auto st = load_kernel(ram.mem, request(ram, img));
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->protocol, "ELF32 (32-bit entry)");
  EXPECT_EQ(st->cpu.cr0 & arch::cr0::kPG, 0u);
  EXPECT_EQ(st->cpu.gpr[cpu::kRax], kMultibootBootloaderMagic);
}

TEST(PlainElf, Validation) {
  PcRam ram(64ull << 20);
  const std::vector<uint8_t> code(16, 0x90);
  // ELF64 with an i386 machine, ELF32 with x86-64.
  auto a = make_elf(true, kEmI386, 0x100000, {{0x100000, 0x100000, code}});
  auto r = load_kernel(ram.mem, request(ram, a));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("e_machine"), std::string::npos) << r.error();
  // A segment whose contents lie beyond the file.
  auto b = make_elf(false, kEmI386, 0x100000, {{0x100000, 0x100000, code}});
  b.resize(b.size() - 8);
  r = load_kernel(ram.mem, request(ram, b));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("beyond the end"), std::string::npos) << r.error();
  // No loadable segment.
  auto c = make_elf(false, kEmI386, 0x100000, {{0x100000, 0x100000, code, 0, 5, 4 /* PT_NOTE */}});
  r = load_kernel(ram.mem, request(ram, c));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("no loadable segment"), std::string::npos) << r.error();
  // filesz > memsz.
  auto d = make_elf(false, kEmI386, 0x100000, {{0x100000, 0x100000, code, 8}});
  r = load_kernel(ram.mem, request(ram, d));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("p_filesz > p_memsz"), std::string::npos) << r.error();
  // A 64-bit entry point above the identity map.
  auto e = make_elf(true, kEmX86_64, 0x100000000ull, {{0x100000, 0x100000, code}});
  r = load_kernel(ram.mem, request(ram, e));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("below 4 GiB"), std::string::npos) << r.error();
}

TEST(FlatLoader, LoadsAt1MiBAndEntersThereInProtectedMode) {
  PcRam ram(32ull << 20);
  std::vector<uint8_t> img(10000);
  for (size_t i = 0; i < img.size(); ++i) img[i] = uint8_t(i * 13);
  auto st = load_kernel(ram.mem, request(ram, img));
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->protocol, "flat binary");
  EXPECT_EQ(ram.bytes(kFlatLoadAddress, img.size()), img);
  EXPECT_EQ(st->cpu.rip, kFlatLoadAddress);
  EXPECT_EQ(st->cpu.cr0 & (arch::cr0::kPE | arch::cr0::kPG), arch::cr0::kPE);
  EXPECT_EQ(st->cpu.gpr[cpu::kRax], kMultibootBootloaderMagic);
  EXPECT_EQ(st->cpu.gpr[cpu::kRbx], boot_layout::kMbi);
  // The boot information follows the image.
  EXPECT_EQ(ram.u32(boot_layout::kMbi + mbi::kModsAddr), 0x103000u);
  EXPECT_EQ(ram.str(ram.u32(boot_layout::kMbi + mbi::kCmdline)), "k x=1");
}

TEST(FlatLoader, ImageLargerThanRamIsAnError) {
  PcRam ram(2ull << 20);
  std::vector<uint8_t> img(2u << 20, 1);
  auto st = load_kernel(ram.mem, request(ram, img));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().find("does not fit"), std::string::npos) << st.error();
}

TEST(LoadKernel, RefusesALinuxBzImage) {
  PcRam ram(32ull << 20);
  std::vector<uint8_t> img(0x1000, 0);
  std::memcpy(img.data() + 0x202, "HdrS", 4);
  auto st = load_kernel(ram.mem, request(ram, img));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().find("Linux boot protocol"), std::string::npos) << st.error();
}

TEST(LoadKernel, MultibootHeaderWinsOverPlainElf) {
  PcRam ram(32ull << 20);
  std::vector<uint8_t> text = mb_header(0x3);
  text.resize(32);
  const auto img = make_elf(true, kEmX86_64, 0x100000, {{0x100000, 0x100000, text}});
  auto st = load_kernel(ram.mem, request(ram, img));
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->protocol, "multiboot (ELF64)");
  EXPECT_EQ(st->cpu.msr.efer, 0u);
}

class TempDir {
 public:
  TempDir() {
    char t[] = "/tmp/nestvm_loader_XXXXXX";
    path_ = mkdtemp(t);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name, const std::string& contents) {
    const std::string p = path_ + "/" + name;
    FILE* f = std::fopen(p.c_str(), "wb");
    std::fwrite(contents.data(), 1, contents.size(), f);
    std::fclose(f);
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ReadModules, SplitsAtCommasAndReadsEachFile) {
  TempDir d;
  const std::string a = d.file("a.bin", "AAAA");
  const std::string b = d.file("b,c.bin", "BB");
  // QEMU's syntax: ",," is a comma inside a name; the string after a space is the module's.
  std::string b_escaped = b;
  b_escaped.replace(b_escaped.find(','), 1, ",,");
  auto mods = read_modules(a + " arg1 arg2," + b_escaped);
  ASSERT_TRUE(mods) << mods.error();
  ASSERT_EQ(mods->size(), 2u);
  EXPECT_EQ((*mods)[0].cmdline, a + " arg1 arg2");
  EXPECT_EQ((*mods)[0].bytes, std::vector<uint8_t>({'A', 'A', 'A', 'A'}));
  EXPECT_EQ((*mods)[1].cmdline, b);
  EXPECT_EQ((*mods)[1].bytes.size(), 2u);
  auto missing = read_modules(d.path() + "/nope.bin");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().find("could not open"), std::string::npos) << missing.error();
  EXPECT_EQ(missing.error().find('\n'), std::string::npos);
}

}  // namespace
}  // namespace nestvm::test
