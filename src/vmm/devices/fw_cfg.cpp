#include "vmm/devices/fw_cfg.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "hv/vm.h"
#include "vmm/devices/io_access.h"

namespace nestvm::vmm {

using namespace fw_cfg;

namespace {
constexpr uint16_t kEntryMask = 0x3fff;  // FW_CFG_ENTRY_MASK: without WRITE_CHANNEL and ARCH_LOCAL

void put_be(std::vector<uint8_t>& v, uint64_t x, unsigned n) {
  for (unsigned i = 0; i < n; ++i) v.push_back(uint8_t(x >> (8 * (n - 1 - i))));
}
uint64_t get_be(const uint8_t* p, unsigned n) {
  uint64_t x = 0;
  for (unsigned i = 0; i < n; ++i) x = (x << 8) | p[i];
  return x;
}
std::vector<uint8_t> le(uint64_t x, unsigned n) {
  std::vector<uint8_t> v(n);
  for (unsigned i = 0; i < n; ++i) v[i] = uint8_t(x >> (8 * i));
  return v;
}
}  // namespace

FwCfg::FwCfg(hv::Vm& vm, bool dma) : vm_(vm), dma_(dma) {
  entries_[0].resize(kMaxEntry);
  entries_[1].resize(kMaxEntry);
  add_bytes(FwCfgKey::kFW_CFG_SIGNATURE, {'Q', 'E', 'M', 'U'});
  add_i32(FwCfgKey::kFW_CFG_ID, kVersion | (dma ? kVersionDma : 0));
  add_bytes(FwCfgKey::kFW_CFG_UUID, std::vector<uint8_t>(16, 0));
  add_i64(FwCfgKey::kFW_CFG_RAM_SIZE, vm.config().ram_bytes);
  add_i16(FwCfgKey::kFW_CFG_NOGRAPHIC, 0);
  add_i16(FwCfgKey::kFW_CFG_NB_CPUS, uint16_t(vm.vcpu_count()));
  add_i16(FwCfgKey::kFW_CFG_MAX_CPUS, uint16_t(vm.vcpu_count()));
  add_i16(FwCfgKey::kFW_CFG_BOOT_MENU, 0);
  // The MADT overrides IRQ0 to GSI 2 (fw_cfg_arch_create: kvm_allows_irq0_override()).
  add_i32(FwCfgKey::kFW_CFG_IRQ0_OVERRIDE, 1);
  rebuild_directory();
  vm.io().add_pio(kSelectorPort, 2, this, "fw_cfg");
  if (dma) vm.io().add_pio(kDmaPort, 8, this, "fw_cfg-dma");
}

FwCfg::Entry* FwCfg::entry_for(uint16_t key) {
  if (key == uint16_t(FwCfgKey::kFW_CFG_INVALID) || (key & kEntryMask) >= kMaxEntry) return nullptr;
  return &entries_[(key & uint16_t(FwCfgKey::kFW_CFG_ARCH_LOCAL)) ? 1 : 0][key & kEntryMask];
}

void FwCfg::add_bytes(FwCfgKey key, std::vector<uint8_t> data) {
  std::lock_guard lock(mu_);
  Entry* e = entry_for(uint16_t(key));
  assert(e && "fw_cfg key out of range");
  e->data = std::move(data);
  e->writable = false;
}
void FwCfg::add_i16(FwCfgKey key, uint16_t v) { add_bytes(key, le(v, 2)); }
void FwCfg::add_i32(FwCfgKey key, uint32_t v) { add_bytes(key, le(v, 4)); }
void FwCfg::add_i64(FwCfgKey key, uint64_t v) { add_bytes(key, le(v, 8)); }
void FwCfg::add_string(FwCfgKey key, std::string_view s) {
  std::vector<uint8_t> v(s.begin(), s.end());
  v.push_back(0);
  add_bytes(key, std::move(v));
}

std::optional<uint16_t> FwCfg::add_file(std::string_view name, std::vector<uint8_t> data, bool writable) {
  std::lock_guard lock(mu_);
  if (name.empty() || name.size() >= kMaxFileName || files_.size() >= kFileSlots) return std::nullopt;
  auto it = std::lower_bound(files_.begin(), files_.end(), name,
                             [](const File& f, std::string_view n) { return f.name < n; });
  if (it != files_.end() && it->name == name) return std::nullopt;
  const auto pos = unsigned(it - files_.begin());
  constexpr unsigned kFirst = unsigned(FwCfgKey::kFW_CFG_FILE_FIRST);
  for (auto i = unsigned(files_.size()); i > pos; --i) entries_[0][kFirst + i] = std::move(entries_[0][kFirst + i - 1]);
  entries_[0][kFirst + pos] = Entry{std::move(data), writable};
  files_.insert(it, File{std::string(name)});
  rebuild_directory();
  return uint16_t(unsigned(FwCfgKey::kFW_CFG_FILE_FIRST) + pos);
}

// The directory (FW_CFG_FILE_DIR): a big-endian count, then per file a big-endian size,
// selector and reserved word, and a NUL-padded 56-byte name. Files keep their names sorted, so
// an insertion moves the selectors of the files after it, as in QEMU.
void FwCfg::rebuild_directory() {
  std::vector<uint8_t> dir;
  put_be(dir, files_.size(), 4);
  for (unsigned i = 0; i < files_.size(); ++i) {
    const File& f = files_[i];
    const uint16_t key = uint16_t(unsigned(FwCfgKey::kFW_CFG_FILE_FIRST) + i);
    put_be(dir, entries_[0][key].data.size(), 4);
    put_be(dir, key, 2);
    put_be(dir, 0, 2);
    char name[kMaxFileName] = {};
    std::memcpy(name, f.name.data(), f.name.size());
    dir.insert(dir.end(), name, name + kMaxFileName);
  }
  entries_[0][unsigned(FwCfgKey::kFW_CFG_FILE_DIR)].data = std::move(dir);
}

void FwCfg::add_kernel(uint32_t load_addr, std::vector<uint8_t> image, uint32_t entry) {
  add_i32(FwCfgKey::kFW_CFG_KERNEL_ADDR, load_addr);
  add_i32(FwCfgKey::kFW_CFG_KERNEL_SIZE, uint32_t(image.size()));
  if (entry) add_i32(FwCfgKey::kFW_CFG_KERNEL_ENTRY, entry);
  add_bytes(FwCfgKey::kFW_CFG_KERNEL_DATA, std::move(image));
}

void FwCfg::add_initrd(uint32_t load_addr, std::vector<uint8_t> image) {
  add_i32(FwCfgKey::kFW_CFG_INITRD_ADDR, load_addr);
  add_i32(FwCfgKey::kFW_CFG_INITRD_SIZE, uint32_t(image.size()));
  add_bytes(FwCfgKey::kFW_CFG_INITRD_DATA, std::move(image));
}

void FwCfg::add_cmdline(uint32_t load_addr, std::string_view cmdline) {
  add_i32(FwCfgKey::kFW_CFG_CMDLINE_ADDR, load_addr);
  add_i32(FwCfgKey::kFW_CFG_CMDLINE_SIZE, uint32_t(cmdline.size() + 1));
  add_string(FwCfgKey::kFW_CFG_CMDLINE_DATA, cmdline);
}

std::vector<uint8_t> FwCfg::item(FwCfgKey key) {
  std::lock_guard lock(mu_);
  const Entry* e = entry_for(uint16_t(key));
  return e ? e->data : std::vector<uint8_t>{};
}

std::optional<uint16_t> FwCfg::file_selector(std::string_view name) {
  std::lock_guard lock(mu_);
  for (unsigned i = 0; i < files_.size(); ++i)
    if (files_[i].name == name) return uint16_t(unsigned(FwCfgKey::kFW_CFG_FILE_FIRST) + i);
  return std::nullopt;
}

// fw_cfg_select: a key past the last entry selects nothing (reads return 0).
void FwCfg::select(uint16_t key) {
  cur_offset_ = 0;
  cur_key_ = (key & kEntryMask) >= kMaxEntry ? uint16_t(FwCfgKey::kFW_CFG_INVALID) : key;
}

uint8_t FwCfg::read_byte() {
  const Entry* e = entry_for(cur_key_);
  if (!e || cur_offset_ >= e->data.size()) return 0;
  return e->data[cur_offset_++];
}

uint32_t FwCfg::pio_read(uint16_t port, unsigned size) {
  std::lock_guard lock(mu_);
  uint32_t v = 0;
  if (port >= kDmaPort) {
    // The DMA address register reads as the signature "QEMU CFG" in memory order.
    const unsigned off = port - kDmaPort;
    for (unsigned i = 0; i < size; ++i) {
      const unsigned o = off + i;
      v |= uint32_t(o < 8 ? byte_of(kDmaSignature, 7 - o) : 0xff) << (8 * i);
    }
    return v;
  }
  // fw_cfg_comb_valid: reads are byte-wide at either port; anything else decodes to 0, and
  // the part of an access past port 0x511 reads the floating bus.
  for_each_aligned_piece(port - kSelectorPort, size, 2, [&](uint64_t at, unsigned n, unsigned shift) {
    if (at >= 2) v |= uint32_t(size_mask(n)) << shift;
    else if (n == 1) v |= uint32_t(read_byte()) << shift;
  });
  return v;
}

void FwCfg::pio_write(uint16_t port, unsigned size, uint32_t value) {
  std::lock_guard lock(mu_);
  if (port >= kDmaPort) {
    // fw_cfg_dma_mem_write: the big-endian address in two 32-bit halves; writing the low half
    // starts the transfer.
    const unsigned off = port - kDmaPort;
    if (size != 4) return;
    const uint64_t half = __builtin_bswap32(value);
    if (off == 0) {
      dma_addr_ = half << 32;
    } else if (off == 4) {
      dma_addr_ |= half;
      const uint64_t addr = dma_addr_;
      dma_addr_ = 0;
      dma_transfer(addr);
    }
    return;
  }
  // A 16-bit write selects; byte writes to the data port are ignored (write support through
  // the data port was removed in QEMU 2.4).
  if (size == 2 && port == kSelectorPort) select(uint16_t(value));
}

// fw_cfg_dma_transfer: the FWCfgDmaAccess structure {be32 control, be32 length, be64 address}
// at `addr`; control is written back as 0, or with the error bit.
void FwCfg::dma_transfer(uint64_t addr) {
  hv::GuestMemory& mem = vm_.mem();
  uint8_t raw[16];
  const auto finish = [&](uint32_t control) {
    uint8_t be[4] = {uint8_t(control >> 24), uint8_t(control >> 16), uint8_t(control >> 8), uint8_t(control)};
    mem.write(addr, be, 4);
  };
  if (!mem.read(addr, raw, sizeof raw)) {
    finish(kDmaCtlError);
    return;
  }
  uint32_t control = uint32_t(get_be(raw, 4));
  uint32_t length = uint32_t(get_be(raw + 4, 4));
  uint64_t address = get_be(raw + 8, 8);
  if (control & kDmaCtlSelect) select(uint16_t(control >> 16));
  Entry* e = entry_for(cur_key_);
  bool read = false, write = false;
  if (control & kDmaCtlRead) read = true;
  else if (control & kDmaCtlWrite) write = true;
  else if (!(control & kDmaCtlSkip)) length = 0;
  control = 0;
  while (length > 0 && !(control & kDmaCtlError)) {
    uint32_t len;
    if (!e || cur_offset_ >= e->data.size()) {
      // Past the item's end: reads give zeros, writes fail.
      len = length;
      if (read) {
        std::vector<uint8_t> zeros(len, 0);
        if (!mem.write(address, zeros.data(), len)) control |= kDmaCtlError;
      }
      if (write) control |= kDmaCtlError;
    } else {
      len = std::min<uint32_t>(length, uint32_t(e->data.size() - cur_offset_));
      if (read && !mem.write(address, e->data.data() + cur_offset_, len)) control |= kDmaCtlError;
      if (write) {
        if (!e->writable || len != length || !mem.read(address, e->data.data() + cur_offset_, len))
          control |= kDmaCtlError;
      }
      cur_offset_ += len;
    }
    address += len;
    length -= len;
  }
  finish(control);
}

}  // namespace nestvm::vmm
