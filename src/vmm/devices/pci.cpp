#include "vmm/devices/pci.h"

#include <cassert>

#include "hv/vm.h"

namespace nestvm::vmm {

using namespace pci;

namespace {
void set_le(uint8_t* p, uint64_t v, unsigned n) {
  for (unsigned i = 0; i < n; ++i) p[i] = uint8_t(v >> (8 * i));
}
uint64_t get_le(const uint8_t* p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
}  // namespace

PciFunction::PciFunction(const Ids& ids, std::string name) : name_(std::move(name)) {
  set_le(&config_[kVendorId], ids.vendor, 2);
  set_le(&config_[kDeviceId], ids.device, 2);
  config_[kRevisionId] = ids.revision;
  set_le(&config_[kClassProg], ids.class_code, 3);
  set_le(&config_[kSubsystemVendorId], ids.subsystem_vendor, 2);
  set_le(&config_[kSubsystemId], ids.subsystem, 2);
  // pci_init_wmask: the command bits a conventional function implements, cache line size,
  // latency timer and interrupt line; the device-specific area is plain storage.
  set_le(&wmask_[kCommand], kCommandIo | kCommandMemory | kCommandMaster | kCommandIntxDisable, 2);
  wmask_[kCacheLineSize] = 0xff;
  wmask_[kLatencyTimer] = 0xff;
  wmask_[kInterruptLine] = 0xff;
  for (unsigned i = kHeaderSize; i < kConfigSize; ++i) wmask_[i] = 0xff;
  // pci_init_w1cmask: the error bits of the status register clear when written with 1.
  set_le(&w1cmask_[kStatus],
         kStatusParity | kStatusSigTargetAbort | kStatusRecTargetAbort | kStatusRecMasterAbort |
             kStatusSigSystemError | kStatusDetectedParity,
         2);
}

void PciFunction::add_bar(unsigned index, PciBarType type, uint64_t size, bool prefetchable) {
  assert(index < kBars && (type != PciBarType::kMem64 || index + 1 < kBars));
  assert(size && !(size & (size - 1)) && size >= (type == PciBarType::kIo ? 4u : 16u));
  bars_[index] = {size, type};
  const unsigned at = kBaseAddress0 + 4 * index;
  const uint64_t mask = ~(size - 1);
  if (type == PciBarType::kIo) {
    set_le(&config_[at], kBarSpaceIo, 4);
    set_le(&wmask_[at], uint32_t(mask), 4);
  } else if (type == PciBarType::kMem32) {
    set_le(&config_[at], prefetchable ? kBarMemPrefetch : 0, 4);
    set_le(&wmask_[at], uint32_t(mask), 4);
  } else {
    set_le(&config_[at], kBarMemType64 | (prefetchable ? kBarMemPrefetch : 0), 8);
    set_le(&wmask_[at], mask, 8);
  }
}

uint32_t PciFunction::config_read(unsigned offset, unsigned size) {
  return uint32_t(get_le(&config_[offset], size));
}

// pci_default_write_config: byte by byte through the write and write-1-to-clear masks.
void PciFunction::config_write(unsigned offset, unsigned size, uint32_t value) {
  for (unsigned i = 0; i < size; ++i) {
    const unsigned a = offset + i;
    const auto v = uint8_t(value >> (8 * i));
    config_[a] = uint8_t((config_[a] & ~wmask_[a]) | (v & wmask_[a]));
    config_[a] &= uint8_t(~(v & w1cmask_[a]));
  }
}

// pci_bar_address.
std::optional<uint64_t> PciFunction::bar_address(unsigned bar) const {
  const Bar& b = bars_[bar];
  if (!b.size) return std::nullopt;
  const auto cmd = uint16_t(get_le(&config_[kCommand], 2));
  const unsigned at = kBaseAddress0 + 4 * bar;
  if (b.type == PciBarType::kIo) {
    if (!(cmd & kCommandIo)) return std::nullopt;
    const uint64_t addr = get_le(&config_[at], 4) & ~(b.size - 1);
    const uint64_t last = addr + b.size - 1;
    if (addr == 0 || last >= 0xffffffffull) return std::nullopt;
    return addr;
  }
  if (!(cmd & kCommandMemory)) return std::nullopt;
  const unsigned width = b.type == PciBarType::kMem64 ? 8 : 4;
  const uint64_t addr = get_le(&config_[at], width) & ~(b.size - 1);
  const uint64_t last = addr + b.size - 1;
  if (addr == 0 || last <= addr || last == ~0ull) return std::nullopt;
  if (b.type == PciBarType::kMem32 && last >= 0xffffffffull) return std::nullopt;
  return addr;
}

namespace {
// The i440FX PMC (hw/pci-host/i440fx.c): host bridge class, revision 2, SMRAM control at its
// reset value. Its PAM and SMRAM registers are storage: guest RAM below 1 MiB is always RAM.
class I440fx : public PciFunction {
 public:
  I440fx() : PciFunction({kVendorIntel, 0x1237, kClassBridgeHost, 0x02}, "i440FX") { config_[0x72] = 0x02; }
};
}  // namespace

// The windows through which the host bridge forwards BAR accesses to bus 0.
class PciHost::IoWindow : public hv::PioDevice {
 public:
  explicit IoWindow(PciHost& host) : host_(host) {}
  uint32_t pio_read(uint16_t port, unsigned size) override {
    std::lock_guard lock(host_.mu_);
    if (auto d = host_.decode(PciBarType::kIo, port)) return uint32_t(d->fn->bar_read(d->bar, d->offset, size));
    return uint32_t(~0u >> (32 - 8 * size));
  }
  void pio_write(uint16_t port, unsigned size, uint32_t value) override {
    std::lock_guard lock(host_.mu_);
    if (auto d = host_.decode(PciBarType::kIo, port)) d->fn->bar_write(d->bar, d->offset, size, value);
  }

 private:
  PciHost& host_;
};

class PciHost::MemWindow : public hv::MmioDevice {
 public:
  explicit MemWindow(PciHost& host) : host_(host) {}
  uint64_t mmio_read(uint64_t gpa, unsigned size) override {
    std::lock_guard lock(host_.mu_);
    if (auto d = host_.decode(PciBarType::kMem32, gpa)) return d->fn->bar_read(d->bar, d->offset, size);
    return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
  }
  void mmio_write(uint64_t gpa, unsigned size, uint64_t value) override {
    std::lock_guard lock(host_.mu_);
    if (auto d = host_.decode(PciBarType::kMem32, gpa)) d->fn->bar_write(d->bar, d->offset, size, value);
  }

 private:
  PciHost& host_;
};

PciHost::PciHost(hv::Vm& vm)
    : bridge_(std::make_unique<I440fx>()),
      io_window_(std::make_unique<IoWindow>(*this)),
      mem_window_(std::make_unique<MemWindow>(*this)) {
  add_function(*bridge_, 0, 0);
  vm.io().add_pio(kConfigAddressPort, 8, this, "pci-conf");
  vm.io().add_pio(uint16_t(kIoWindowBase), uint16_t(kIoWindowEnd - kIoWindowBase), io_window_.get(), "pci-io");
  vm.io().add_mmio(kMemWindowBase, kMemWindowEnd - kMemWindowBase, mem_window_.get(), "pci-mem");
}

PciHost::~PciHost() = default;

int PciHost::add_function(PciFunction& fn, int slot, unsigned func) {
  std::lock_guard lock(mu_);
  if (func > 7 || slot > 31) return -1;
  if (slot < 0) {
    for (unsigned s = 0; s < 32 && slot < 0; ++s)
      if (!functions_[s * 8]) slot = int(s);
    if (slot < 0) return -1;
    func = 0;
  }
  const unsigned devfn = unsigned(slot) * 8 + func;
  if (functions_[devfn]) return -1;
  functions_[devfn] = &fn;
  // A slot with several functions says so in function 0's header type.
  if (func) {
    if (PciFunction* f0 = functions_[devfn & ~7u]) f0->config_[kHeaderType] |= 0x80;
  } else {
    for (unsigned f = 1; f < 8; ++f)
      if (functions_[devfn + f]) fn.config_[kHeaderType] |= 0x80;
  }
  assign_bars(fn);
  return int(devfn);
}

// What SeaBIOS's pci_setup does before the OS: each BAR at the next naturally aligned address
// of its window, and decoding turned on for the spaces the function uses.
void PciHost::assign_bars(PciFunction& fn) {
  uint16_t enable = 0;
  for (unsigned i = 0; i < kBars; ++i) {
    const auto& bar = fn.bars_[i];
    if (!bar.size) continue;
    const unsigned at = kBaseAddress0 + 4 * i;
    if (bar.type == PciBarType::kIo) {
      const uint64_t addr = align_up(next_io_, bar.size);
      if (addr + bar.size > kIoWindowEnd) continue;
      set_le(&fn.config_[at], get_le(&fn.config_[at], 4) | addr, 4);
      next_io_ = uint32_t(addr + bar.size);
      enable |= kCommandIo;
    } else {
      const uint64_t addr = align_up(next_mem_, bar.size);
      if (addr + bar.size > kMemWindowEnd) continue;
      const unsigned width = bar.type == PciBarType::kMem64 ? 8 : 4;
      set_le(&fn.config_[at], get_le(&fn.config_[at], width) | addr, width);
      next_mem_ = addr + bar.size;
      enable |= kCommandMemory;
    }
  }
  set_le(&fn.config_[kCommand], get_le(&fn.config_[kCommand], 2) | enable, 2);
}

std::optional<PciHost::Decoded> PciHost::decode(PciBarType space, uint64_t addr) {
  const bool io = space == PciBarType::kIo;
  for (PciFunction* fn : functions_) {
    if (!fn) continue;
    for (unsigned i = 0; i < kBars; ++i) {
      if (!fn->bars_[i].size || (fn->bars_[i].type == PciBarType::kIo) != io) continue;
      const auto base = fn->bar_address(i);
      if (base && addr >= *base && addr - *base < fn->bars_[i].size) return Decoded{fn, i, addr - *base};
    }
  }
  return std::nullopt;
}

uint32_t PciHost::config_read_locked(unsigned bus, unsigned devfn, unsigned offset, unsigned size) {
  const uint32_t none = uint32_t(~0u >> (32 - 8 * size));
  // Functions other than 0 exist only while function 0 does (pci_host_config_read_common).
  if (bus != 0 || devfn > 255 || !functions_[devfn] || !functions_[devfn & ~7u]) return none;
  if (offset >= kConfigSize) return none;
  if (offset + size > kConfigSize) size = kConfigSize - offset;
  return functions_[devfn]->config_read(offset, size);
}

void PciHost::config_write_locked(unsigned bus, unsigned devfn, unsigned offset, unsigned size, uint32_t value) {
  if (bus != 0 || devfn > 255 || !functions_[devfn] || !functions_[devfn & ~7u]) return;
  if (offset >= kConfigSize) return;
  if (offset + size > kConfigSize) size = kConfigSize - offset;
  functions_[devfn]->config_write(offset, size, value);
}

uint32_t PciHost::config_read(unsigned bus, unsigned devfn, unsigned offset, unsigned size) {
  std::lock_guard lock(mu_);
  return config_read_locked(bus, devfn, offset, size);
}

void PciHost::config_write(unsigned bus, unsigned devfn, unsigned offset, unsigned size, uint32_t value) {
  std::lock_guard lock(mu_);
  config_write_locked(bus, devfn, offset, size, value);
}

// Configuration mechanism #1 (PCI 3.0, 3.2.2.3.2): CONFIG_ADDRESS latches only on a dword
// write at 0xcf8; CONFIG_DATA reaches bus/device/function/register when bit 31 is set, and
// reads all ones otherwise.
uint32_t PciHost::pio_read(uint16_t port, unsigned size) {
  std::lock_guard lock(mu_);
  const uint32_t none = uint32_t(~0u >> (32 - 8 * size));
  if (port < kConfigDataPort) return uint32_t((uint64_t(config_address_) >> (8 * (port - kConfigAddressPort))) & none);
  if (!(config_address_ & kConfigEnable)) return none;
  const unsigned bus = (config_address_ >> 16) & 0xff, devfn = (config_address_ >> 8) & 0xff;
  return config_read_locked(bus, devfn, (config_address_ & 0xfc) + (port & 3), size);
}

void PciHost::pio_write(uint16_t port, unsigned size, uint32_t value) {
  std::lock_guard lock(mu_);
  if (port < kConfigDataPort) {
    if (port == kConfigAddressPort && size == 4) config_address_ = value;
    return;
  }
  if (!(config_address_ & kConfigEnable)) return;
  const unsigned bus = (config_address_ >> 16) & 0xff, devfn = (config_address_ >> 8) & 0xff;
  config_write_locked(bus, devfn, (config_address_ & 0xfc) + (port & 3), size, value);
}

}  // namespace nestvm::vmm
