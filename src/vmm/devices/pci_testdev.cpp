#include "vmm/devices/pci_testdev.h"

#include <cstring>
#include <string>

namespace nestvm::vmm {

namespace {
constexpr const char* kTestNames[3] = {"no-eventfd", "wildcard-eventfd", "datamatch-eventfd"};
constexpr const char* kTypeNames[2] = {"mmio", "portio"};
}  // namespace

PciTestDev::PciTestDev(PciHost& host)
    : PciFunction({pci::kVendorRedHat, kDeviceId, pci::kClassOthers, 0x00}, "pci-testdev") {
  config_[pci::kInterruptPin] = 0;  // no interrupt pin
  add_bar(0, PciBarType::kMem32, kMemSize * 2);
  add_bar(1, PciBarType::kIo, kIoSize * 2);
  for (unsigned i = 0; i < tests_.size(); ++i) {
    const bool mem = i < 3;
    const std::string name = std::string(kTypeNames[i / 3]) + "-" + kTestNames[i % 3];
    IoTest& t = tests_[i];
    t.hdr.assign(kHdrName + name.size() + 1, 0);
    std::memcpy(&t.hdr[kHdrName], name.c_str(), name.size() + 1);
    // Each test watches its own byte past the header area: the BAR's half size plus its index.
    const uint32_t offset = (mem ? kMemSize : kIoSize) + i;
    std::memcpy(&t.hdr[kHdrOffset], &offset, 4);
    t.match_data = i % 3 != 1;
    t.hdr[kHdrTest] = uint8_t(i);
    t.hdr[kHdrData] = t.match_data ? kDataMatch : kNoMatch;
    t.hdr[kHdrWidth] = 1;
  }
  devfn_ = host.add_function(*this);
}

// pci_testdev_read: byte-wide (QEMU's impl.max_access_size = 1), a wider access reads
// consecutive bytes of the current test's header; the name's last byte and beyond read 0.
uint8_t PciTestDev::read_byte(uint64_t addr) {
  if (current_ < 0) return 0;
  const IoTest& t = tests_[unsigned(current_)];
  if (addr + 1 >= t.hdr.size()) return 0;
  return t.hdr[addr];
}

// pci_testdev_write for one byte; type 0 is the memory BAR, 1 the I/O BAR.
void PciTestDev::write_byte(uint64_t addr, uint8_t value, unsigned type) {
  if (addr == kHdrTest) {
    current_ = -1;
    if (value >= 3) return;
    IoTest& t = tests_[type * 3 + value];
    std::memset(&t.hdr[kHdrCount], 0, 4);
    current_ = int(type * 3 + value);
    return;
  }
  if (current_ < 0) return;
  IoTest& t = tests_[unsigned(current_)];
  uint32_t offset, count;
  std::memcpy(&offset, &t.hdr[kHdrOffset], 4);
  if (addr != offset) return;
  if (t.match_data && value != t.hdr[kHdrData]) return;
  std::memcpy(&count, &t.hdr[kHdrCount], 4);
  ++count;
  std::memcpy(&t.hdr[kHdrCount], &count, 4);
}

uint64_t PciTestDev::bar_read(unsigned bar, uint64_t offset, unsigned size) {
  uint64_t v = 0;
  for (unsigned i = 0; i < size; ++i) v |= uint64_t(read_byte(offset + i)) << (8 * i);
  return v;
}

void PciTestDev::bar_write(unsigned bar, uint64_t offset, unsigned size, uint64_t value) {
  const unsigned type = bar == 0 ? 0 : 1;
  for (unsigned i = 0; i < size; ++i) write_byte(offset + i, uint8_t(value >> (8 * i)), type);
}

}  // namespace nestvm::vmm
