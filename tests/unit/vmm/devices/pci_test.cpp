// PCI configuration mechanism #1 and the i440FX host bridge, through ports 0xcf8/0xcfc, and
// BAR sizing, assignment and decoding with pci-testdev.
#include "vmm/devices/pci.h"

#include <string>

#include "unit/vmm/devices/device_test.h"
#include "vmm/devices/pci_testdev.h"

namespace nestvm::test {
namespace {

using namespace vmm::pci;

class PciTest : public DeviceTest {
 protected:
  static uint32_t address(unsigned bus, unsigned dev, unsigned fn, unsigned reg) {
    return kConfigEnable | bus << 16 | dev << 11 | fn << 8 | (reg & 0xfc);
  }
  uint32_t cfg_read(unsigned bus, unsigned dev, unsigned fn, unsigned reg, unsigned size = 4) {
    out(kConfigAddressPort, address(bus, dev, fn, reg), 4);
    return in(uint16_t(kConfigDataPort + (reg & 3)), size);
  }
  void cfg_write(unsigned bus, unsigned dev, unsigned fn, unsigned reg, uint32_t v, unsigned size = 4) {
    out(kConfigAddressPort, address(bus, dev, fn, reg), 4);
    out(uint16_t(kConfigDataPort + (reg & 3)), v, size);
  }
  uint32_t bar_mask(unsigned dev, unsigned bar) {
    const unsigned reg = kBaseAddress0 + 4 * bar;
    const uint32_t saved = cfg_read(0, dev, 0, reg);
    cfg_write(0, dev, 0, reg, 0xffffffffu);
    const uint32_t mask = cfg_read(0, dev, 0, reg);
    cfg_write(0, dev, 0, reg, saved);
    return mask;
  }

  vmm::PciHost host{vm};
};

TEST_F(PciTest, ConfigAddressLatchesOnlyDwordWrites) {
  out(kConfigAddressPort, 0x80fffefc, 4);
  EXPECT_EQ(in(kConfigAddressPort, 4), 0x80fffefcu);
  out(kConfigAddressPort, 0x12, 1);
  out(kConfigAddressPort, 0x3456, 2);
  EXPECT_EQ(in(kConfigAddressPort, 4), 0x80fffefcu);
  EXPECT_EQ(in(kConfigAddressPort + 2, 1), 0xffu);
}

TEST_F(PciTest, HostBridgeIsI440fx) {
  EXPECT_EQ(cfg_read(0, 0, 0, kVendorId), 0x12378086u);
  EXPECT_EQ(cfg_read(0, 0, 0, kRevisionId) >> 8, kClassBridgeHost);
  EXPECT_EQ(cfg_read(0, 0, 0, kRevisionId) & 0xff, 0x02u);
  EXPECT_EQ(cfg_read(0, 0, 0, kHeaderType, 1), 0u);
  EXPECT_EQ(cfg_read(0, 0, 0, kSubsystemVendorId), uint32_t(kSubdeviceQemu) << 16 | kSubvendorRedHatQumranet);
  // Byte and word accesses pick their part of the dword.
  EXPECT_EQ(cfg_read(0, 0, 0, 0x00, 1), 0x86u);
  EXPECT_EQ(cfg_read(0, 0, 0, 0x01, 1), 0x80u);
  EXPECT_EQ(cfg_read(0, 0, 0, 0x02, 2), 0x1237u);
  EXPECT_EQ(cfg_read(0, 0, 0, 0x0b, 1), 0x06u);
}

TEST_F(PciTest, ReadOnlyFieldsIgnoreWritesAndWritableOnesHoldThem) {
  cfg_write(0, 0, 0, kVendorId, 0xffffffffu);
  EXPECT_EQ(cfg_read(0, 0, 0, kVendorId), 0x12378086u);
  cfg_write(0, 0, 0, kCommand, 0xffff, 2);
  EXPECT_EQ(cfg_read(0, 0, 0, kCommand, 2), kCommandIo | kCommandMemory | kCommandMaster | kCommandIntxDisable);
  cfg_write(0, 0, 0, kInterruptLine, 0x0b, 1);
  EXPECT_EQ(cfg_read(0, 0, 0, kInterruptLine, 1), 0x0bu);
  EXPECT_EQ(cfg_read(0, 0, 0, 0x72, 1), 0x02u) << "i440FX SMRAM at its reset value";
  cfg_write(0, 0, 0, 0x59, 0x30, 1);  // PAM0: device-specific registers are storage
  EXPECT_EQ(cfg_read(0, 0, 0, 0x59, 1), 0x30u);
}

TEST_F(PciTest, AbsentFunctionsAndBusesReadAllOnes) {
  EXPECT_EQ(cfg_read(0, 31, 0, 0), 0xffffffffu);
  EXPECT_EQ(cfg_read(0, 0, 1, 0), 0xffffffffu);
  EXPECT_EQ(cfg_read(7, 0, 0, 0), 0xffffffffu);
  EXPECT_EQ(cfg_read(0, 31, 0, 0, 2), 0xffffu);
  out(kConfigAddressPort, 0x00000000, 4);  // enable bit clear
  EXPECT_EQ(in(kConfigDataPort, 4), 0xffffffffu);
  out(kConfigDataPort, 0x1234, 4);
  EXPECT_EQ(cfg_read(0, 0, 0, kVendorId), 0x12378086u);
}

TEST_F(PciTest, TestDevBarsSizeAndDecode) {
  vmm::PciTestDev dev(host);
  ASSERT_EQ(dev.devfn(), 8) << "the first free slot is 00:01.0";
  EXPECT_EQ(cfg_read(0, 1, 0, kVendorId), 0x00051b36u);
  EXPECT_EQ(cfg_read(0, 1, 0, kRevisionId) >> 8, kClassOthers);
  EXPECT_EQ(cfg_read(0, 1, 0, kInterruptPin, 1), 0u);
  EXPECT_EQ(bar_mask(1, 0), 0xfffff000u) << "4 KiB of 32-bit memory";
  EXPECT_EQ(bar_mask(1, 1), 0xffffff01u) << "256 I/O ports";
  EXPECT_EQ(bar_mask(1, 2), 0u) << "no third BAR";
  // Assigned as firmware would, decoding on.
  const uint32_t mem = cfg_read(0, 1, 0, kBaseAddress0), io = cfg_read(0, 1, 0, kBaseAddress0 + 4);
  EXPECT_EQ(mem & 0xfff, 0u);
  EXPECT_GE(mem, kMemWindowBase);
  EXPECT_LT(mem, kMemWindowEnd);
  EXPECT_EQ(io & 3, 1u);
  EXPECT_GE(io & ~3u, kIoWindowBase);
  EXPECT_EQ(cfg_read(0, 1, 0, kCommand, 2) & 3, kCommandIo | kCommandMemory);
  EXPECT_EQ(dev.bar_address(0), mem);
  EXPECT_EQ(dev.bar_address(1), io & ~3u);

  // Start test 0 through the memory BAR: its header names it.
  mmio_out(mem, 0, 1);
  std::string name;
  for (unsigned i = 16; i < 48; ++i) {
    const auto c = char(mmio_in(mem + i, 1));
    if (!c) break;
    name += c;
  }
  EXPECT_EQ(name, "mmio-no-eventfd");

  // Move the I/O BAR: accesses follow it; with I/O decoding off they reach nothing.
  cfg_write(0, 1, 0, kBaseAddress0 + 4, 0xd000);
  EXPECT_EQ(dev.bar_address(1), 0xd000u);
  out(0xd000, 2);  // portio-datamatch-eventfd
  EXPECT_EQ(in(0xd000 + 16, 1), uint32_t('p'));
  cfg_write(0, 1, 0, kCommand, kCommandMemory, 2);
  EXPECT_FALSE(dev.bar_address(1).has_value());
  EXPECT_EQ(in(0xd000 + 16, 1), 0xffu);
}

TEST_F(PciTest, FunctionsShareASlotOnlyBehindFunctionZero) {
  vmm::PciTestDev a(host);
  struct Extra : vmm::PciFunction {
    Extra() : PciFunction({0x1234, 0x5678, 0x010000}, "extra") {}
  } extra;
  EXPECT_EQ(host.add_function(extra, 1, 0), -1) << "00:01.0 is taken";
  EXPECT_EQ(host.add_function(extra, 1, 3), 8 + 3);
  EXPECT_EQ(cfg_read(0, 1, 3, kVendorId), 0x56781234u);
  EXPECT_EQ(cfg_read(0, 1, 0, kHeaderType, 1) & 0x80, 0x80u) << "function 0 says multi-function";
}

}  // namespace
}  // namespace nestvm::test
