/* PCI configuration mechanism #1 (PCI Local Bus Specification 3.0, 3.2.2.3.2): CONFIG_ADDRESS at
 * 0xcf8 and CONFIG_DATA at 0xcfc-0xcff. The i440FX host bridge answers at 00:00.0 as on QEMU's
 * pc machine; absent functions read all ones; read-only registers ignore writes. With
 * "testdev=1" (and -device pci-testdev), QEMU's PCI test device is found and its BARs sized. */
#include "runtime/libc.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/x86.h"

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc

static uint32_t address(unsigned bus, unsigned dev, unsigned fn, unsigned reg) {
  return 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (reg & 0xfc);
}
static uint32_t cfg_read32(unsigned bus, unsigned dev, unsigned fn, unsigned reg) {
  outl(PCI_CONFIG_ADDRESS, address(bus, dev, fn, reg));
  return inl(PCI_CONFIG_DATA);
}
static uint16_t cfg_read16(unsigned bus, unsigned dev, unsigned fn, unsigned reg) {
  outl(PCI_CONFIG_ADDRESS, address(bus, dev, fn, reg));
  return inw((uint16_t)(PCI_CONFIG_DATA + (reg & 2)));
}
static uint8_t cfg_read8(unsigned bus, unsigned dev, unsigned fn, unsigned reg) {
  outl(PCI_CONFIG_ADDRESS, address(bus, dev, fn, reg));
  return inb((uint16_t)(PCI_CONFIG_DATA + (reg & 3)));
}
static void cfg_write32(unsigned bus, unsigned dev, unsigned fn, unsigned reg, uint32_t v) {
  outl(PCI_CONFIG_ADDRESS, address(bus, dev, fn, reg));
  outl(PCI_CONFIG_DATA, v);
}
static void cfg_write16(unsigned bus, unsigned dev, unsigned fn, unsigned reg, uint16_t v) {
  outl(PCI_CONFIG_ADDRESS, address(bus, dev, fn, reg));
  outw((uint16_t)(PCI_CONFIG_DATA + (reg & 2)), v);
}

static void check_host_bridge(void) {
  outl(PCI_CONFIG_ADDRESS, 0x80000000u);
  check_eq("CONFIG_ADDRESS reads back what was written", inl(PCI_CONFIG_ADDRESS), 0x80000000u);
  outl(PCI_CONFIG_ADDRESS, 0x80fffefcu);
  check_eq("CONFIG_ADDRESS keeps bus, device, function and register", inl(PCI_CONFIG_ADDRESS), 0x80fffefcu);

  uint32_t id = cfg_read32(0, 0, 0, 0x00);
  printf("00:00.0 %04x:%04x\n", id & 0xffff, id >> 16);
  check_eq("00:00.0 vendor is Intel (0x8086)", id & 0xffff, 0x8086);
  check_eq("00:00.0 device is the 440FX host bridge (0x1237)", id >> 16, 0x1237);
  uint32_t class_rev = cfg_read32(0, 0, 0, 0x08);
  check_eq("00:00.0 class is host bridge (06/00/00)", class_rev >> 8, 0x060000);
  check_eq("00:00.0 header type 0", cfg_read8(0, 0, 0, 0x0e) & 0x7f, 0);
  check_eq("byte read at 0xcfc: vendor low byte", cfg_read8(0, 0, 0, 0x00), 0x86);
  check_eq("byte read at 0xcfd: vendor high byte", cfg_read8(0, 0, 0, 0x01), 0x80);
  check_eq("word read at 0xcfe: device ID", cfg_read16(0, 0, 0, 0x02), 0x1237);
  check_eq("byte read at 0xcff: class code", cfg_read8(0, 0, 0, 0x0b), 0x06);

  cfg_write16(0, 0, 0, 0x00, 0x1234);
  check_eq("a write to the read-only vendor ID is ignored", cfg_read16(0, 0, 0, 0x00), 0x8086);

  check_eq("an absent device (00:1f.0) reads all ones", cfg_read32(0, 31, 0, 0x00), 0xffffffffu);
  check_eq("a bus behind no bridge (bus 7) reads all ones", cfg_read32(7, 0, 0, 0x00), 0xffffffffu);
  outl(PCI_CONFIG_ADDRESS, 0x00000000u);
  check_eq("with the enable bit clear, CONFIG_DATA reads all ones", inl(PCI_CONFIG_DATA), 0xffffffffu);
}

struct found {
  unsigned dev, fn;
  bool ok;
};

static void enumerate(struct found* testdev) {
  unsigned functions = 0, bad_header = 0;
  for (unsigned dev = 0; dev < 32; ++dev) {
    for (unsigned fn = 0; fn < 8; ++fn) {
      uint32_t id = cfg_read32(0, dev, fn, 0);
      if ((id & 0xffff) == 0xffff) {
        if (fn == 0) break;
        continue;
      }
      uint8_t header = cfg_read8(0, dev, fn, 0x0e);
      uint32_t class_rev = cfg_read32(0, dev, fn, 0x08);
      printf("  00:%02x.%u %04x:%04x class %06x header %#x\n", dev, fn, id & 0xffff, id >> 16, class_rev >> 8, header);
      functions++;
      if ((header & 0x7f) > 2) bad_header++;
      if (id == 0x00051b36) *testdev = (struct found){dev, fn, true};
      if (fn == 0 && !(header & 0x80)) break; /* single-function device */
    }
  }
  report_why(functions >= 1, "bus 0 enumerates", "no functions");
  report_why(bad_header == 0, "every function's header type is 0, 1 or 2", "%u bad", bad_header);
}

/* Sizes a BAR the way firmware does: write all ones, read the mask back, restore. */
static uint32_t bar_mask(unsigned dev, unsigned fn, unsigned bar) {
  unsigned reg = 0x10 + 4 * bar;
  uint32_t saved = cfg_read32(0, dev, fn, reg);
  cfg_write32(0, dev, fn, reg, 0xffffffffu);
  uint32_t mask = cfg_read32(0, dev, fn, reg);
  cfg_write32(0, dev, fn, reg, saved);
  return mask;
}

static void check_testdev(const struct found* t) {
  report_why(t->ok, "pci-testdev (1b36:0005) is on bus 0", "not found");
  if (!t->ok) return;
  uint32_t m0 = bar_mask(t->dev, t->fn, 0), m1 = bar_mask(t->dev, t->fn, 1);
  printf("pci-testdev BAR0 mask %#x BAR1 mask %#x\n", m0, m1);
  check_eq("pci-testdev BAR0: 4 KiB 32-bit memory", m0, 0xfffff000u);
  check_eq("pci-testdev BAR1: 256 bytes of I/O", m1, 0xffffff01u);
}

int main(int argc, char** argv) {
  check_host_bridge();
  struct found testdev = {0, 0, false};
  enumerate(&testdev);
  if (arg_u64("testdev", 0)) check_testdev(&testdev);
  return 0;
}
