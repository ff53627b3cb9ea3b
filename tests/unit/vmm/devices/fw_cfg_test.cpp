// fw_cfg through its ports: the selector and data ports, the items the machine provides, the
// file directory, reads past an item's end, and the DMA interface.
#include "vmm/devices/fw_cfg.h"

#include <cstring>
#include <string>

#include "unit/vmm/devices/device_test.h"

namespace nestvm::test {
namespace {

using vmm::FwCfgKey;
namespace fw = vmm::fw_cfg;

class FwCfgTest : public DeviceTest {
 protected:
  FwCfgTest() : DeviceTest(2, 16ull << 20) {}
  void select(uint16_t key) { out(fw::kSelectorPort, key, 2); }
  void select(FwCfgKey key) { select(uint16_t(key)); }
  std::vector<uint8_t> read(size_t n) {
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = uint8_t(in(fw::kDataPort));
    return v;
  }
  uint64_t read_le(FwCfgKey key, unsigned n) {
    select(key);
    uint64_t v = 0;
    for (unsigned i = 0; i < n; ++i) v |= uint64_t(in(fw::kDataPort)) << (8 * i);
    return v;
  }
  // A FWCfgDmaAccess at `at` in guest RAM, started through the DMA port; returns its control
  // word afterwards.
  uint32_t dma(uint64_t at, uint32_t control, uint32_t length, uint64_t address) {
    uint8_t s[16];
    for (int i = 0; i < 4; ++i) s[i] = uint8_t(control >> (24 - 8 * i));
    for (int i = 0; i < 4; ++i) s[4 + i] = uint8_t(length >> (24 - 8 * i));
    for (int i = 0; i < 8; ++i) s[8 + i] = uint8_t(address >> (56 - 8 * i));
    EXPECT_TRUE(vm.mem().write(at, s, sizeof s));
    out(fw::kDmaPort, __builtin_bswap32(uint32_t(at >> 32)), 4);
    out(fw::kDmaPort + 4, __builtin_bswap32(uint32_t(at)), 4);
    uint8_t c[4];
    EXPECT_TRUE(vm.mem().read(at, c, 4));
    return uint32_t(c[0]) << 24 | uint32_t(c[1]) << 16 | uint32_t(c[2]) << 8 | c[3];
  }
};

TEST_F(FwCfgTest, SignatureIdCpusAndRam) {
  vmm::FwCfg fw(vm);
  select(FwCfgKey::kFW_CFG_SIGNATURE);
  EXPECT_EQ(read(4), (std::vector<uint8_t>{'Q', 'E', 'M', 'U'}));
  EXPECT_EQ(in(fw::kDataPort), 0u) << "past the item's end reads 0";
  EXPECT_EQ(read_le(FwCfgKey::kFW_CFG_ID, 4), fw::kVersion | fw::kVersionDma);
  EXPECT_EQ(read_le(FwCfgKey::kFW_CFG_NB_CPUS, 2), 2u);
  EXPECT_EQ(read_le(FwCfgKey::kFW_CFG_MAX_CPUS, 2), 2u);
  EXPECT_EQ(read_le(FwCfgKey::kFW_CFG_RAM_SIZE, 8), 16ull << 20);
  EXPECT_EQ(read_le(FwCfgKey::kFW_CFG_IRQ0_OVERRIDE, 4), 1u);
  // Selecting again restarts at offset 0; both ports read data bytes.
  select(FwCfgKey::kFW_CFG_SIGNATURE);
  EXPECT_EQ(in(fw::kSelectorPort), uint32_t('Q'));
  EXPECT_EQ(in(fw::kDataPort), uint32_t('E'));
}

TEST_F(FwCfgTest, WithoutDmaTheIdSaysTraditionalOnly) {
  vmm::FwCfg fw(vm, false);
  EXPECT_EQ(read_le(FwCfgKey::kFW_CFG_ID, 4), fw::kVersion);
  EXPECT_EQ(in(fw::kDmaPort, 4), 0xffffffffu) << "no DMA port";
}

TEST_F(FwCfgTest, UnknownAndOutOfRangeKeysReadZero) {
  vmm::FwCfg fw(vm);
  select(0x1f);
  EXPECT_EQ(read(4), std::vector<uint8_t>(4, 0));
  select(0x3fff);
  EXPECT_EQ(read(2), std::vector<uint8_t>(2, 0));
  select(FwCfgKey::kFW_CFG_SIGNATURE);
  EXPECT_EQ(in(fw::kSelectorPort, 2), 0u) << "word reads are not valid";
  out(fw::kDataPort, 0x55);  // data-port writes are ignored
  EXPECT_EQ(in(fw::kDataPort), uint32_t('Q'));
}

TEST_F(FwCfgTest, FileDirectoryIsSortedByName) {
  vmm::FwCfg fw(vm);
  ASSERT_TRUE(fw.add_file("etc/zeta", {1, 2, 3}));
  ASSERT_TRUE(fw.add_file("etc/alpha", {'a', 'b'}));
  ASSERT_TRUE(fw.add_file("etc/mid", std::vector<uint8_t>(300, 7)));
  EXPECT_FALSE(fw.add_file("etc/mid", {})) << "names are unique";
  EXPECT_FALSE(fw.add_file(std::string(56, 'x'), {})) << "a name takes at most 55 characters";
  EXPECT_FALSE(fw.add_file("", {}));

  select(FwCfgKey::kFW_CFG_FILE_DIR);
  const auto count = read(4);
  ASSERT_EQ(count, (std::vector<uint8_t>{0, 0, 0, 3}));
  struct Seen {
    uint32_t size;
    uint16_t select;
    std::string name;
  };
  std::vector<Seen> files;
  for (int i = 0; i < 3; ++i) {
    const auto e = read(64);
    Seen s;
    s.size = uint32_t(e[0]) << 24 | uint32_t(e[1]) << 16 | uint32_t(e[2]) << 8 | e[3];
    s.select = uint16_t(e[4] << 8 | e[5]);
    EXPECT_EQ(e[6] | e[7], 0) << "reserved";
    s.name = std::string(reinterpret_cast<const char*>(&e[8]));
    files.push_back(s);
  }
  EXPECT_EQ(files[0].name, "etc/alpha");
  EXPECT_EQ(files[1].name, "etc/mid");
  EXPECT_EQ(files[2].name, "etc/zeta");
  EXPECT_EQ(files[0].size, 2u);
  EXPECT_EQ(files[1].size, 300u);
  EXPECT_EQ(files[2].size, 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(files[i].select, 0x20 + i);
  EXPECT_EQ(fw.file_selector("etc/zeta"), 0x22);

  select(files[2].select);
  EXPECT_EQ(read(4), (std::vector<uint8_t>{1, 2, 3, 0}));
  select(files[0].select);
  EXPECT_EQ(read(2), (std::vector<uint8_t>{'a', 'b'}));
}

TEST_F(FwCfgTest, KernelAndCommandLineItemsAsQemuLoaders) {
  vmm::FwCfg fw(vm);
  fw.add_kernel(0x100000, {0xde, 0xad}, 0x100010);
  fw.add_cmdline(0x20000, "console=ttyS0");
  EXPECT_EQ(read_le(FwCfgKey::kFW_CFG_KERNEL_ADDR, 4), 0x100000u);
  EXPECT_EQ(read_le(FwCfgKey::kFW_CFG_KERNEL_SIZE, 4), 2u);
  EXPECT_EQ(read_le(FwCfgKey::kFW_CFG_KERNEL_ENTRY, 4), 0x100010u);
  EXPECT_EQ(read_le(FwCfgKey::kFW_CFG_KERNEL_DATA, 2), 0xadde);
  EXPECT_EQ(read_le(FwCfgKey::kFW_CFG_CMDLINE_SIZE, 4), 14u) << "the size counts the NUL";
  select(FwCfgKey::kFW_CFG_CMDLINE_DATA);
  const auto s = read(14);
  EXPECT_EQ(std::string(s.begin(), s.end() - 1), "console=ttyS0");
  EXPECT_EQ(s.back(), 0);
}

TEST_F(FwCfgTest, DmaSignatureSelectReadAndSkip) {
  vmm::FwCfg fw(vm);
  std::string sig;
  for (unsigned i = 0; i < 8; ++i) sig += char(in(uint16_t(fw::kDmaPort + i)));
  EXPECT_EQ(sig, "QEMU CFG");
  EXPECT_EQ(__builtin_bswap32(in(fw::kDmaPort, 4)), 0x51454d55u);

  const uint64_t desc = 0x8000, buf = 0x9000;
  std::vector<uint8_t> junk(8, 0xee);
  ASSERT_TRUE(vm.mem().write(buf, junk.data(), junk.size()));
  EXPECT_EQ(dma(desc, uint32_t(FwCfgKey::kFW_CFG_SIGNATURE) << 16 | fw::kDmaCtlSelect | fw::kDmaCtlRead, 6, buf), 0u);
  uint8_t got[8];
  ASSERT_TRUE(vm.mem().read(buf, got, 8));
  EXPECT_EQ(std::memcmp(got, "QEMU\0\0\xee\xee", 8), 0) << "reads past the item's end give zeros";

  // Skip then read continues within the selected item.
  EXPECT_EQ(dma(desc, uint32_t(FwCfgKey::kFW_CFG_SIGNATURE) << 16 | fw::kDmaCtlSelect | fw::kDmaCtlSkip, 2, 0), 0u);
  EXPECT_EQ(dma(desc, fw::kDmaCtlRead, 2, buf), 0u);
  ASSERT_TRUE(vm.mem().read(buf, got, 2));
  EXPECT_EQ(std::memcmp(got, "MU", 2), 0);
  // And the traditional data port continues from the same offset.
  EXPECT_EQ(in(fw::kDataPort), 0u);
}

TEST_F(FwCfgTest, DmaWritesOnlyWritableFiles) {
  vmm::FwCfg fw(vm);
  const auto ro = fw.add_file("etc/ro", {0, 0});
  const auto rw = fw.add_file("etc/rw", {0, 0, 0}, true);
  ASSERT_TRUE(ro && rw);
  const uint64_t desc = 0x8000, buf = 0x9000;
  const uint8_t data[3] = {9, 8, 7};
  ASSERT_TRUE(vm.mem().write(buf, data, 3));
  EXPECT_EQ(dma(desc, uint32_t(*ro) << 16 | fw::kDmaCtlSelect | fw::kDmaCtlWrite, 2, buf), fw::kDmaCtlError);
  EXPECT_EQ(dma(desc, uint32_t(*rw) << 16 | fw::kDmaCtlSelect | fw::kDmaCtlWrite, 3, buf), 0u);
  select(*rw);
  EXPECT_EQ(read(3), (std::vector<uint8_t>{9, 8, 7}));
  EXPECT_EQ(dma(desc, uint32_t(*rw) << 16 | fw::kDmaCtlSelect | fw::kDmaCtlWrite, 4, buf), fw::kDmaCtlError)
      << "a write past the end fails";
}

TEST_F(FwCfgTest, DmaToMemoryThatIsNotRamFails) {
  vmm::FwCfg fw(vm);
  const uint64_t desc = 0x8000;
  EXPECT_EQ(dma(desc, uint32_t(FwCfgKey::kFW_CFG_SIGNATURE) << 16 | fw::kDmaCtlSelect | fw::kDmaCtlRead, 4,
                0x40000000),
            fw::kDmaCtlError);
}

}  // namespace
}  // namespace nestvm::test
