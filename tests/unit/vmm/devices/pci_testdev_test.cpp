// pci-testdev's test protocol (docs/specs/pci-testdev.rst) as kvm-unit-tests' pci_testdev_one
// drives it, through both BARs.
#include "vmm/devices/pci_testdev.h"

#include <functional>
#include <string>

#include "unit/vmm/devices/device_test.h"

namespace nestvm::test {
namespace {

class PciTestDevTest : public DeviceTest {
 protected:
  PciTestDevTest() : host(vm), dev(host) {}
  // Byte, dword accessors on one BAR.
  struct Bar {
    std::function<uint32_t(uint64_t, unsigned)> read;
    std::function<void(uint64_t, uint32_t, unsigned)> write;
  };
  Bar mem_bar() {
    const uint64_t base = *dev.bar_address(0);
    return {[this, base](uint64_t o, unsigned n) { return uint32_t(mmio_in(base + o, n)); },
            [this, base](uint64_t o, uint32_t v, unsigned n) { mmio_out(base + o, v, n); }};
  }
  Bar io_bar() {
    const uint64_t base = *dev.bar_address(1);
    return {[this, base](uint64_t o, unsigned n) { return in(uint16_t(base + o), n); },
            [this, base](uint64_t o, uint32_t v, unsigned n) { out(uint16_t(base + o), v, n); }};
  }
  std::string name(Bar& b) {
    std::string s;
    for (unsigned i = 16; i < 64; ++i) {
      const auto c = char(b.read(i, 1));
      if (!c) break;
      s += c;
    }
    return s;
  }

  vmm::PciHost host;
  vmm::PciTestDev dev;
};

TEST_F(PciTestDevTest, EveryTestCountsItsWrites) {
  const char* names[2][3] = {{"mmio-no-eventfd", "mmio-wildcard-eventfd", "mmio-datamatch-eventfd"},
                             {"portio-no-eventfd", "portio-wildcard-eventfd", "portio-datamatch-eventfd"}};
  for (unsigned type = 0; type < 2; ++type) {
    Bar b = type == 0 ? mem_bar() : io_bar();
    for (unsigned t = 0; t < 3; ++t) {
      SCOPED_TRACE(names[type][t]);
      b.write(0, t, 1);
      EXPECT_EQ(b.read(0, 1), type * 3 + t) << "header: test number";
      EXPECT_EQ(b.read(1, 1), 1u) << "header: width";
      const uint32_t offset = b.read(4, 4);
      EXPECT_EQ(offset, (type == 0 ? 2048u : 128u) + type * 3 + t);
      const uint8_t data = uint8_t(b.read(8, 1));
      EXPECT_EQ(data, t == 1 ? 0xce : 0xfa);
      EXPECT_EQ(b.read(12, 4), 0u) << "count starts at 0";
      EXPECT_EQ(name(b), names[type][t]);
      for (int i = 0; i < 16; ++i) b.write(offset, data, 1);
      EXPECT_EQ(b.read(12, 4), 16u);
      b.write(offset + 1, data, 1);  // elsewhere: not counted
      b.write(offset, uint8_t(data + 1), 1);
      EXPECT_EQ(b.read(12, 4), t == 1 ? 17u : 16u) << "only the wildcard test counts other values";
    }
  }
}

TEST_F(PciTestDevTest, NoTestSelectedReadsZeroAndIgnoresWrites) {
  Bar b = mem_bar();
  EXPECT_EQ(b.read(0, 4), 0u);
  b.write(0, 0, 1);
  b.write(0, 3, 1);  // an unknown test stops the current one
  EXPECT_EQ(b.read(0, 4), 0u);
  EXPECT_EQ(b.read(12, 4), 0u);
}

TEST_F(PciTestDevTest, HeaderReadsStopBeforeTheNamesEnd) {
  Bar b = io_bar();
  b.write(0, 0, 1);
  const unsigned len = 16 + unsigned(std::string("portio-no-eventfd").size()) + 1;
  EXPECT_NE(b.read(len - 2, 1), 0u);
  EXPECT_EQ(b.read(len - 1, 1), 0u);
  EXPECT_EQ(b.read(len, 1), 0u);
  // A dword write to offset 0 starts the test in its low byte; the other bytes go elsewhere.
  b.write(0, 0x00000101, 4);
  EXPECT_EQ(b.read(0, 1), 4u);
}

}  // namespace
}  // namespace nestvm::test
