// QEMU's firmware configuration device on x86 (hw/nvram/fw_cfg.c, docs/specs/fw_cfg.rst): a
// 16-bit selector at port 0x510, a byte-wide data port at 0x511, and the DMA interface at
// 0x514 ("QEMU CFG"). Items are blobs selected by key; named files are listed in the file
// directory (key 0x19), sorted by name as fw_cfg_add_file keeps them.
#pragma once
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hv/io_bus.h"

namespace nestvm::hv {
class Vm;
}

namespace nestvm::vmm {

// Selector keys, with the names of QEMU's include/standard-headers/linux/qemu_fw_cfg.h.
enum class FwCfgKey : uint16_t {
  kFW_CFG_SIGNATURE = 0x00,
  kFW_CFG_ID = 0x01,
  kFW_CFG_UUID = 0x02,
  kFW_CFG_RAM_SIZE = 0x03,
  kFW_CFG_NOGRAPHIC = 0x04,
  kFW_CFG_NB_CPUS = 0x05,
  kFW_CFG_MACHINE_ID = 0x06,
  kFW_CFG_KERNEL_ADDR = 0x07,
  kFW_CFG_KERNEL_SIZE = 0x08,
  kFW_CFG_KERNEL_CMDLINE = 0x09,
  kFW_CFG_INITRD_ADDR = 0x0a,
  kFW_CFG_INITRD_SIZE = 0x0b,
  kFW_CFG_BOOT_DEVICE = 0x0c,
  kFW_CFG_NUMA = 0x0d,
  kFW_CFG_BOOT_MENU = 0x0e,
  kFW_CFG_MAX_CPUS = 0x0f,
  kFW_CFG_KERNEL_ENTRY = 0x10,
  kFW_CFG_KERNEL_DATA = 0x11,
  kFW_CFG_INITRD_DATA = 0x12,
  kFW_CFG_CMDLINE_ADDR = 0x13,
  kFW_CFG_CMDLINE_SIZE = 0x14,
  kFW_CFG_CMDLINE_DATA = 0x15,
  kFW_CFG_SETUP_ADDR = 0x16,
  kFW_CFG_SETUP_SIZE = 0x17,
  kFW_CFG_SETUP_DATA = 0x18,
  kFW_CFG_FILE_DIR = 0x19,
  kFW_CFG_FILE_FIRST = 0x20,
  kFW_CFG_WRITE_CHANNEL = 0x4000,
  kFW_CFG_ARCH_LOCAL = 0x8000,
  // x86's arch-local items (hw/i386/fw_cfg.h).
  kFW_CFG_ACPI_TABLES = 0x8000,
  kFW_CFG_SMBIOS_ENTRIES = 0x8001,
  kFW_CFG_IRQ0_OVERRIDE = 0x8002,
  kFW_CFG_E820_TABLE = 0x8003,
  kFW_CFG_HPET = 0x8004,
  kFW_CFG_INVALID = 0xffff,
};

// FW_CFG_ID bits and the DMA access control bits (docs/specs/fw_cfg.rst).
namespace fw_cfg {
inline constexpr uint16_t kSelectorPort = 0x510;
inline constexpr uint16_t kDataPort = 0x511;
inline constexpr uint16_t kDmaPort = 0x514;
inline constexpr uint32_t kVersion = 0x01;     // FW_CFG_VERSION: the traditional interface
inline constexpr uint32_t kVersionDma = 0x02;  // FW_CFG_VERSION_DMA
inline constexpr uint32_t kDmaCtlError = 0x01, kDmaCtlRead = 0x02, kDmaCtlSkip = 0x04, kDmaCtlSelect = 0x08,
                          kDmaCtlWrite = 0x10;
inline constexpr uint64_t kDmaSignature = 0x51454d5520434647ull;  // "QEMU CFG", big-endian
inline constexpr unsigned kFileSlots = 0x20;                      // FW_CFG_FILE_SLOTS_DFLT
inline constexpr unsigned kMaxFileName = 56;                      // FW_CFG_MAX_FILE_PATH
}  // namespace fw_cfg

class FwCfg : public hv::PioDevice {
 public:
  // Fills the items QEMU's pc machine provides from the VM: signature, ID, UUID, RAM size,
  // CPU counts, NOGRAPHIC, BOOT_MENU, IRQ0_OVERRIDE, and an empty file directory.
  explicit FwCfg(hv::Vm& vm, bool dma = true);

  // Items (replacing an existing one with the same key), integers little-endian.
  void add_bytes(FwCfgKey key, std::vector<uint8_t> data);
  void add_i16(FwCfgKey key, uint16_t v);
  void add_i32(FwCfgKey key, uint32_t v);
  void add_i64(FwCfgKey key, uint64_t v);
  void add_string(FwCfgKey key, std::string_view s);  // with its terminating NUL
  // fw_cfg_add_file: a named item listed in the directory; returns its selector, or nullopt
  // when the name is empty, too long or taken, or the file slots are full.
  std::optional<uint16_t> add_file(std::string_view name, std::vector<uint8_t> data, bool writable = false);

  // What QEMU's x86 kernel loaders publish (x86_load_linux, load_multiboot).
  void add_kernel(uint32_t load_addr, std::vector<uint8_t> image, uint32_t entry = 0);
  void add_initrd(uint32_t load_addr, std::vector<uint8_t> image);
  void add_cmdline(uint32_t load_addr, std::string_view cmdline);

  // The current contents of an item (tests, the machine).
  std::vector<uint8_t> item(FwCfgKey key);
  std::optional<uint16_t> file_selector(std::string_view name);

  uint32_t pio_read(uint16_t port, unsigned size) override;
  void pio_write(uint16_t port, unsigned size, uint32_t value) override;

 private:
  struct Entry {
    std::vector<uint8_t> data;
    bool writable = false;
  };
  struct File {
    std::string name;  // its data is entries_[0][FILE_FIRST + index]
  };
  Entry* entry_for(uint16_t key);
  void select(uint16_t key);
  uint8_t read_byte();
  void dma_transfer(uint64_t addr);
  void rebuild_directory();

  hv::Vm& vm_;
  bool dma_;
  std::mutex mu_;
  static constexpr unsigned kMaxEntry = unsigned(FwCfgKey::kFW_CFG_FILE_FIRST) + fw_cfg::kFileSlots;
  std::vector<Entry> entries_[2];  // generic and arch-local
  std::vector<File> files_;        // sorted by name; file i is key FILE_FIRST + i
  uint16_t cur_key_ = uint16_t(FwCfgKey::kFW_CFG_INVALID);
  uint32_t cur_offset_ = 0;
  uint64_t dma_addr_ = 0;
};

}  // namespace nestvm::vmm
