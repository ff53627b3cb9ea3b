// End to end: a flat 32-bit guest running as L1 prints through the 16550 (polling LSR.THRE),
// reads fw_cfg's signature, and stops through isa-debug-exit, all by real I/O exits.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "arch/cr.h"
#include "hv/vcpu.h"
#include "hv/vm.h"
#include "unit/cpu/test_machine.h"
#include "vmm/devices/debug_exit.h"
#include "vmm/devices/fw_cfg.h"
#include "vmm/devices/uart16550.h"
#include "unit/hv/flat32_state.h"

namespace nestvm::test {
namespace {

using namespace arch;


TEST(DevicesVm, GuestPrintsThroughTheUartAndExitsThroughDebugExit) {
  hv::VmConfig cfg;
  cfg.ram_bytes = 16ull << 20;
  hv::Vm vm(cfg);
  vm.mem().add_slot(0, cfg.ram_bytes);
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  vmm::Uart16550 uart(vm, vmm::uart::kCom1, vmm::uart::kCom1Irq, out[1], -1);
  vmm::DebugExit exit_dev(vm, 0xf4, 4);
  vmm::FwCfg fw_cfg(vm);
  const auto code = assemble(R"(
    mov esi, offset msg
  1:
    lodsb
    test al, al
    jz 3f
    call putc
    jmp 1b
  3:
    xor eax, eax
    mov dx, 0x510
    out dx, ax
    mov ecx, 4
  4:
    mov dx, 0x511
    in al, dx
    call putc
    loop 4b
    mov al, 0x2a
    out 0xf4, al
    hlt
  putc:
    mov bl, al
  5:
    mov dx, 0x3fd
    in al, dx
    test al, 0x20
    jz 5b
    mov dx, 0x3f8
    mov al, bl
    out dx, al
    ret
  msg:
    .asciz "hello from "
  )", 32, 0x100000);
  ASSERT_TRUE(vm.mem().write(0x100000, code.data(), code.size()));
  vm.vcpu(0).set_initial_state(flat32_state(0x100000));
  EXPECT_EQ(vm.run(), hv::StopReason::kDebugExit) << vm.stop_message();
  EXPECT_EQ(vm.exit_code(), (0x2a << 1) | 1);
  close(out[1]);
  std::string got;
  char buf[64];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) got.append(buf, size_t(n));
  close(out[0]);
  EXPECT_EQ(got, "hello from QEMU");
}

}  // namespace
}  // namespace nestvm::test
