// L0 runs a guest as L1: a flat 32-bit protected-mode program (the state multiboot starts
// in) writes to ports and MMIO, faults in its RAM lazily through EPT01, and stops itself.
#include <gtest/gtest.h>

#include <string>

#include "arch/cr.h"
#include "hv/vcpu.h"
#include "hv/vm.h"
#include "unit/cpu/test_machine.h"
#include "unit/hv/flat32_state.h"

namespace nestvm::test {
namespace {

using namespace arch;

// Collects port output; port 0xf4 stops the VM with the value as exit code (isa-debug-exit).
class TestPorts : public hv::PioDevice {
 public:
  explicit TestPorts(hv::Vm& vm) : vm_(vm) {}
  uint32_t pio_read(uint16_t port, unsigned) override { return port == 0x80 ? 0x5a : 0xff; }
  void pio_write(uint16_t port, unsigned, uint32_t value) override {
    if (port == 0xf4) vm_.request_stop(hv::StopReason::kDebugExit, int(value));
    else out += char(value);
  }
  std::string out;

 private:
  hv::Vm& vm_;
};

class TestMmio : public hv::MmioDevice {
 public:
  uint64_t mmio_read(uint64_t gpa, unsigned) override { return gpa == 0xfee00030 ? 0x50014 : 0; }
  void mmio_write(uint64_t gpa, unsigned size, uint64_t v) override { last = {gpa, size, v}; }
  struct { uint64_t gpa = 0; unsigned size = 0; uint64_t value = 0; } last;
};


TEST(VmFirstLight, FlatGuestRunsAsL1UnderEpt) {
  hv::VmConfig cfg;
  cfg.ram_bytes = 64ull << 20;
  hv::Vm vm(cfg);
  vm.mem().add_slot(0, cfg.ram_bytes);
  TestPorts ports(vm);
  vm.io().add_pio(0x3f8, 1, &ports, "out");
  vm.io().add_pio(0xf4, 1, &ports, "exit");
  vm.io().add_pio(0x80, 1, &ports, "in");
  TestMmio mmio;
  vm.io().add_mmio(0xfee00000, 0x1000, &mmio, "mmio");
  const auto code = assemble(R"(
    mov esi, offset msg
  1:
    lodsb
    test al, al
    jz 2f
    mov dx, 0x3f8
    out dx, al
    jmp 1b
  2:
    in al, 0x80
    mov edi, eax
    mov eax, [0xfee00030]
    mov dword ptr [0xfee000b0], 0x1234
    mov dword ptr [0x2000000], 7
    cpuid
    mov al, 0x21
    out 0xf4, al
    hlt
  msg:
    .asciz "hello from L1"
  )", 32, 0x100000);
  ASSERT_TRUE(vm.mem().write(0x100000, code.data(), code.size()));
  vm.vcpu(0).set_initial_state(flat32_state(0x100000));
  EXPECT_EQ(vm.run(), hv::StopReason::kDebugExit) << vm.stop_message();
  EXPECT_EQ(vm.exit_code(), 0x21);
  EXPECT_EQ(ports.out, "hello from L1");
  EXPECT_EQ(vm.vcpu(0).core().state.gpr[cpu::kRdi] & 0xff, 0x5au);
  EXPECT_EQ(mmio.last.gpa, 0xfee000b0u);
  EXPECT_EQ(mmio.last.value, 0x1234u);
  uint32_t v = 0;
  ASSERT_TRUE(vm.mem().read(0x2000000, &v, 4));
  EXPECT_EQ(v, 7u);
  // RAM is backed only where touched: code, stack, the one data page, page tables nowhere.
  EXPECT_LT(vm.mem().backed_pages(), 16u);
  const auto& st = vm.vcpu(0).stats();
  EXPECT_GT(st.exits[unsigned(ExitReason::IO_INSTRUCTION)].load(), 13u);
  EXPECT_EQ(st.exits[unsigned(ExitReason::CPUID)].load(), 1u);
  EXPECT_GE(st.exits[unsigned(ExitReason::EPT_VIOLATION)].load(), 4u);
}

}  // namespace
}  // namespace nestvm::test
