// ACPI tables for the PC machine, as QEMU's hw/i386/acpi-build.c lays them out for an OS to
// find its CPUs, interrupt controllers and power-management hardware (ACPI 6.4, chapter 5):
// RSDP (revision 2, found by the OS in the BIOS area 0xe0000-0xfffff on a 16-byte boundary),
// RSDT and XSDT, FADT (revision 3, with the PM1 blocks, the PM timer and SCI IRQ 9) with its
// FACS and a DSDT that defines \_S5, and the MADT (a local APIC per vCPU, the I/O APIC, ISA
// interrupt source overrides and the LINT1 NMI). Nothing here runs in the guest: nestvm has no
// firmware, so the machine writes the tables into guest memory before the vCPUs start, in a
// range its memory map reports as reserved.
#pragma once
#include <cstdint>
#include <vector>

#include "vmm/devices/pm_timer.h"
#include "vmm/result.h"

namespace nestvm::hv {
class GuestMemory;
}

namespace nestvm::vmm {

struct AcpiConfig {
  std::vector<uint8_t> apic_ids = {0};  // one enabled local APIC per vCPU, processor UIDs 0..n-1
  uint64_t lapic_addr = 0xfee00000;
  uint64_t ioapic_addr = 0xfec00000;
  uint8_t ioapic_id = 0;
  uint32_t ioapic_gsi_base = 0;
  // ISA IRQs wired level-triggered, active high (the SCI; QEMU adds its PCI link IRQs).
  std::vector<uint8_t> level_irqs = {acpi_pm::kSciIrq};
  uint8_t sci_irq = acpi_pm::kSciIrq;
  uint16_t pm1a_evt = acpi_pm::kPm1aEvt;
  uint16_t pm1a_cnt = acpi_pm::kPm1aCnt;
  uint16_t pm_tmr = acpi_pm::kPmTmr;
  uint8_t rtc_century = 0x32;  // CMOS index of the century
  // Where the tables go: [base, limit), the RSDP first (16-byte aligned).
  uint64_t base = 0xe0000;
  uint64_t limit = 0x100000;

  // The config for n vCPUs with APIC IDs 0..n-1.
  static AcpiConfig for_cpus(unsigned n);
};

// Where each table landed.
struct AcpiTables {
  uint64_t rsdp = 0, rsdt = 0, xsdt = 0, fadt = 0, facs = 0, dsdt = 0, madt = 0;
  uint64_t end = 0;  // one past the last byte written
};

// The tables as bytes, laid out from config.base (for inspection; build_acpi_tables writes
// exactly these).
Result<std::vector<uint8_t>> acpi_table_image(const AcpiConfig& config, AcpiTables* where = nullptr);

// Writes the tables into guest RAM; fails if they do not fit or the range is not RAM.
Result<AcpiTables> build_acpi_tables(hv::GuestMemory& mem, const AcpiConfig& config);

// The 8-bit sum that a valid table's bytes add up to (0).
uint8_t acpi_checksum(const uint8_t* p, size_t len);

}  // namespace nestvm::vmm
