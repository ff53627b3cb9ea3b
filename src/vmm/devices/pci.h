// Conventional PCI, as QEMU's hw/pci/pci.c and hw/pci-host/i440fx.c: configuration mechanism
// #1 (address at 0xcf8, data at 0xcfc-0xcff), bus 0 with an i440FX host bridge at 00:00.0, and
// functions that other devices add. Functions have the type-0 header with write masks as
// QEMU's pci_init_wmask/w1cmask, and BARs the guest sizes by writing all ones. Since nestvm
// boots without firmware, the host assigns BAR addresses and enables decoding when a function
// is added, as SeaBIOS does before the OS runs; the guest may move them within the host's
// windows (I/O 0xc000-0xffff, memory 0xe0000000-0xfebfffff).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "hv/io_bus.h"

namespace nestvm::hv {
class Vm;
}

namespace nestvm::vmm {

// Configuration space (PCI Local Bus Specification 3.0, 6.1-6.2), names as Linux's pci_regs.h.
namespace pci {
inline constexpr uint16_t kConfigAddressPort = 0xcf8;
inline constexpr uint16_t kConfigDataPort = 0xcfc;
inline constexpr uint32_t kConfigEnable = 0x80000000u;
inline constexpr unsigned kVendorId = 0x00, kDeviceId = 0x02, kCommand = 0x04, kStatus = 0x06, kRevisionId = 0x08,
                          kClassProg = 0x09, kClassDevice = 0x0a, kCacheLineSize = 0x0c, kLatencyTimer = 0x0d,
                          kHeaderType = 0x0e, kBist = 0x0f, kBaseAddress0 = 0x10, kSubsystemVendorId = 0x2c,
                          kSubsystemId = 0x2e, kRomAddress = 0x30, kCapabilityList = 0x34, kInterruptLine = 0x3c,
                          kInterruptPin = 0x3d, kHeaderSize = 0x40, kConfigSize = 0x100;
inline constexpr uint16_t kCommandIo = 0x1, kCommandMemory = 0x2, kCommandMaster = 0x4, kCommandParity = 0x40,
                          kCommandSerr = 0x100, kCommandIntxDisable = 0x400;
inline constexpr uint16_t kStatusParity = 0x100, kStatusSigTargetAbort = 0x800, kStatusRecTargetAbort = 0x1000,
                          kStatusRecMasterAbort = 0x2000, kStatusSigSystemError = 0x4000,
                          kStatusDetectedParity = 0x8000;
inline constexpr uint32_t kBarSpaceIo = 0x1, kBarMemType64 = 0x4, kBarMemPrefetch = 0x8;
inline constexpr uint16_t kVendorIntel = 0x8086, kVendorRedHat = 0x1b36, kSubvendorRedHatQumranet = 0x1af4;
inline constexpr uint16_t kSubdeviceQemu = 0x1100;
inline constexpr uint32_t kClassBridgeHost = 0x060000, kClassOthers = 0xff0000;
inline constexpr unsigned kBars = 6;
// The host's windows for BARs (below the IOAPIC, as the PCI hole of QEMU's pc machine).
inline constexpr uint32_t kIoWindowBase = 0xc000, kIoWindowEnd = 0x10000;
inline constexpr uint64_t kMemWindowBase = 0xe0000000, kMemWindowEnd = 0xfec00000;
inline constexpr uint64_t kMemAssignBase = 0xfe000000;  // where the host places memory BARs
}  // namespace pci

enum class PciBarType : uint8_t { kIo, kMem32, kMem64 };

// One PCI function: a 256-byte configuration space and up to six BARs.
class PciFunction {
 public:
  struct Ids {
    uint16_t vendor;
    uint16_t device;
    uint32_t class_code;  // base class, subclass, programming interface
    uint8_t revision = 0;
    uint16_t subsystem_vendor = pci::kSubvendorRedHatQumranet;  // QEMU's default subsystem
    uint16_t subsystem = pci::kSubdeviceQemu;
  };
  PciFunction(const Ids& ids, std::string name);
  virtual ~PciFunction() = default;

  // Configuration accesses within one dword (offset + size <= next multiple of 4).
  virtual uint32_t config_read(unsigned offset, unsigned size);
  virtual void config_write(unsigned offset, unsigned size, uint32_t value);

  // Accesses that one of the function's BARs decodes; `offset` is relative to the BAR.
  virtual uint64_t bar_read(unsigned bar, uint64_t offset, unsigned size) { return size_all_ones(size); }
  virtual void bar_write(unsigned bar, uint64_t offset, unsigned size, uint64_t value) {}

  // The address the BAR decodes now: nullopt when it has none, its decoding is off in the
  // command register, or it is unassigned (0, or wrapping, as during sizing).
  std::optional<uint64_t> bar_address(unsigned bar) const;
  uint64_t bar_size(unsigned bar) const { return bars_[bar].size; }
  PciBarType bar_type(unsigned bar) const { return bars_[bar].type; }
  const std::string& name() const { return name_; }

 protected:
  // pci_register_bar: size is a power of two (at least 4 for I/O, 16 for memory); a 64-bit
  // BAR takes index and index + 1.
  void add_bar(unsigned index, PciBarType type, uint64_t size, bool prefetchable = false);
  static uint64_t size_all_ones(unsigned size) { return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1; }

  std::array<uint8_t, pci::kConfigSize> config_{};
  std::array<uint8_t, pci::kConfigSize> wmask_{};    // writable bits
  std::array<uint8_t, pci::kConfigSize> w1cmask_{};  // write-1-to-clear bits

 private:
  friend class PciHost;
  struct Bar {
    uint64_t size = 0;
    PciBarType type = PciBarType::kMem32;
  };
  std::string name_;
  std::array<Bar, pci::kBars> bars_{};
};

// The i440FX host bridge (8086:1237) and bus 0 behind it. Config and BAR accesses from vCPUs
// are serialized by the bus lock (QEMU's big lock for these devices).
class PciHost : public hv::PioDevice {
 public:
  explicit PciHost(hv::Vm& vm);
  ~PciHost() override;

  // Plugs `fn` at 00:slot.func (slot -1: the first free slot, function 0) and assigns its
  // BARs; returns devfn, or -1 if the place is taken or the bus is full. `fn` must outlive
  // the host. Call before the vCPUs run.
  int add_function(PciFunction& fn, int slot = -1, unsigned func = 0);
  PciFunction* function(unsigned devfn) { return devfn < 256 ? functions_[devfn] : nullptr; }

  // Configuration access by address (bus 0 only has functions).
  uint32_t config_read(unsigned bus, unsigned devfn, unsigned offset, unsigned size);
  void config_write(unsigned bus, unsigned devfn, unsigned offset, unsigned size, uint32_t value);

  uint32_t pio_read(uint16_t port, unsigned size) override;
  void pio_write(uint16_t port, unsigned size, uint32_t value) override;

 private:
  class IoWindow;
  class MemWindow;
  struct Decoded {
    PciFunction* fn;
    unsigned bar;
    uint64_t offset;
  };
  std::optional<Decoded> decode(PciBarType space, uint64_t addr);
  void assign_bars(PciFunction& fn);
  uint32_t config_read_locked(unsigned bus, unsigned devfn, unsigned offset, unsigned size);
  void config_write_locked(unsigned bus, unsigned devfn, unsigned offset, unsigned size, uint32_t value);

  std::mutex mu_;
  uint32_t config_address_ = 0;
  std::array<PciFunction*, 256> functions_{};
  std::unique_ptr<PciFunction> bridge_;
  std::unique_ptr<IoWindow> io_window_;
  std::unique_ptr<MemWindow> mem_window_;
  uint32_t next_io_ = pci::kIoWindowBase;
  uint64_t next_mem_ = pci::kMemAssignBase;
};

}  // namespace nestvm::vmm
