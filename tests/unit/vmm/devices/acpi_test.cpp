// The ACPI tables parsed back from guest memory as an OS finds them: the RSDP in the BIOS
// area, both root tables, every checksum, the FADT's blocks and pointers, the DSDT's \_S5, and
// the MADT's structures.
#include "vmm/devices/acpi.h"

#include <cstring>
#include <string>

#include "unit/vmm/devices/device_test.h"

namespace nestvm::test {
namespace {

class AcpiTest : public DeviceTest {
 protected:
  std::vector<uint8_t> mem(uint64_t addr, size_t len) {
    std::vector<uint8_t> v(len);
    EXPECT_TRUE(vm.mem().read(addr, v.data(), len));
    return v;
  }
  template <typename T>
  T at(uint64_t addr) {
    T v;
    EXPECT_TRUE(vm.mem().read(addr, &v, sizeof v));
    return v;
  }
  // A table's bytes after checking its signature, length and checksum.
  std::vector<uint8_t> table(uint64_t addr, const char* sig) {
    const auto hdr = mem(addr, 36);
    EXPECT_EQ(std::string(hdr.begin(), hdr.begin() + 4), sig);
    uint32_t len;
    std::memcpy(&len, &hdr[4], 4);
    EXPECT_GE(len, 36u);
    auto t = mem(addr, len);
    EXPECT_EQ(vmm::acpi_checksum(t.data(), t.size()), 0) << sig << " checksum";
    EXPECT_EQ(std::string(t.begin() + 10, t.begin() + 16), "NESTVM");
    return t;
  }
  static uint32_t u32(const std::vector<uint8_t>& t, size_t o) {
    uint32_t v;
    std::memcpy(&v, &t[o], 4);
    return v;
  }
  static uint64_t u64(const std::vector<uint8_t>& t, size_t o) {
    uint64_t v;
    std::memcpy(&v, &t[o], 8);
    return v;
  }
  static uint16_t u16(const std::vector<uint8_t>& t, size_t o) { return uint16_t(t[o] | t[o + 1] << 8); }

  // The RSDP as an OS finds it: "RSD PTR " on a 16-byte boundary in 0xe0000-0xfffff.
  uint64_t find_rsdp() {
    for (uint64_t a = 0xe0000; a < 0x100000; a += 16) {
      const auto r = mem(a, 20);
      if (std::memcmp(r.data(), "RSD PTR ", 8) == 0 && vmm::acpi_checksum(r.data(), 20) == 0) return a;
    }
    return 0;
  }
};

TEST_F(AcpiTest, RsdpRootTablesAndChecksums) {
  const auto built = vmm::build_acpi_tables(vm.mem(), vmm::AcpiConfig::for_cpus(4));
  ASSERT_TRUE(built) << built.error();
  const uint64_t rsdp_at = find_rsdp();
  ASSERT_NE(rsdp_at, 0u) << "no RSDP in the BIOS area";
  EXPECT_EQ(rsdp_at, built->rsdp);
  const auto rsdp = mem(rsdp_at, 36);
  EXPECT_EQ(rsdp[15], 2) << "revision 2: XSDT present";
  EXPECT_EQ(u32(rsdp, 20), 36u);
  EXPECT_EQ(vmm::acpi_checksum(rsdp.data(), 36), 0) << "extended checksum";
  const auto rsdt = table(u32(rsdp, 16), "RSDT");
  const auto xsdt = table(u64(rsdp, 24), "XSDT");
  ASSERT_EQ(rsdt.size(), 36u + 2 * 4);
  ASSERT_EQ(xsdt.size(), 36u + 2 * 8);
  for (unsigned i = 0; i < 2; ++i) EXPECT_EQ(u32(rsdt, 36 + 4 * i), u64(xsdt, 36 + 8 * i));
  table(u32(rsdt, 36), "FACP");
  table(u32(rsdt, 40), "APIC");
  EXPECT_LE(built->end, 0x100000u);
}

TEST_F(AcpiTest, FadtDescribesThePmHardware) {
  const auto built = vmm::build_acpi_tables(vm.mem(), vmm::AcpiConfig::for_cpus(1));
  ASSERT_TRUE(built);
  const auto f = table(built->fadt, "FACP");
  ASSERT_EQ(f.size(), 244u);
  EXPECT_EQ(f[8], 3) << "revision";
  EXPECT_EQ(u32(f, 36), built->facs);
  EXPECT_EQ(u32(f, 40), built->dsdt);
  EXPECT_EQ(u16(f, 46), 9) << "SCI_INT";
  EXPECT_EQ(u32(f, 48), 0u) << "no SMI_CMD";
  EXPECT_EQ(u32(f, 56), 0x600u) << "PM1a_EVT_BLK";
  EXPECT_EQ(u32(f, 64), 0x604u) << "PM1a_CNT_BLK";
  EXPECT_EQ(u32(f, 76), 0x608u) << "PM_TMR_BLK";
  EXPECT_EQ(f[88], 4) << "PM1_EVT_LEN";
  EXPECT_EQ(f[89], 2) << "PM1_CNT_LEN";
  EXPECT_EQ(f[91], 4) << "PM_TMR_LEN";
  EXPECT_EQ(f[108], 0x32) << "CENTURY";
  EXPECT_EQ(u32(f, 112) & (1u << 8), 0u) << "TMR_VAL_EXT clear: 24-bit timer";
  EXPECT_EQ(u64(f, 132), built->facs) << "X_FIRMWARE_CTRL";
  EXPECT_EQ(u64(f, 140), built->dsdt) << "X_DSDT";
  // X_PM_TMR_BLK: system I/O, 32 bits, dword access, at the port.
  EXPECT_EQ(f[208], 1);
  EXPECT_EQ(f[209], 32);
  EXPECT_EQ(f[211], 3);
  EXPECT_EQ(u64(f, 212), 0x608u);
  EXPECT_EQ(u64(f, 148 + 4), 0x600u) << "X_PM1a_EVT_BLK";
  EXPECT_EQ(u64(f, 172 + 4), 0x604u) << "X_PM1a_CNT_BLK";

  const auto facs = mem(built->facs, 64);
  EXPECT_EQ(std::string(facs.begin(), facs.begin() + 4), "FACS");
  EXPECT_EQ(u32(facs, 4), 64u);
  EXPECT_EQ(built->facs % 64, 0u) << "the FACS is 64-byte aligned";

  const auto dsdt = table(built->dsdt, "DSDT");
  const std::string aml(dsdt.begin() + 36, dsdt.end());
  EXPECT_EQ(aml, std::string("\x08_S5_\x12\x06\x04\x00\x00\x00\x00", 12)) << "Name (_S5, Package (4) {0, 0, 0, 0})";
}

TEST_F(AcpiTest, MadtListsCpusIoApicOverridesAndNmi) {
  auto config = vmm::AcpiConfig::for_cpus(3);
  config.apic_ids = {0, 2, 5};
  const auto built = vmm::build_acpi_tables(vm.mem(), config);
  ASSERT_TRUE(built);
  const auto m = table(built->madt, "APIC");
  EXPECT_EQ(u32(m, 36), 0xfee00000u);
  EXPECT_EQ(u32(m, 40), 1u) << "PCAT_COMPAT";
  std::vector<std::pair<unsigned, unsigned>> lapics;  // (UID, APIC ID)
  unsigned ioapics = 0, nmis = 0;
  std::vector<std::tuple<unsigned, unsigned, unsigned>> overrides;  // (source, GSI, flags)
  size_t p = 44;
  while (p < m.size()) {
    const uint8_t type = m[p], len = m[p + 1];
    ASSERT_GE(len, 2);
    ASSERT_LE(p + len, m.size()) << "a structure runs past the table";
    switch (type) {
      case 0:
        ASSERT_EQ(len, 8);
        EXPECT_EQ(u32(m, p + 4), 1u) << "enabled";
        lapics.emplace_back(m[p + 2], m[p + 3]);
        break;
      case 1:
        ASSERT_EQ(len, 12);
        ++ioapics;
        EXPECT_EQ(m[p + 2], 0) << "I/O APIC ID";
        EXPECT_EQ(u32(m, p + 4), 0xfec00000u);
        EXPECT_EQ(u32(m, p + 8), 0u) << "GSI base";
        break;
      case 2:
        ASSERT_EQ(len, 10);
        EXPECT_EQ(m[p + 2], 0) << "ISA";
        overrides.emplace_back(m[p + 3], u32(m, p + 4), u16(m, p + 8));
        break;
      case 4:
        ASSERT_EQ(len, 6);
        ++nmis;
        EXPECT_EQ(m[p + 2], 0xff) << "all processors";
        EXPECT_EQ(m[p + 5], 1) << "LINT1";
        break;
      default:
        ADD_FAILURE() << "unexpected MADT structure " << unsigned(type);
    }
    p += len;
  }
  EXPECT_EQ(p, m.size()) << "the structures fill the table exactly";
  EXPECT_EQ(lapics, (std::vector<std::pair<unsigned, unsigned>>{{0, 0}, {1, 2}, {2, 5}}));
  EXPECT_EQ(ioapics, 1u);
  EXPECT_EQ(nmis, 1u);
  EXPECT_EQ(overrides, (std::vector<std::tuple<unsigned, unsigned, unsigned>>{{0, 2, 0}, {9, 9, 0x0d}}))
      << "IRQ0 -> GSI 2 conforming; the SCI level-triggered, active high";
}

TEST_F(AcpiTest, FailuresAreMessages) {
  EXPECT_FALSE(vmm::build_acpi_tables(vm.mem(), vmm::AcpiConfig::for_cpus(0)));
  auto config = vmm::AcpiConfig::for_cpus(1);
  config.base = 0xe0008;
  EXPECT_FALSE(vmm::build_acpi_tables(vm.mem(), config)) << "the RSDP needs 16-byte alignment";
  config = vmm::AcpiConfig::for_cpus(255);
  config.limit = config.base + 0x400;
  const auto r = vmm::build_acpi_tables(vm.mem(), config);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("do not fit"), std::string::npos) << r.error();
  hv::Vm no_ram(small_vm_config());
  EXPECT_FALSE(vmm::build_acpi_tables(no_ram.mem(), vmm::AcpiConfig::for_cpus(1))) << "no RAM at 0xe0000";
}

}  // namespace
}  // namespace nestvm::test
