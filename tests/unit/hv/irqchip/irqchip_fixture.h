// A VM with the PC interrupt controllers, driven from the test's thread: a fake clock for the
// timers, and the LAPIC page reached as a given vCPU's thread would reach it.
#pragma once
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>

#include "arch/apic.h"
#include "cpu/cpu_model.h"
#include "hv/clock.h"
#include "hv/irqchip/pc_irqchip.h"
#include "hv/vcpu.h"
#include "hv/vm.h"

namespace nestvm::test {

inline std::atomic<uint64_t> g_fake_tsc{1ull << 40};
inline uint64_t fake_tsc() { return g_fake_tsc.load(); }

struct ChipOptions {
  unsigned vcpus = 2;
  bool x2apic = true;
  bool tsc_deadline = true;
};

inline hv::VmConfig chip_vm_config(const ChipOptions& o) {
  hv::VmConfig c;
  c.ram_bytes = 16ull << 20;
  c.vcpus = o.vcpus;
  c.model.set(cpu::Feature::kX2apic, o.x2apic);
  c.model.set(cpu::Feature::kTscDeadline, o.tsc_deadline);
  return c;
}

class IrqChipTest : public ::testing::Test {
 protected:
  explicit IrqChipTest(ChipOptions o = {}) : vm(chip_vm_config(o)), chip(vm) {
    vm.set_irqchip(&chip);
    chip.set_clock(fake_tsc);
  }
  ~IrqChipTest() override { hv::set_running_vcpu(nullptr); }

  // The LAPIC page as vCPU `v` sees it (dispatch goes by the running vCPU).
  uint32_t apic_read(unsigned v, arch::ApicReg r, uint64_t base = 0xfee00000) {
    hv::set_running_vcpu(&vm.vcpu(v));
    const uint32_t value = uint32_t(vm.io().mmio_read(base + unsigned(r), 4));
    hv::set_running_vcpu(nullptr);
    return value;
  }
  void apic_write(unsigned v, arch::ApicReg r, uint32_t value, uint64_t base = 0xfee00000) {
    hv::set_running_vcpu(&vm.vcpu(v));
    vm.io().mmio_write(base + unsigned(r), 4, value);
    hv::set_running_vcpu(nullptr);
  }
  // x2APIC register `r` by RDMSR/WRMSR; false: #GP.
  bool x2_read(unsigned v, arch::ApicReg r, uint64_t& value) { return chip.msr_read(v, arch::apic_reg_msr(r), value); }
  bool x2_write(unsigned v, arch::ApicReg r, uint64_t value) { return chip.msr_write(v, arch::apic_reg_msr(r), value); }
  bool enable_x2apic(unsigned v) { return chip.msr_write(v, 0x1b, chip.lapic(v).apic_base() | (1u << 10)); }

  void software_enable(unsigned v) { apic_write(v, arch::ApicReg::kSvr, 0x1ff); }
  bool irr_has(unsigned v, uint8_t vector) {
    return apic_read(v, arch::ApicReg(unsigned(arch::ApicReg::kIrr) + (vector >> 5) * 0x10)) & (1u << (vector & 31));
  }
  bool isr_has(unsigned v, uint8_t vector) {
    return apic_read(v, arch::ApicReg(unsigned(arch::ApicReg::kIsr) + (vector >> 5) * 0x10)) & (1u << (vector & 31));
  }
  bool tmr_has(unsigned v, uint8_t vector) {
    return apic_read(v, arch::ApicReg(unsigned(arch::ApicReg::kTmr) + (vector >> 5) * 0x10)) & (1u << (vector & 31));
  }
  bool irr_has_x2(unsigned v, uint8_t vector) {
    uint64_t w = 0;
    x2_read(v, arch::ApicReg(unsigned(arch::ApicReg::kIrr) + (vector >> 5) * 0x10), w);
    return w & (1u << (vector & 31));
  }
  // Rounds up, so that advancing by parts never falls short of a deadline computed for the whole
  // (hv::ns_to_tsc rounds down).
  void advance_ns(uint64_t ns) {
    g_fake_tsc += uint64_t(((unsigned __int128)ns * hv::tsc_hz() + 999999999u) / 1000000000u);
  }

  hv::Vm vm;
  hv::PcIrqChip chip;
};

}  // namespace nestvm::test
