// QEMU's pci-testdev (hw/misc/pci-testdev.c, docs/specs/pci-testdev.rst), 1b36:0005: BAR 0 is
// 4 KiB of memory, BAR 1 256 I/O ports. Writing a test number (0-2) to offset 0 of a BAR
// starts that BAR's test: "<mmio|portio>-<no|wildcard|datamatch>-eventfd". The BAR then reads
// as the test's header {u8 test, u8 width, u16 pad, u32 offset, u8 data, u8 pad[3], u32 count,
// name}; each write of a byte to `offset` (with the value `data`, for the datamatch test)
// counts one access. Under KVM the eventfd tests' writes complete in the kernel and never
// count; nestvm has no ioeventfd, so they count as they do under TCG (kvm-unit-tests accept
// either: a count of 0 or of every write).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "vmm/devices/pci.h"

namespace nestvm::vmm {

class PciTestDev : public PciFunction {
 public:
  static constexpr uint16_t kDeviceId = 0x0005;  // PCI_DEVICE_ID_REDHAT_TEST
  static constexpr unsigned kMemSize = 2048, kIoSize = 128;  // IOTEST_MEMSIZE, IOTEST_IOSIZE
  static constexpr uint8_t kDataMatch = 0xfa, kNoMatch = 0xce;

  // Plugs itself into the first free slot of `host`'s bus.
  explicit PciTestDev(PciHost& host);
  int devfn() const { return devfn_; }

  uint64_t bar_read(unsigned bar, uint64_t offset, unsigned size) override;
  void bar_write(unsigned bar, uint64_t offset, unsigned size, uint64_t value) override;

 private:
  // Header field offsets (PCITestDevHdr).
  static constexpr unsigned kHdrTest = 0, kHdrWidth = 1, kHdrOffset = 4, kHdrData = 8, kHdrCount = 12, kHdrName = 16;
  struct IoTest {
    std::vector<uint8_t> hdr;  // the header and NUL-terminated name
    bool match_data = false;
  };
  uint8_t read_byte(uint64_t addr);
  void write_byte(uint64_t addr, uint8_t value, unsigned type);

  std::array<IoTest, 6> tests_;  // mmio tests 0-2, portio tests 3-5
  int current_ = -1;
  int devfn_ = -1;
};

}  // namespace nestvm::vmm
