// The VM's I/O buses, as KVM's kvm_io_bus: port-I/O and MMIO ranges routed to devices. L0's
// irqchip and the machine's devices (src/vmm) register here; exit handlers and the instruction
// emulator dispatch here.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace nestvm::hv {

class PioDevice {
 public:
  virtual ~PioDevice() = default;
  virtual uint32_t pio_read(uint16_t port, unsigned size) = 0;
  virtual void pio_write(uint16_t port, unsigned size, uint32_t value) = 0;
};

class MmioDevice {
 public:
  virtual ~MmioDevice() = default;
  virtual uint64_t mmio_read(uint64_t gpa, unsigned size) = 0;
  virtual void mmio_write(uint64_t gpa, unsigned size, uint64_t value) = 0;
};

// A per-vCPU MMIO page that the accessing vCPU's own device decides about: the local APIC's,
// which each vCPU relocates through its IA32_APIC_BASE and which vanishes while the APIC is
// disabled or in x2APIC mode. As KVM's vcpu_mmio_read/write, an access is offered to it first.
class LocalMmioDevice {
 public:
  virtual ~LocalMmioDevice() = default;
  virtual bool local_mmio_read(uint64_t gpa, unsigned size, uint64_t& value) = 0;
  virtual bool local_mmio_write(uint64_t gpa, unsigned size, uint64_t value) = 0;
};

// Ranges are registered at machine construction, before vCPUs run; lookups are lock-free.
template <typename Dev, typename Addr>
class IoRanges {
 public:
  struct Range {
    Addr base;
    uint64_t size;
    Dev* dev;
    std::string name;
  };
  void add(Addr base, uint64_t size, Dev* dev, std::string name) { ranges_.push_back({base, size, dev, std::move(name)}); }
  const Range* find(uint64_t a) const {
    for (const Range& r : ranges_)
      if (a >= r.base && a - r.base < r.size) return &r;
    return nullptr;
  }
  const std::vector<Range>& ranges() const { return ranges_; }

 private:
  std::vector<Range> ranges_;
};

class IoBuses {
 public:
  void add_pio(uint16_t base, uint16_t count, PioDevice* d, std::string name) { pio_.add(base, count, d, std::move(name)); }
  void add_mmio(uint64_t base, uint64_t size, MmioDevice* d, std::string name) { mmio_.add(base, size, d, std::move(name)); }
  // Unclaimed ports read all ones and drop writes, as on a PC.
  uint32_t pio_read(uint16_t port, unsigned size) const {
    const auto* r = pio_.find(port);
    return r ? r->dev->pio_read(port, size) : (~0u >> (32 - 8 * size));
  }
  void pio_write(uint16_t port, unsigned size, uint32_t v) const {
    if (const auto* r = pio_.find(port)) r->dev->pio_write(port, size, v);
  }
  bool has_mmio(uint64_t gpa) const { return mmio_.find(gpa) != nullptr; }
  void set_local_mmio(LocalMmioDevice* d) { local_ = d; }
  uint64_t mmio_read(uint64_t gpa, unsigned size) const {
    uint64_t v;
    if (local_ && local_->local_mmio_read(gpa, size, v)) return v;
    const auto* r = mmio_.find(gpa);
    return r ? r->dev->mmio_read(gpa, size) : (~0ull >> (64 - 8 * size));
  }
  void mmio_write(uint64_t gpa, unsigned size, uint64_t v) const {
    if (local_ && local_->local_mmio_write(gpa, size, v)) return;
    if (const auto* r = mmio_.find(gpa)) r->dev->mmio_write(gpa, size, v);
  }
  const IoRanges<PioDevice, uint16_t>& pio() const { return pio_; }
  const IoRanges<MmioDevice, uint64_t>& mmio() const { return mmio_; }

 private:
  IoRanges<PioDevice, uint16_t> pio_;
  IoRanges<MmioDevice, uint64_t> mmio_;
  LocalMmioDevice* local_ = nullptr;
};

}  // namespace nestvm::hv
