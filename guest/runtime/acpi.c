#include "runtime/acpi.h"

#include "runtime/libc.h"

uint8_t acpi_checksum(const void* p, uint32_t len) {
  const uint8_t* b = p;
  uint8_t sum = 0;
  for (uint32_t i = 0; i < len; ++i) sum = (uint8_t)(sum + b[i]);
  return sum;
}

static const struct acpi_rsdp* scan(uint64_t start, uint64_t len) {
  for (uint64_t a = start; a + 20 <= start + len; a += 16) {
    const struct acpi_rsdp* r = (const void*)(uintptr_t)a;
    if (!memcmp(r->signature, "RSD PTR ", 8) && acpi_checksum(r, 20) == 0) return r;
  }
  return NULL;
}

const struct acpi_rsdp* acpi_find_rsdp(void) {
  /* ACPI 6.4, 5.2.5.1: the EBDA segment is the word at 0x40e. */
  uint64_t ebda = (uint64_t)(*(volatile uint16_t*)0x40e) << 4;
  const struct acpi_rsdp* r = NULL;
  if (ebda >= 0x80000 && ebda < 0xa0000) r = scan(ebda, 1024);
  return r ? r : scan(0xe0000, 0x20000);
}

const struct acpi_header* acpi_find_table(const char sig[4]) {
  const struct acpi_rsdp* r = acpi_find_rsdp();
  if (!r) return NULL;
  if (r->revision >= 2 && r->xsdt_address) {
    const struct acpi_header* x = (const void*)(uintptr_t)r->xsdt_address;
    unsigned n = (x->length - sizeof(*x)) / 8;
    const uint8_t* entries = (const uint8_t*)(x + 1);
    for (unsigned i = 0; i < n; ++i) {
      uint64_t a;
      memcpy(&a, entries + 8 * i, 8);
      const struct acpi_header* t = (const void*)(uintptr_t)a;
      if (a && !memcmp(t->signature, sig, 4)) return t;
    }
    return NULL;
  }
  const struct acpi_header* rsdt = (const void*)(uintptr_t)r->rsdt_address;
  if (!rsdt) return NULL;
  unsigned n = (rsdt->length - sizeof(*rsdt)) / 4;
  const uint8_t* entries = (const uint8_t*)(rsdt + 1);
  for (unsigned i = 0; i < n; ++i) {
    uint32_t a;
    memcpy(&a, entries + 4 * i, 4);
    const struct acpi_header* t = (const void*)(uintptr_t)a;
    if (a && !memcmp(t->signature, sig, 4)) return t;
  }
  return NULL;
}

bool acpi_parse_madt(struct madt_info* out) {
  memset(out, 0, sizeof(*out));
  const struct acpi_header* madt = acpi_find_table("APIC");
  if (!madt) return false;
  const uint8_t* p = (const uint8_t*)madt + sizeof(*madt);
  memcpy(&out->lapic_address, p, 4);
  const uint8_t* end = (const uint8_t*)madt + madt->length;
  for (p += 8; p + 2 <= end;) {
    const struct madt_entry* e = (const void*)p;
    if (e->length < 2) break;
    if (e->type == MADT_LOCAL_APIC && e->length >= 8) {
      uint32_t flags;
      memcpy(&flags, p + 4, 4);
      if ((flags & 1) && out->cpus < ARRAY_SIZE(out->apic_ids)) out->apic_ids[out->cpus++] = p[3];
    } else if (e->type == MADT_IO_APIC && e->length >= 12) {
      if (out->ioapics++ == 0) {
        memcpy(&out->ioapic_address, p + 4, 4);
        memcpy(&out->ioapic_gsi_base, p + 8, 4);
      }
    }
    p += e->length;
  }
  return true;
}

unsigned acpi_isa_irq_to_gsi(unsigned irq) {
  const struct acpi_header* madt = acpi_find_table("APIC");
  if (!madt) return irq;
  const uint8_t* p = (const uint8_t*)madt + sizeof(*madt) + 8;
  const uint8_t* end = (const uint8_t*)madt + madt->length;
  while (p + 2 <= end && p[1] >= 2) {
    if (p[0] == MADT_INTERRUPT_OVERRIDE && p[1] >= 10 && p[3] == irq) {
      uint32_t gsi;
      memcpy(&gsi, p + 4, 4);
      return gsi;
    }
    p += p[1];
  }
  return irq;
}
