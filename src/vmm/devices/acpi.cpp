#include "vmm/devices/acpi.h"

#include <fmt/format.h>

#include <cstring>
#include <string_view>

#include "hv/guest_memory.h"

namespace nestvm::vmm {

namespace {

// Generic Address Structure (ACPI 6.4, 5.2.3.2).
namespace gas {
constexpr uint8_t kSystemIo = 1;
constexpr uint8_t kAccessWord = 2, kAccessDword = 3;
}  // namespace gas

// MADT structure types (ACPI 6.4, Table 5.44) and flags.
namespace madt {
constexpr uint8_t kLocalApic = 0, kIoApic = 1, kInterruptSourceOverride = 2, kLocalApicNmi = 4;
constexpr uint32_t kPcatCompat = 1;
constexpr uint32_t kLapicEnabled = 1;
constexpr uint16_t kActiveHighLevel = 0x000d;  // polarity 01 (high), trigger mode 11 (level)
}  // namespace madt

// FADT fixed feature flags (ACPI 6.4, Table 5.10) and IA-PC boot architecture flags (5.11).
namespace fadt {
constexpr uint32_t kWbinvd = 1u << 0, kProcC1 = 1u << 2, kPwrButton = 1u << 4, kSlpButton = 1u << 5,
                   kRtcS4 = 1u << 7;
constexpr uint16_t kLegacyDevices = 1u << 0, kVgaNotPresent = 1u << 2;
constexpr unsigned kLength = 244;  // revision 3 (ACPI 2.0 and later layout, without the sleep registers)
}  // namespace fadt

// The OEM fields of every header.
constexpr std::string_view kOemId = "NESTVM", kOemTableId = "NESTVMPC", kCreatorId = "NVMM";

class Bytes {
 public:
  explicit Bytes(std::vector<uint8_t>& b) : b_(b) {}
  size_t pos() const { return b_.size(); }
  void align(size_t a) { b_.resize((b_.size() + a - 1) / a * a, 0); }
  void u8(uint64_t v) { b_.push_back(uint8_t(v)); }
  void u16(uint64_t v) { le(v, 2); }
  void u32(uint64_t v) { le(v, 4); }
  void u64(uint64_t v) { le(v, 8); }
  void str(std::string_view s, size_t n) {
    for (size_t i = 0; i < n; ++i) u8(i < s.size() ? uint8_t(s[i]) : ' ');
  }
  void gas(uint8_t space, uint8_t bit_width, uint8_t access, uint64_t addr) {
    u8(space);
    u8(bit_width);
    u8(0);
    u8(access);
    u64(addr);
  }
  void put32(size_t at, uint32_t v) { std::memcpy(&b_[at], &v, 4); }
  std::vector<uint8_t>& raw() { return b_; }

  // The 36-byte System Description Table header (ACPI 6.4, 5.2.6); finish() fills in
  // length and checksum.
  size_t header(std::string_view sig, uint8_t revision) {
    const size_t at = pos();
    str(sig, 4);
    u32(0);
    u8(revision);
    u8(0);
    str(kOemId, 6);
    str(kOemTableId, 8);
    u32(1);
    str(kCreatorId, 4);
    u32(1);
    return at;
  }
  void finish(size_t at) {
    put32(at + 4, uint32_t(pos() - at));
    b_[at + 9] = uint8_t(-acpi_checksum(&b_[at], pos() - at));
  }

 private:
  void le(uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; ++i) b_.push_back(uint8_t(v >> (8 * i)));
  }
  std::vector<uint8_t>& b_;
};

// The DSDT's AML: Name (_S5, Package (4) {0, 0, 0, 0}), the sleep type that AcpiPm1 turns into
// a power-off (SLP_TYPa = 0), as QEMU's DSDT has it.
constexpr uint8_t kDsdtAml[] = {
    0x08, '_', 'S', '5', '_',  // NameOp, NameSeg
    0x12, 0x06, 0x04,          // PackageOp, PkgLength 6, NumElements 4
    0x00, 0x00, 0x00, 0x00,    // ZeroOp x 4
};

}  // namespace

uint8_t acpi_checksum(const uint8_t* p, size_t len) {
  uint8_t sum = 0;
  for (size_t i = 0; i < len; ++i) sum = uint8_t(sum + p[i]);
  return sum;
}

AcpiConfig AcpiConfig::for_cpus(unsigned n) {
  AcpiConfig c;
  c.apic_ids.clear();
  for (unsigned i = 0; i < n; ++i) c.apic_ids.push_back(uint8_t(i));
  return c;
}

Result<std::vector<uint8_t>> acpi_table_image(const AcpiConfig& c, AcpiTables* where) {
  if (c.apic_ids.empty() || c.apic_ids.size() > 255)
    return Error{fmt::format("ACPI: {} CPUs do not fit an xAPIC MADT", c.apic_ids.size())};
  if (c.base % 16) return Error{fmt::format("ACPI: the RSDP address {:#x} is not 16-byte aligned", c.base)};
  std::vector<uint8_t> img;
  Bytes b(img);
  AcpiTables t;
  const auto addr = [&](size_t at) { return c.base + at; };

  // RSDP (5.2.5.3); the addresses are patched in below.
  const size_t rsdp = b.pos();
  b.str("RSD PTR ", 8);
  b.u8(0);
  b.str(kOemId, 6);
  b.u8(2);
  b.u32(0);
  b.u32(36);
  b.u64(0);
  b.u8(0);
  b.str(std::string_view("\0\0\0", 3), 3);

  // FACS (5.2.10): 64-byte aligned, no checksum.
  b.align(64);
  const size_t facs = b.pos();
  b.str("FACS", 4);
  b.u32(64);
  b.u32(0);  // hardware signature
  b.u32(0);  // firmware waking vector
  b.u32(0);  // global lock
  b.u32(0);  // flags
  b.u64(0);  // X firmware waking vector
  b.u8(2);   // version
  b.raw().resize(facs + 64, 0);

  b.align(16);
  const size_t dsdt = b.header("DSDT", 2);
  for (uint8_t x : kDsdtAml) b.u8(x);
  b.finish(dsdt);

  // FADT (5.2.9), revision 3.
  b.align(16);
  const size_t fadt = b.header("FACP", 3);
  b.u32(addr(facs));           // FIRMWARE_CTRL
  b.u32(addr(dsdt));           // DSDT
  b.u8(0);                     // reserved (INT_MODEL in ACPI 1.0)
  b.u8(0);                     // Preferred_PM_Profile: unspecified
  b.u16(c.sci_irq);            // SCI_INT
  b.u32(0);                    // SMI_CMD: no legacy mode to leave, the machine is always in ACPI mode
  b.u8(0);                     // ACPI_ENABLE
  b.u8(0);                     // ACPI_DISABLE
  b.u8(0);                     // S4BIOS_REQ
  b.u8(0);                     // PSTATE_CNT
  b.u32(c.pm1a_evt);           // PM1a_EVT_BLK
  b.u32(0);                    // PM1b_EVT_BLK
  b.u32(c.pm1a_cnt);           // PM1a_CNT_BLK
  b.u32(0);                    // PM1b_CNT_BLK
  b.u32(0);                    // PM2_CNT_BLK
  b.u32(c.pm_tmr);             // PM_TMR_BLK
  b.u32(0);                    // GPE0_BLK
  b.u32(0);                    // GPE1_BLK
  b.u8(4);                     // PM1_EVT_LEN
  b.u8(2);                     // PM1_CNT_LEN
  b.u8(0);                     // PM2_CNT_LEN
  b.u8(4);                     // PM_TMR_LEN
  b.u8(0);                     // GPE0_BLK_LEN
  b.u8(0);                     // GPE1_BLK_LEN
  b.u8(0);                     // GPE1_BASE
  b.u8(0);                     // CST_CNT
  b.u16(0xfff);                // P_LVL2_LAT > 100: no C2
  b.u16(0xffff);               // P_LVL3_LAT > 1000: no C3
  b.u16(0);                    // FLUSH_SIZE
  b.u16(0);                    // FLUSH_STRIDE
  b.u8(0);                     // DUTY_OFFSET
  b.u8(0);                     // DUTY_WIDTH
  b.u8(0);                     // DAY_ALRM: no day-of-month alarm
  b.u8(0);                     // MON_ALRM
  b.u8(c.rtc_century);         // CENTURY
  b.u16(fadt::kLegacyDevices | fadt::kVgaNotPresent);  // IAPC_BOOT_ARCH: no 8042, no VGA
  b.u8(0);                     // reserved
  // No sleep or power button as fixed hardware (kPwrButton/kSlpButton say "absent");
  // TMR_VAL_EXT clear: the PM timer is 24 bits.
  b.u32(fadt::kWbinvd | fadt::kProcC1 | fadt::kPwrButton | fadt::kSlpButton | fadt::kRtcS4);
  b.gas(0, 0, 0, 0);           // RESET_REG: none (RESET_REG_SUP clear)
  b.u8(0);                     // RESET_VALUE
  b.u16(0);                    // ARM_BOOT_ARCH
  b.u8(0);                     // FADT minor version
  b.u64(addr(facs));           // X_FIRMWARE_CTRL
  b.u64(addr(dsdt));           // X_DSDT
  b.gas(gas::kSystemIo, 32, gas::kAccessWord, c.pm1a_evt);   // X_PM1a_EVT_BLK
  b.gas(0, 0, 0, 0);                                         // X_PM1b_EVT_BLK
  b.gas(gas::kSystemIo, 16, gas::kAccessWord, c.pm1a_cnt);   // X_PM1a_CNT_BLK
  b.gas(0, 0, 0, 0);                                         // X_PM1b_CNT_BLK
  b.gas(0, 0, 0, 0);                                         // X_PM2_CNT_BLK
  b.gas(gas::kSystemIo, 32, gas::kAccessDword, c.pm_tmr);    // X_PM_TMR_BLK
  b.gas(0, 0, 0, 0);                                         // X_GPE0_BLK
  b.gas(0, 0, 0, 0);                                         // X_GPE1_BLK
  b.finish(fadt);

  // MADT (5.2.12), revision 1 as QEMU's.
  b.align(16);
  const size_t madt = b.header("APIC", 1);
  b.u32(c.lapic_addr);
  b.u32(madt::kPcatCompat);
  for (size_t i = 0; i < c.apic_ids.size(); ++i) {
    b.u8(madt::kLocalApic);
    b.u8(8);
    b.u8(i);  // ACPI processor UID
    b.u8(c.apic_ids[i]);
    b.u32(madt::kLapicEnabled);
  }
  b.u8(madt::kIoApic);
  b.u8(12);
  b.u8(c.ioapic_id);
  b.u8(0);
  b.u32(c.ioapic_addr);
  b.u32(c.ioapic_gsi_base);
  // The PIT's IRQ 0 is the I/O APIC's pin 2 (the 8259's cascade input takes pin 0).
  b.u8(madt::kInterruptSourceOverride);
  b.u8(10);
  b.u8(0);  // ISA
  b.u8(0);
  b.u32(2);
  b.u16(0);  // conforms to the bus
  for (uint8_t irq : c.level_irqs) {
    b.u8(madt::kInterruptSourceOverride);
    b.u8(10);
    b.u8(0);
    b.u8(irq);
    b.u32(irq);
    b.u16(madt::kActiveHighLevel);
  }
  // Every processor's LINT1 is its NMI input (the PC wiring).
  b.u8(madt::kLocalApicNmi);
  b.u8(6);
  b.u8(0xff);  // all processors
  b.u16(0);
  b.u8(1);
  b.finish(madt);

  b.align(16);
  const size_t rsdt = b.header("RSDT", 1);
  b.u32(addr(fadt));
  b.u32(addr(madt));
  b.finish(rsdt);

  b.align(16);
  const size_t xsdt = b.header("XSDT", 1);
  b.u64(addr(fadt));
  b.u64(addr(madt));
  b.finish(xsdt);

  // The RSDP's pointers, checksum over its first 20 bytes (ACPI 1.0 part) and extended
  // checksum over all 36.
  b.put32(rsdp + 16, uint32_t(addr(rsdt)));
  const uint64_t x = addr(xsdt);
  std::memcpy(&img[rsdp + 24], &x, 8);
  img[rsdp + 8] = uint8_t(-acpi_checksum(&img[rsdp], 20));
  img[rsdp + 32] = uint8_t(-acpi_checksum(&img[rsdp], 36));

  if (c.base + img.size() > c.limit)
    return Error{fmt::format("ACPI: {} bytes of tables do not fit in [{:#x}, {:#x})", img.size(), c.base, c.limit)};
  if (c.base + img.size() > (1ull << 32)) return Error{"ACPI: the tables must lie below 4 GiB"};
  t = {addr(rsdp), addr(rsdt), addr(xsdt), addr(fadt), addr(facs), addr(dsdt), addr(madt), c.base + img.size()};
  if (where) *where = t;
  return img;
}

Result<AcpiTables> build_acpi_tables(hv::GuestMemory& mem, const AcpiConfig& config) {
  AcpiTables t;
  auto img = acpi_table_image(config, &t);
  if (!img) return Error{img.error()};
  if (!mem.write(config.base, img->data(), img->size()))
    return Error{fmt::format("ACPI: guest memory at [{:#x}, {:#x}) is not RAM", config.base, t.end)};
  return t;
}

}  // namespace nestvm::vmm
