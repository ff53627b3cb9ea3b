/* ACPI tables as an operating system finds and trusts them (ACPI 6.4, chapter 5.2): the RSDP
 * in the EBDA or the BIOS area with valid checksums, the RSDT/XSDT and every table it lists,
 * all in memory the memory map does not hand out; the MADT lists every CPU, the I/O APIC and
 * the PC's ISA override (IRQ 0 on GSI 2); the FADT points at the DSDT, the FACS and the ACPI
 * PM timer, which counts at 3.579545 MHz.
 * Arguments: cpus=<-smp>. */
#include "runtime/acpi.h"
#include "runtime/apic.h"
#include "runtime/libc.h"
#include "runtime/multiboot.h"
#include "runtime/clock.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/x86.h"

static unsigned tables_checked;

/* A table an OS may use: checksum, a plausible length, and not in available memory. */
static bool check_table(const struct acpi_header* t, const char* sig) {
  char name[80];
  snprintf(name, sizeof(name), "%.4s: signature, checksum and length", sig);
  if (!t) {
    report_fail(name, "null pointer");
    return false;
  }
  bool sane = t->length >= sizeof(*t) && t->length < (1u << 20);
  uint8_t sum = sane ? acpi_checksum(t, t->length) : 0xff;
  if (!report_why(!memcmp(t->signature, sig, 4) && sane && sum == 0, name,
                  "signature \"%.4s\", length %u, bytes sum to %#x", t->signature, t->length, sum))
    return false;
  snprintf(name, sizeof(name), "%.4s: not in memory the memory map calls available", sig);
  report_why(!multiboot_mmap_is_available((uint64_t)(uintptr_t)t, t->length), name, "at %p", (const void*)t);
  tables_checked++;
  return true;
}

static void check_rsdp(const struct acpi_rsdp* r) {
  report_why(r != NULL, "RSDP found in the EBDA or 0xe0000-0xfffff with a valid checksum", "not found");
  if (!r) return;
  printf("RSDP at %p revision %u OEM \"%.6s\" RSDT %#x\n", (const void*)r, r->revision, r->oem_id, r->rsdt_address);
  if (r->revision >= 2) {
    report_why(r->length >= 36 && acpi_checksum(r, r->length) == 0, "RSDP extended checksum (revision 2)",
               "length %u", r->length);
    report_why(r->xsdt_address != 0, "RSDP revision 2 has an XSDT", "XSDT address 0");
  }
  report(r->rsdt_address != 0 || (r->revision >= 2 && r->xsdt_address), "RSDP points at an RSDT or XSDT");
}

static void check_root(const struct acpi_rsdp* r) {
  const struct acpi_header* root;
  unsigned entry_size;
  if (r->revision >= 2 && r->xsdt_address) {
    root = (const void*)(uintptr_t)r->xsdt_address;
    entry_size = 8;
    if (!check_table(root, "XSDT")) return;
  } else {
    root = (const void*)(uintptr_t)r->rsdt_address;
    entry_size = 4;
    if (!check_table(root, "RSDT")) return;
  }
  unsigned n = (root->length - sizeof(*root)) / entry_size;
  report_why((root->length - sizeof(*root)) % entry_size == 0, "root table holds whole entries", "length %u",
             root->length);
  for (unsigned i = 0; i < n; ++i) {
    uint64_t a = 0;
    memcpy(&a, (const uint8_t*)(root + 1) + i * entry_size, entry_size);
    const struct acpi_header* t = (const void*)(uintptr_t)a;
    printf("  %.4s at %#lx, %u bytes, revision %u, OEM \"%.6s\"\n", t->signature, a, t->length, t->revision, t->oem_id);
    char sig[5] = {0};
    memcpy(sig, t->signature, 4);
    check_table(t, sig);
  }
}

static void check_madt(void) {
  const struct acpi_header* madt = acpi_find_table("APIC");
  report_why(madt != NULL, "the root table lists a MADT (\"APIC\")", "missing");
  if (!madt) return;
  const uint8_t* body = (const uint8_t*)(madt + 1);
  uint32_t lapic_addr, flags;
  memcpy(&lapic_addr, body, 4);
  memcpy(&flags, body + 4, 4);
  check_eq("MADT local APIC address", lapic_addr, LAPIC_BASE);
  report_why(flags & 1, "MADT flags: PCAT_COMPAT (dual 8259s present)", "flags %#x", flags);

  struct madt_info m;
  acpi_parse_madt(&m);
  printf("MADT: %u CPUs, %u I/O APICs at %#x (GSI base %u)\n", m.cpus, m.ioapics, m.ioapic_address, m.ioapic_gsi_base);
  check_eq("MADT lists one enabled processor local APIC per CPU", m.cpus, arg_u64("cpus", 1));
  bool unique = true, has_bsp = false;
  for (unsigned i = 0; i < m.cpus; ++i) {
    if (m.apic_ids[i] == lapic_id()) has_bsp = true;
    for (unsigned j = 0; j < i; ++j) unique = unique && m.apic_ids[i] != m.apic_ids[j];
  }
  report(unique, "MADT APIC IDs are unique");
  report_why(has_bsp, "MADT lists the boot CPU's APIC ID", "BSP APIC ID %u", lapic_id());
  check_eq("MADT lists one I/O APIC", m.ioapics, 1);
  check_eq("I/O APIC address", m.ioapic_address, IOAPIC_BASE);
  check_eq("I/O APIC GSI base", m.ioapic_gsi_base, 0);
  /* The I/O APIC entry's ID is the ID its own register reports (82093AA IOAPICID[27:24]). */
  const uint8_t* p = body + 8;
  const uint8_t* end = (const uint8_t*)madt + madt->length;
  int ioapic_id = -1;
  bool irq0_override = false, sizes_ok = true;
  for (; p + 2 <= end && p[1] >= 2; p += p[1]) {
    if (p + p[1] > end) sizes_ok = false;
    if (p[0] == MADT_IO_APIC && ioapic_id < 0) ioapic_id = p[2];
    if (p[0] == MADT_INTERRUPT_OVERRIDE && p[3] == 0) {
      uint32_t gsi;
      memcpy(&gsi, p + 4, 4);
      irq0_override = p[2] == 0 && gsi == 2;
    }
  }
  report_why(sizes_ok && p == end, "MADT structures fill the table exactly", "stopped %ld bytes early",
             (long)(end - p));
  check_eq("MADT I/O APIC ID matches the I/O APIC's ID register", (unsigned)ioapic_id,
           (ioapic_read(IOAPIC_REG_ID) >> 24) & 0xf);
  report(irq0_override, "MADT overrides ISA IRQ 0 to GSI 2 (the PIT on the I/O APIC's pin 2)");
}

static uint32_t pm_read(uint16_t port, bool ext) { return inl(port) & (ext ? 0xffffffffu : 0xffffffu); }

static void check_fadt(void) {
  const uint8_t* f = (const uint8_t*)acpi_find_table("FACP");
  report_why(f != NULL, "the root table lists a FADT (\"FACP\")", "missing");
  if (!f) return;
  uint32_t facs, dsdt, pm_tmr_blk, flags;
  memcpy(&facs, f + 36, 4);
  memcpy(&dsdt, f + 40, 4);
  memcpy(&pm_tmr_blk, f + 76, 4);
  uint32_t fadt_len;
  memcpy(&fadt_len, f + 4, 4);
  flags = 0;
  if (fadt_len >= 116) memcpy(&flags, f + 112, 4);
  uint16_t sci;
  memcpy(&sci, f + 46, 2);
  uint8_t pm_tmr_len = f[91];
  printf("FADT: FACS %#x DSDT %#x SCI %u PM_TMR_BLK %#x len %u flags %#x\n", facs, dsdt, sci, pm_tmr_blk, pm_tmr_len,
         flags);
  check_table((const void*)(uintptr_t)dsdt, "DSDT");
  const struct acpi_header* fs = (const void*)(uintptr_t)facs;
  report_why(facs && !memcmp(fs->signature, "FACS", 4) && fs->length >= 64, "FADT points at a FACS",
             "at %#x", facs);
  report_why(pm_tmr_blk != 0 && pm_tmr_blk < 0x10000, "FADT has a PM timer block in I/O space", "%#x", pm_tmr_blk);
  check_eq("PM_TMR_LEN is 4", pm_tmr_len, 4);
  if (!pm_tmr_blk || pm_tmr_blk >= 0x10000) return;

  /* ACPI 6.4, 4.8.3.3: a 24-bit (32 with TMR_VAL_EXT) counter at 3.579545 MHz. */
  bool ext = flags & (1u << 8);
  uint16_t port = (uint16_t)pm_tmr_blk;
  uint32_t mask = ext ? 0xffffffffu : 0xffffffu;
  uint32_t prev = pm_read(port, ext), first = prev;
  unsigned backwards = 0;
  for (int i = 0; i < 2000; ++i) {
    uint32_t v = pm_read(port, ext);
    if (((v - prev) & mask) > (mask >> 1)) backwards++;
    prev = v;
  }
  report_why(backwards == 0, "PM timer never goes backwards over 2000 reads", "%u times", backwards);
  report_why(prev != first, "PM timer counts", "stuck at %#x", prev);
  /* The rate against the TSC (itself calibrated against the PIT), over 20 ms between adjacent
   * reads of both. */
  uint64_t tsc0 = rdtsc();
  uint32_t pm0 = pm_read(port, ext);
  udelay(20000);
  uint32_t pm1 = pm_read(port, ext);
  uint64_t tsc1 = rdtsc();
  uint64_t khz = ((uint64_t)((pm1 - pm0) & mask)) * tsc_khz() / (tsc1 - tsc0);
  printf("PM timer: %lu kHz (want 3580)\n", khz);
  report_why(khz > 3580 * 8 / 10 && khz < 3580 * 12 / 10, "PM timer runs at 3.579545 MHz (within 20%, against the TSC)",
             "%lu kHz", khz);
}

int main(int argc, char** argv) {
  const struct acpi_rsdp* r = acpi_find_rsdp();
  check_rsdp(r);
  if (!r) return 0;
  check_root(r);
  check_madt();
  check_fadt();
  printf("%u tables checked\n", tables_checked);
  return 0;
}
