/* QEMU's firmware configuration device on ports 0x510 (selector) / 0x511 (data) / 0x514 (DMA)
 * (QEMU docs/specs/fw_cfg.rst): signature, feature bits, CPU count, RAM size, the file
 * directory, and the DMA interface when the ID says it is there.
 * Arguments: cpus=<-smp> mem=<-m in MiB>. */
#include "runtime/libc.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/x86.h"

#define FW_CFG_PORT_SEL 0x510
#define FW_CFG_PORT_DATA 0x511
#define FW_CFG_PORT_DMA 0x514
#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_ID 0x01
#define FW_CFG_RAM_SIZE 0x03
#define FW_CFG_NB_CPUS 0x05
#define FW_CFG_MAX_CPUS 0x0f
#define FW_CFG_FILE_DIR 0x19
#define FW_CFG_FILE_FIRST 0x20
#define FW_CFG_ID_TRADITIONAL 0x1
#define FW_CFG_ID_DMA 0x2

static void fw_select(uint16_t key) { outw(FW_CFG_PORT_SEL, key); }
static void fw_read(void* buf, size_t n) {
  uint8_t* b = buf;
  for (size_t i = 0; i < n; ++i) b[i] = inb(FW_CFG_PORT_DATA);
}
static uint32_t be32(uint32_t v) { return __builtin_bswap32(v); }
static uint16_t be16(uint16_t v) { return __builtin_bswap16(v); }

struct fw_file {
  uint32_t size;   /* big-endian */
  uint16_t select; /* big-endian */
  uint16_t reserved;
  char name[56];
} __attribute__((packed));

static struct fw_file files[128];
static uint32_t file_count;

static const struct fw_file* find_file(const char* name) {
  for (uint32_t i = 0; i < file_count && i < ARRAY_SIZE(files); ++i)
    if (!strncmp(files[i].name, name, sizeof(files[i].name))) return &files[i];
  return NULL;
}

static void check_directory(void) {
  fw_select(FW_CFG_FILE_DIR);
  fw_read(&file_count, 4);
  file_count = be32(file_count);
  printf("file directory: %u files\n", file_count);
  report_why(file_count >= 1 && file_count <= ARRAY_SIZE(files), "file directory has 1..128 entries", "%u", file_count);
  uint32_t n = file_count < ARRAY_SIZE(files) ? file_count : ARRAY_SIZE(files);
  fw_read(files, n * sizeof(files[0]));
  unsigned bad_name = 0, bad_select = 0, dup = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const struct fw_file* f = &files[i];
    size_t len = strnlen(f->name, sizeof(f->name));
    printf("  %#06x %8u %.56s\n", be16(f->select), be32(f->size), f->name);
    bool printable = len > 0 && len < sizeof(f->name);
    for (size_t j = 0; j < len; ++j) printable = printable && f->name[j] > 0x20 && f->name[j] < 0x7f;
    if (!printable) bad_name++;
    if (be16(f->select) < FW_CFG_FILE_FIRST) bad_select++;
    for (uint32_t j = 0; j < i; ++j)
      if (files[j].select == f->select) dup++;
  }
  report_why(bad_name == 0, "file names are NUL-terminated printable strings", "%u bad", bad_name);
  report_why(bad_select == 0, "file selectors start at FW_CFG_FILE_FIRST (0x20)", "%u below", bad_select);
  report_why(dup == 0, "file selectors are unique", "%u duplicates", dup);
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t size = be32(files[i].size);
    if (!size || size > 4096) continue;
    /* One file read back through its own selector: exactly `size` bytes, then zeros. */
    static uint8_t buf[4096 + 16];
    fw_select(be16(files[i].select));
    fw_read(buf, size + 16);
    bool zero_tail = true;
    for (uint32_t j = size; j < size + 16; ++j) zero_tail = zero_tail && buf[j] == 0;
    report_why(zero_tail, "reading past an item's end returns zeros", "file %.56s", files[i].name);
    break;
  }
}

static void check_e820(uint64_t ram) {
  const struct fw_file* f = find_file("etc/e820");
  if (!f) {
    report_skip("etc/e820 RAM entries", "the machine has no etc/e820 file");
    return;
  }
  struct {
    uint64_t address, length;
    uint32_t type;
  } __attribute__((packed)) e[32];
  uint32_t size = be32(f->size);
  report_why(size % 20 == 0 && size / 20 <= 32, "etc/e820 is a whole number of 20-byte entries", "size %u", size);
  uint32_t n = size / 20 < 32 ? size / 20 : 32;
  fw_select(be16(f->select));
  fw_read(e, n * 20);
  uint64_t sum = 0;
  for (uint32_t i = 0; i < n; ++i)
    if (e[i].type == 1) sum += e[i].length;
  check_eq("etc/e820 RAM entries add up to the RAM size", sum, ram);
}

struct fw_dma {
  uint32_t control;
  uint32_t length;
  uint64_t address;
} __attribute__((packed));

static void dma_transfer(volatile struct fw_dma* d) {
  uint64_t a = (uint64_t)(uintptr_t)d;
  outl(FW_CFG_PORT_DMA, be32((uint32_t)(a >> 32)));
  outl(FW_CFG_PORT_DMA + 4, be32((uint32_t)a)); /* the low half starts the transfer */
}

static void check_dma(void) {
  uint64_t sig = (uint64_t)be32(inl(FW_CFG_PORT_DMA)) << 32 | be32(inl(FW_CFG_PORT_DMA + 4));
  check_eq("DMA register reads the signature \"QEMU CFG\"", sig, 0x51454d5520434647ull);
  static char buf[8];
  static volatile struct fw_dma d __attribute__((aligned(16)));
  memset(buf, 0xee, sizeof(buf));
  d.control = be32(((uint32_t)FW_CFG_SIGNATURE << 16) | 0x08 /* select */ | 0x02 /* read */);
  d.length = be32(4);
  d.address = __builtin_bswap64((uint64_t)(uintptr_t)buf);
  dma_transfer(&d);
  for (int i = 0; i < 1000000 && (be32(d.control) & ~1u); ++i) pause();
  check_eq("DMA control word is 0 after the transfer (no error)", be32(d.control), 0);
  report_why(!memcmp(buf, "QEMU", 4) && (uint8_t)buf[4] == 0xee, "DMA select+read of the signature writes 4 bytes",
             "got %02x %02x %02x %02x %02x", buf[0], buf[1], buf[2], buf[3], (uint8_t)buf[4]);
  /* Select through the port, skip 2 bytes by DMA, then read on from there. */
  fw_select(FW_CFG_SIGNATURE);
  d.control = be32(0x04); /* skip */
  d.length = be32(2);
  dma_transfer(&d);
  memset(buf, 0xee, sizeof(buf));
  d.control = be32(0x02);
  d.length = be32(2);
  d.address = __builtin_bswap64((uint64_t)(uintptr_t)buf);
  dma_transfer(&d);
  report_why(!memcmp(buf, "MU", 2) && be32(d.control) == 0, "DMA skip then read continues at the item's offset",
             "got %02x %02x, control %#x", buf[0], buf[1], be32(d.control));
}

int main(int argc, char** argv) {
  char sig[5] = {0};
  fw_select(FW_CFG_SIGNATURE);
  fw_read(sig, 4);
  report_why(!memcmp(sig, "QEMU", 4), "signature is \"QEMU\"", "got \"%s\"", sig);

  uint32_t id = 0;
  fw_select(FW_CFG_ID);
  fw_read(&id, 4);
  printf("ID %#x\n", id);
  report_why(id & FW_CFG_ID_TRADITIONAL, "ID: the traditional interface (bit 0)", "ID %#x", id);

  uint16_t cpus = 0;
  fw_select(FW_CFG_NB_CPUS);
  fw_read(&cpus, 2);
  check_eq("FW_CFG_NB_CPUS is -smp", cpus, arg_u64("cpus", 1));
  uint16_t max_cpus = 0;
  fw_select(FW_CFG_MAX_CPUS);
  fw_read(&max_cpus, 2);
  report_why(max_cpus >= cpus, "FW_CFG_MAX_CPUS >= FW_CFG_NB_CPUS", "%u < %u", max_cpus, cpus);

  uint64_t ram = 0;
  fw_select(FW_CFG_RAM_SIZE);
  fw_read(&ram, 8);
  uint64_t want_ram = arg_u64("mem", 128) << 20;
  check_eq("FW_CFG_RAM_SIZE is -m", ram, want_ram);

  fw_select(0x7ff0); /* no such item */
  uint32_t none = 0xffffffff;
  fw_read(&none, 4);
  check_eq("an unknown selector reads zeros", none, 0);

  check_directory();
  check_e820(want_ram);
  if (id & FW_CFG_ID_DMA) check_dma();
  else report_skip("fw_cfg DMA", "the ID (%#x) does not advertise DMA", id);
  return 0;
}
