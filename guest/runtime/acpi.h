/* ACPI tables as an operating system finds them (ACPI 6.4, 5.2): the RSDP in the EBDA or the
 * BIOS area, the RSDT/XSDT, and the MADT's processors, I/O APICs and interrupt overrides. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct acpi_rsdp {
  char signature[8]; /* "RSD PTR " */
  uint8_t checksum;  /* over the first 20 bytes */
  char oem_id[6];
  uint8_t revision; /* 0: ACPI 1.0 (20 bytes); 2: ACPI 2.0+ (36 bytes) */
  uint32_t rsdt_address;
  uint32_t length;
  uint64_t xsdt_address;
  uint8_t extended_checksum;
  uint8_t reserved[3];
} __attribute__((packed));

struct acpi_header {
  char signature[4];
  uint32_t length;
  uint8_t revision;
  uint8_t checksum;
  char oem_id[6];
  char oem_table_id[8];
  uint32_t oem_revision;
  uint32_t creator_id;
  uint32_t creator_revision;
} __attribute__((packed));

/* MADT interrupt controller structure types (ACPI 6.4, Table 5.21). */
#define MADT_LOCAL_APIC 0
#define MADT_IO_APIC 1
#define MADT_INTERRUPT_OVERRIDE 2

struct madt_entry {
  uint8_t type;
  uint8_t length;
} __attribute__((packed));

uint8_t acpi_checksum(const void* p, uint32_t len);
/* Searches the first KiB of the EBDA and 0xe0000-0xfffff on 16-byte boundaries for a
 * signature with a valid checksum. */
const struct acpi_rsdp* acpi_find_rsdp(void);
/* The table with this signature from the XSDT (revision >= 2) or RSDT; NULL if absent.
 * Checksums are not checked here (the ACPI test checks them). */
const struct acpi_header* acpi_find_table(const char sig[4]);

struct madt_info {
  uint32_t lapic_address;
  unsigned cpus; /* enabled processor local APICs */
  uint8_t apic_ids[32];
  unsigned ioapics;
  uint32_t ioapic_address;
  uint32_t ioapic_gsi_base;
};
bool acpi_parse_madt(struct madt_info* out);
/* The GSI of an ISA IRQ: the MADT's interrupt source override, or the IRQ number itself. */
unsigned acpi_isa_irq_to_gsi(unsigned irq);
