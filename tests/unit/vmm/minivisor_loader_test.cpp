// The minivisor's loader (guest/minivisor/loader.c, built for the host) against nestvm's: the
// same kernel, modules and command line must leave L2's memory byte for byte as nestvm leaves
// L1's, and start the processor the same way. And the --level 2 hand-over end to end: nestvm
// boots the minivisor (src/vmm/level.h) into a PC with RAM private to L1; decoding the boot
// information it got and loading L2 from it gives what a level-1 boot gives.
#include "minivisor/loader.h"

#include <gtest/gtest.h>

#include <fmt/core.h>

#include <deque>

#include "cpu/state.h"
#include "unit/vmm/boot_images.h"
#include "vmm/level.h"
#include "vmm/loader/elf.h"
#include "vmm/loader/multiboot.h"

namespace nestvm::test {
namespace {

using namespace vmm;

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 13);
  return v;
}

std::vector<uint8_t> with_header(uint32_t flags, std::vector<uint32_t> fields, size_t code) {
  std::vector<uint8_t> t = mb_header(flags, std::move(fields));
  const auto c = pattern(code, 3);
  t.insert(t.end(), c.begin(), c.end());
  return t;
}

// The kernels nestvm's loader distinguishes.
struct Kernel {
  const char* what;
  std::vector<uint8_t> bytes;
};

std::vector<Kernel> kernels() {
  std::vector<Kernel> k;
  k.push_back({"multiboot ELF32 with bss",
               make_elf(false, kEmI386, 0x100010,
                        {{0x100000, 0x100000, with_header(3, {}, 0x80), 0, 5},
                         {0x102000, 0x102000, pattern(0x40, 9), 0x5000, 6}})});
  k.push_back({"multiboot ELF64 linked high",
               make_elf(true, kEmX86_64, 0xffffffff80100020ull,
                        {{0xffffffff80100000ull, 0x100000, with_header(3, {}, 0x100), 0x3000, 5}})});
  // a.out kludge: header at file offset 0 = header_addr 0x200000, load to 0x200000 + 0x1800, bss to 0x206000.
  std::vector<uint8_t> aout = with_header(0x10003, {0x200000, 0x200000, 0x201800, 0x206000, 0x200020}, 0x2000);
  k.push_back({"multiboot a.out kludge", aout});
  k.push_back({"plain ELF32", make_elf(false, kEmI386, 0x300000, {{0x300000, 0x300000, pattern(0x300, 5), 0x1000, 5}})});
  k.push_back({"plain ELF64", make_elf(true, kEmX86_64, 0x400000, {{0x400000, 0x400000, pattern(0x300, 7), 0, 5}})});
  k.push_back({"flat binary", pattern(0x2345, 11)});
  return k;
}

std::vector<BootModule> modules(unsigned n) {
  std::vector<BootModule> m;
  for (unsigned i = 0; i < n; ++i) m.push_back({fmt::format("mod{}.bin arg={}", i, i), pattern(0x1234 + 0x3000 * i, uint8_t(i))});
  return m;
}

struct MemCtx {
  hv::GuestMemory* mem;
  uint64_t top;  // L2's RAM: [0, top)
};

bool mem_write(void* ctx, uint64_t gpa, const void* src, uint64_t len) {
  auto* c = static_cast<MemCtx*>(ctx);
  if (gpa + len > c->top) return false;
  return c->mem->write(gpa, src, len);
}
bool mem_zero(void* ctx, uint64_t gpa, uint64_t len) {
  static const std::vector<uint8_t> zeros(1 << 16);
  while (len) {
    const uint64_t n = std::min<uint64_t>(len, zeros.size());
    if (!mem_write(ctx, gpa, zeros.data(), n)) return false;
    gpa += n;
    len -= n;
  }
  return true;
}

// Compares [from, to) of two memories, reporting the first difference.
void expect_same_memory(PcRam& want, PcRam& got, uint64_t from, uint64_t to) {
  std::vector<uint8_t> a(4096), b(4096);
  for (uint64_t p = from; p < to; p += 4096) {
    want.mem.read(p, a.data(), 4096);
    got.mem.read(p, b.data(), 4096);
    if (a == b) continue;
    size_t i = 0;
    while (a[i] == b[i]) ++i;
    ADD_FAILURE() << fmt::format("memory differs at {:#x}: nestvm {:#04x}, minivisor {:#04x}", p + i, a[i], b[i]);
    return;
  }
}

void expect_same_start(const BootState& want, const mvl_boot& got) {
  EXPECT_EQ(got.entry, want.cpu.rip);
  EXPECT_EQ(got.eax, uint32_t(want.cpu.gpr[cpu::kRax]));
  EXPECT_EQ(got.ebx, uint32_t(want.cpu.gpr[cpu::kRbx]));
  EXPECT_EQ(got.long_mode, (want.cpu.msr.efer & 0x400) != 0);
  EXPECT_EQ(got.image_low, want.image_low);
  EXPECT_EQ(got.image_high, want.image_high);
  EXPECT_EQ(std::string(got.protocol), want.protocol);
}

// The request the minivisor would build for a level-1 boot of `req`.
struct DirectRequest {
  explicit DirectRequest(const BootRequest& req) {
    cmdline = req.kernel_name + " " + req.append;
    for (const BootModule& m : req.modules) mods.push_back({m.bytes.data(), m.bytes.size(), m.cmdline.c_str()});
    for (const E820Entry& e : pc_e820_map(req.ram)) map.push_back({e.addr, e.size, uint32_t(e.type)});
    r.kernel = req.kernel.data();
    r.kernel_size = req.kernel.size();
    r.cmdline = cmdline.c_str();
    r.modules = mods.data();
    r.module_count = unsigned(mods.size());
    r.mmap = map.data();
    r.mmap_count = unsigned(map.size());
    r.mem_lower = 640;
    r.mem_upper = uint32_t(req.ram.below_4g / 1024 - 1024);
  }
  std::string cmdline;
  std::vector<mvl_module> mods;
  std::vector<mvl_mmap_entry> map;
  mvl_request r{};
};

TEST(MinivisorLoader, LoadsEveryKindOfKernelAsNestvmDoes) {
  for (const Kernel& k : kernels()) {
    for (unsigned nmods : {0u, 2u}) {
      SCOPED_TRACE(fmt::format("{}, {} modules", k.what, nmods));
      PcRam want(32 << 20), got(32 << 20);
      BootRequest req;
      req.kernel_name = "/some/dir/kernel.elf";
      req.kernel = k.bytes;
      req.append = "alpha beta=2 --gamma";
      req.modules = modules(nmods);
      req.ram = want.layout;
      auto st = load_kernel(want.mem, req);
      ASSERT_TRUE(st) << st.error();
      DirectRequest d(req);
      MemCtx ctx{&got.mem, got.layout.below_4g};
      const mvl_mem mem{&ctx, mem_write, mem_zero};
      mvl_boot boot;
      ASSERT_TRUE(mvl_load(&mem, &d.r, &boot)) << boot.error;
      expect_same_start(*st, boot);
      expect_same_memory(want, got, 0, got.layout.below_4g);
    }
  }
}

TEST(MinivisorLoader, EmptyAppendAndMemoryAbove4GiB) {
  PcRam want(4ull << 30), got(4ull << 30);
  const auto k = kernels()[0].bytes;
  BootRequest req;
  req.kernel_name = "k.elf";
  req.kernel = k;
  req.ram = want.layout;
  req.modules = modules(1);
  auto st = load_kernel(want.mem, req);
  ASSERT_TRUE(st) << st.error();
  DirectRequest d(req);
  MemCtx ctx{&got.mem, got.layout.below_4g};
  const mvl_mem mem{&ctx, mem_write, mem_zero};
  mvl_boot boot;
  ASSERT_TRUE(mvl_load(&mem, &d.r, &boot)) << boot.error;
  expect_same_start(*st, boot);
  expect_same_memory(want, got, 0, 8 << 20);
  EXPECT_EQ(got.str(got.u32(boot.ebx + 16)), "k.elf ");
}

TEST(MinivisorLoader, RefusesWhatNestvmRefuses) {
  PcRam ram(32 << 20);
  MemCtx ctx{&ram.mem, ram.layout.below_4g};
  const mvl_mem mem{&ctx, mem_write, mem_zero};
  std::vector<uint8_t> bz(0x300, 0);
  std::memcpy(bz.data() + 0x202, "HdrS", 4);
  const auto boot_area = make_elf(false, kEmI386, 0x1000, {{0x1000, 0x1000, pattern(0x10, 1), 0, 5}});
  const auto beyond = make_elf(false, kEmI386, 0x100000, {{0x100000, 0x100000, pattern(0x10, 1), 64 << 20, 5}});
  const auto not_exec = [] {
    auto e = make_elf(false, kEmI386, 0x100000, {{0x100000, 0x100000, pattern(0x10, 1), 0, 5}});
    e[16] = 3;  // ET_DYN
    return e;
  }();
  for (const std::vector<uint8_t>* image : std::initializer_list<const std::vector<uint8_t>*>{&bz, &boot_area, &beyond, &not_exec}) {
    BootRequest req;
    req.kernel_name = "k";
    req.kernel = *image;
    req.ram = ram.layout;
    EXPECT_FALSE(load_kernel(ram.mem, req));
    DirectRequest d(req);
    mvl_boot boot;
    EXPECT_FALSE(mvl_load(&mem, &d.r, &boot));
    EXPECT_NE(boot.error[0], 0);
  }
}

// L1 memory for the hand-over parser: copies of the requested ranges, kept alive.
struct L1Ctx {
  hv::GuestMemory* mem;
  std::deque<std::vector<uint8_t>> copies;
};
const void* l1_ptr(void* ctx, uint64_t gpa, uint64_t len) {
  auto* c = static_cast<L1Ctx*>(ctx);
  std::vector<uint8_t> v(len);
  if (!c->mem->read(gpa, v.data(), len)) return nullptr;
  c->copies.push_back(std::move(v));
  return c->copies.back().data();
}

// A stand-in for the minivisor image: a multiboot ELF at 1 MiB with some bss.
std::vector<uint8_t> fake_minivisor() {
  return make_elf(false, kEmI386, 0x100010, {{0x100000, 0x100000, with_header(3, {}, 0x200), 0x20000, 5}});
}

TEST(MinivisorHandover, Level2BootDecodesToTheLevel1Boot) {
  for (const Kernel& k : kernels()) {
    for (const char* append : {"", "words: alpha beta=2 --gamma -- and -- more"}) {
      SCOPED_TRACE(fmt::format("{}, append '{}'", k.what, append));
      // Level 1: nestvm boots the kernel itself.
      PcRam want(64 << 20);
      KernelImage user{"/path/to/kernel.elf", k.bytes, modules(2)};
      BootRequest req1;
      req1.kernel_name = user.name;
      req1.kernel = user.bytes;
      req1.append = append;
      req1.modules = user.modules;
      req1.ram = want.layout;
      auto st1 = load_kernel(want.mem, req1);
      ASSERT_TRUE(st1) << st1.error();

      // Level 2: nestvm boots the minivisor with the hand-over of vmm/level.h.
      PcRam l1(64 << 20);
      ASSERT_TRUE(add_level_ram(l1.mem, 2));
      std::string l1_append = append;
      const auto mv = fake_minivisor();
      auto image = level_kernel(2, user, mv, l1_append);
      ASSERT_TRUE(image) << image.error();
      EXPECT_EQ(l1_append, fmt::format("private={:#x},{:#x} -- {}", kMinivisorBase, kMinivisorSize, append));
      BootRequest req2;
      req2.kernel_name = image->name;
      req2.kernel = image->bytes;
      req2.append = l1_append;
      req2.modules = image->modules;
      req2.ram = l1.layout;
      auto st2 = load_kernel(l1.mem, req2);
      ASSERT_TRUE(st2) << st2.error();
      ASSERT_TRUE(describe_level_ram(l1.mem, 2, *st2));

      // The minivisor decodes it and loads L2.
      L1Ctx l1ctx{&l1.mem, {}};
      const mvl_l1 l1view{&l1ctx, l1_ptr};
      static mvl_handover h;
      char err[128] = "";
      ASSERT_TRUE(mvl_handover_parse(&l1view, uint32_t(st2->info_addr), st2->image_high, &h, err, sizeof(err)))
          << err;
      EXPECT_EQ(h.own_low, kMinivisorBase);
      EXPECT_EQ(h.own_high, kMinivisorBase + kMinivisorSize);
      // The minivisor's pages start after its image and the modules nestvm put after it.
      EXPECT_GT(h.free_low, st2->image_high + user.bytes.size() + 0x1234 + 0x4234);
      EXPECT_LT(h.free_low, 0x200000u);
      EXPECT_EQ(h.free_low % 4096, 0u);
      EXPECT_EQ(h.l2_low_ram_top, want.layout.below_4g);
      EXPECT_EQ(std::string(h.cmdline), user.name + " " + append);
      PcRam got(64 << 20);
      MemCtx ctx{&got.mem, h.l2_low_ram_top};
      const mvl_mem mem{&ctx, mem_write, mem_zero};
      mvl_boot boot;
      ASSERT_TRUE(mvl_load(&mem, &h.req, &boot)) << boot.error;
      expect_same_start(*st1, boot);
      expect_same_memory(want, got, 0, want.layout.below_4g);
    }
  }
}

TEST(MinivisorHandover, L1MapListsTheMinivisorRamAndL2MapLeavesItOut) {
  PcRam l1(128 << 20);
  ASSERT_TRUE(add_level_ram(l1.mem, 2));
  std::string append = "x";
  const auto k = kernels()[0].bytes;
  auto image = level_kernel(2, KernelImage{"k", k, {}}, fake_minivisor(), append);
  ASSERT_TRUE(image);
  BootRequest req;
  req.kernel_name = image->name;
  req.kernel = image->bytes;
  req.append = append;
  req.modules = image->modules;
  req.ram = l1.layout;
  auto st = load_kernel(l1.mem, req);
  ASSERT_TRUE(st) << st.error();
  ASSERT_TRUE(describe_level_ram(l1.mem, 2, *st));
  const uint32_t len = l1.u32(st->info_addr + mbi::kMmapLength), addr = l1.u32(st->info_addr + mbi::kMmapAddr);
  const auto pc = pc_e820_map(l1.layout);
  ASSERT_EQ(len, (pc.size() + 1) * mbi::kMmapEntrySize);
  uint64_t prev = 0;
  bool listed = false;
  for (uint32_t off = 0; off < len; off += mbi::kMmapEntrySize) {
    const uint64_t base = l1.u64(addr + off + 4), size = l1.u64(addr + off + 12);
    EXPECT_GE(base, prev) << "sorted by address";
    prev = base;
    if (base == kMinivisorBase && size == kMinivisorSize && l1.u32(addr + off + 20) == 1) listed = true;
  }
  EXPECT_TRUE(listed);

  L1Ctx l1ctx{&l1.mem, {}};
  const mvl_l1 l1view{&l1ctx, l1_ptr};
  static mvl_handover h;
  char err[128] = "";
  ASSERT_TRUE(mvl_handover_parse(&l1view, uint32_t(st->info_addr), st->image_high, &h, err, sizeof(err)))
      << err;
  ASSERT_EQ(h.req.mmap_count, pc.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    EXPECT_EQ(h.mmap[i].addr, pc[i].addr);
    EXPECT_EQ(h.mmap[i].len, pc[i].size);
    EXPECT_EQ(h.mmap[i].type, uint32_t(pc[i].type));
  }
  EXPECT_EQ(h.req.module_count, 0u);
}

TEST(MinivisorHandover, Errors) {
  PcRam l1(32 << 20);
  ASSERT_TRUE(add_level_ram(l1.mem, 2));
  std::string append;
  EXPECT_FALSE(level_kernel(2, KernelImage{"k", {1, 2, 3}, {}}, {}, append));
  // Level 1 is the user's kernel unchanged.
  append = "a";
  auto same = level_kernel(1, KernelImage{"k", {1, 2, 3}, {}}, {}, append);
  ASSERT_TRUE(same);
  EXPECT_EQ(same->name, "k");
  EXPECT_EQ(append, "a");
  EXPECT_EQ(level_private_ram(1), 0u);
  EXPECT_EQ(level_private_ram(2), kMinivisorSize);

  // Boot information without the hand-over: no module, or no " -- ".
  const auto mv = fake_minivisor();
  for (int variant = 0; variant < 2; ++variant) {
    PcRam ram(32 << 20);
    ASSERT_TRUE(add_level_ram(ram.mem, 2));
    BootRequest req;
    req.kernel_name = "minivisor";
    req.kernel = mv;
    req.append = variant == 0 ? "-- x" : "no separator";
    if (variant == 1) req.modules = modules(1);
    req.ram = ram.layout;
    auto st = load_kernel(ram.mem, req);
    ASSERT_TRUE(st) << st.error();
    ASSERT_TRUE(describe_level_ram(ram.mem, 2, *st));
    L1Ctx l1ctx{&ram.mem, {}};
    const mvl_l1 l1view{&l1ctx, l1_ptr};
    static mvl_handover h;
    char err[128] = "";
    EXPECT_FALSE(mvl_handover_parse(&l1view, uint32_t(st->info_addr), st->image_high, &h, err, sizeof(err)));
    EXPECT_NE(err[0], 0);
  }
}

}  // namespace
}  // namespace nestvm::test
