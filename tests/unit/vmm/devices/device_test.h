// Shared setup for the device tests: a small VM without vCPUs running, a fake interrupt
// controller that records the lines devices drive, and port/MMIO accessors that go through
// the VM's buses as the exit handlers do.
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <vector>

#include "hv/irqchip.h"
#include "hv/vm.h"

namespace nestvm::test {

class FakeIrqChip : public hv::IrqChip {
 public:
  bool has_interrupt(unsigned) override { return false; }
  int acknowledge_interrupt(unsigned) override { return -1; }
  bool take_nmi(unsigned) override { return false; }
  uint64_t next_deadline(unsigned) override { return ~0ull; }
  void expire_timers(unsigned, uint64_t) override {}
  bool msr_read(unsigned, uint32_t, uint64_t&) override { return false; }
  bool msr_write(unsigned, uint32_t, uint64_t) override { return false; }
  void set_irq(unsigned gsi, bool level) override {
    std::lock_guard lock(mu_);
    if (level && !levels_[gsi]) ++rising_[gsi];
    levels_[gsi] = level;
    cv_.notify_all();
  }
  bool level(unsigned gsi) {
    std::lock_guard lock(mu_);
    return levels_[gsi];
  }
  // Rising edges seen on the line.
  unsigned rising(unsigned gsi) {
    std::lock_guard lock(mu_);
    return rising_[gsi];
  }
  bool wait_level(unsigned gsi, bool level, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return levels_[gsi] == level; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<unsigned, bool> levels_;
  std::map<unsigned, unsigned> rising_;
};

inline hv::VmConfig small_vm_config(unsigned cpus = 1, uint64_t ram = 16ull << 20) {
  hv::VmConfig c;
  c.ram_bytes = ram;
  c.vcpus = cpus;
  return c;
}

class DeviceTest : public ::testing::Test {
 protected:
  explicit DeviceTest(unsigned cpus = 1, uint64_t ram = 16ull << 20) : vm(small_vm_config(cpus, ram)) {
    vm.mem().add_slot(0, ram);
    vm.set_irqchip(&irq);
  }
  uint32_t in(uint16_t port, unsigned size = 1) { return vm.io().pio_read(port, size); }
  void out(uint16_t port, uint32_t value, unsigned size = 1) { vm.io().pio_write(port, size, value); }
  uint64_t mmio_in(uint64_t gpa, unsigned size) { return vm.io().mmio_read(gpa, size); }
  void mmio_out(uint64_t gpa, uint64_t value, unsigned size) { vm.io().mmio_write(gpa, size, value); }

  hv::Vm vm;
  FakeIrqChip irq;
};

}  // namespace nestvm::test
