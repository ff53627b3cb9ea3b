// Interrupts end to end: flat 32-bit guests running as L1 under L0's vCPU loop take LAPIC timer
// interrupts (xAPIC MMIO, x2APIC MSRs, TSC-deadline), the PIT through the 8259 and through the
// I/O APIC, and IPIs after an INIT-SIPI-SIPI start-up of a second vCPU. Each guest checks what
// it sees and leaves through port 0xf4: 0x21 passes, anything else names the failed check.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "arch/cr.h"
#include "hv/irqchip/pc_irqchip.h"
#include "hv/vcpu.h"
#include "hv/vm.h"
#include "unit/cpu/test_machine.h"
#include "unit/hv/flat32_state.h"

namespace nestvm::test {
namespace {

using namespace arch;

constexpr uint64_t kGdt = 0x1000, kIdt = 0x2000, kCode = 0x100000, kHandler = kCode + 0x400;

class DebugExitPort : public hv::PioDevice {
 public:
  explicit DebugExitPort(hv::Vm& vm) : vm_(vm) {}
  uint32_t pio_read(uint16_t, unsigned) override { return 0xff; }
  void pio_write(uint16_t, unsigned, uint32_t value) override { vm_.request_stop(hv::StopReason::kDebugExit, int(value)); }

 private:
  hv::Vm& vm_;
};

hv::VmConfig guest_config(unsigned vcpus) {
  hv::VmConfig c;
  c.ram_bytes = 32ull << 20;
  c.vcpus = vcpus;
  c.model.set(cpu::Feature::kX2apic, true);
  c.model.set(cpu::Feature::kTscDeadline, true);
  return c;
}

// A VM with the PC irqchip, a flat GDT and an IDT whose `vectors` go to kHandler.
class GuestTest : public ::testing::Test {
 protected:
  explicit GuestTest(unsigned vcpus = 1) : vm(guest_config(vcpus)), chip(vm), exit_port(vm) {
    vm.set_irqchip(&chip);
    vm.mem().add_slot(0, vm.config().ram_bytes);
    vm.io().add_pio(0xf4, 1, &exit_port, "debug-exit");
    const uint64_t gdt[3] = {0, 0x00cf9b000000ffffull, 0x00cf93000000ffffull};
    EXPECT_TRUE(vm.mem().write(kGdt, gdt, sizeof gdt));
  }

  void route_vector(uint8_t vector, uint64_t handler = kHandler) {
    const uint64_t gate = (handler & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | ((handler >> 16) << 48);
    EXPECT_TRUE(vm.mem().write(kIdt + vector * 8, &gate, 8));
  }

  cpu::CpuState flat32(uint32_t eip) {
    cpu::CpuState s = flat32_state(eip);
    s.gdtr = {kGdt, 0x17};
    s.idtr = {kIdt, 0x7ff};
    return s;
  }

  void load(uint64_t pa, const std::string& src, int bits = 32) {
    const auto code = assemble(src, bits, pa);
    ASSERT_FALSE(code.empty());
    ASSERT_TRUE(vm.mem().write(pa, code.data(), code.size()));
  }

  // Runs until the guest leaves through port 0xf4, with a watchdog against hangs.
  void run_and_expect_pass() {
    std::atomic<bool> done{false};
    std::thread watchdog([&] {
      for (int i = 0; i < 1000 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (!done) vm.request_stop(hv::StopReason::kError, 1, "watchdog: the guest hung");
    });
    const hv::StopReason r = vm.run();
    done = true;
    watchdog.join();
    EXPECT_EQ(r, hv::StopReason::kDebugExit) << vm.stop_message();
    EXPECT_EQ(vm.exit_code(), 0x21) << "failed check " << std::hex << vm.exit_code();
  }

  uint64_t rbx(unsigned v = 0) { return vm.vcpu(v).core().state.gpr[cpu::kRbx]; }

  hv::Vm vm;
  hv::PcIrqChip chip;
  DebugExitPort exit_port;
};

TEST_F(GuestTest, LapicTimerThroughXapicMmioOneShotThenPeriodic) {
  route_vector(0x40);
  load(kCode, R"(
    mov dword ptr [0xfee000f0], 0x1ff   # SVR: software-enable, spurious vector 0xff
    mov dword ptr [0xfee003e0], 0xb     # divide by 1: 1 ns per count
    mov dword ptr [0xfee00320], 0x40    # LVT timer: one-shot, vector 0x40
    xor ebx, ebx
    mov dword ptr [0xfee00380], 1000000 # 1 ms
    sti
  1:
    hlt
    cmp ebx, 1
    jb 1b
    mov al, 0x22
    cmp dword ptr [0xfee00390], 0       # the count is spent
    jne fail
    mov dword ptr [0xfee00320], 0x20040 # periodic
    mov dword ptr [0xfee00380], 500000
  2:
    sti                                 # the STI shadow covers HLT
    hlt
    cli                                 # counted with interrupts off: no fifth tick
    cmp ebx, 4
    jb 2b
    mov dword ptr [0xfee00380], 0       # stop
    mov al, 0x23
    cmp dword ptr [0xfee000a0], 0       # PPR: nothing in service
    jne fail
    mov al, 0x21
  fail:
    out 0xf4, al
  .org 0x400
    inc ebx
    mov dword ptr [0xfee000b0], 0       # EOI
    iretd
  )");
  vm.vcpu(0).set_initial_state(flat32(kCode));
  run_and_expect_pass();
  EXPECT_EQ(rbx(), 4u);
  EXPECT_GE(vm.vcpu(0).stats().injected_interrupts.load(), 4u);
}

TEST_F(GuestTest, LapicTimerThroughX2apicMsrsAndTscDeadline) {
  route_vector(0x41);
  load(kCode, R"(
    mov ecx, 0x1b                      # IA32_APIC_BASE: EN | EXTD
    rdmsr
    or eax, 0xc00
    wrmsr
    xor edx, edx
    mov ecx, 0x80f                     # SVR
    mov eax, 0x1ff
    wrmsr
    mov ecx, 0x83e                     # divide by 1
    mov eax, 0xb
    wrmsr
    mov ecx, 0x832                     # LVT timer: one-shot, vector 0x41
    mov eax, 0x41
    wrmsr
    xor ebx, ebx
    mov ecx, 0x838                     # initial count: 1 ms
    mov eax, 1000000
    wrmsr
    sti
  1:
    hlt
    cmp ebx, 1
    jb 1b
    mov ecx, 0x832                     # TSC-deadline mode
    mov eax, 0x40041
    xor edx, edx
    wrmsr
    rdtsc
    add eax, 2000000
    adc edx, 0
    mov ecx, 0x6e0
    wrmsr
  2:
    hlt
    cmp ebx, 2
    jb 2b
    mov ecx, 0x6e0                     # disarmed once it fired
    rdmsr
    or eax, edx
    mov al, 0x22
    jnz fail
    mov ecx, 0x83f                     # SELF IPI: taken right after the WRMSR
    mov eax, 0x41
    xor edx, edx
    wrmsr
    mov al, 0x23
    cmp ebx, 3
    jne fail
    mov ecx, 0x802                     # x2APIC ID
    rdmsr
    test eax, eax
    mov al, 0x24
    jnz fail
    mov al, 0x21
  fail:
    out 0xf4, al
  .org 0x400
    push eax
    push ecx
    push edx
    inc ebx
    mov ecx, 0x80b                     # EOI
    xor eax, eax
    xor edx, edx
    wrmsr
    pop edx
    pop ecx
    pop eax
    iretd
  )");
  vm.vcpu(0).set_initial_state(flat32(kCode));
  run_and_expect_pass();
  EXPECT_EQ(rbx(), 3u);
  EXPECT_TRUE(chip.lapic(0).x2apic_mode());
}

TEST_F(GuestTest, PitThroughThe8259) {
  route_vector(0x20);
  load(kCode, R"(
    mov al, 0x11                       # ICW1
    out 0x20, al
    mov al, 0x20                       # ICW2: IRQ0 at vector 0x20
    out 0x21, al
    mov al, 0x04                       # ICW3
    out 0x21, al
    mov al, 0x01                       # ICW4
    out 0x21, al
    mov al, 0x11
    out 0xa0, al
    mov al, 0x28
    out 0xa1, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01
    out 0xa1, al
    mov al, 0xfe                       # only IRQ0
    out 0x21, al
    mov al, 0xff
    out 0xa1, al
    mov al, 0x34                       # counter 0, mode 2
    out 0x43, al
    mov ax, 1193                       # 1 ms
    out 0x40, al
    mov al, ah
    out 0x40, al
    xor ebx, ebx
  1:
    sti                                # the STI shadow covers HLT
    hlt
    cli                                # counted with interrupts off: no fourth tick
    cmp ebx, 3
    jb 1b
    mov al, 0x0b                       # OCW3: read the ISR
    out 0x20, al
    in al, 0x20
    test al, al
    mov al, 0x22
    jnz fail
    mov al, 0x21
  fail:
    out 0xf4, al
  .org 0x400
    push eax
    inc ebx
    mov al, 0x20                       # non-specific EOI
    out 0x20, al
    pop eax
    iretd
  )");
  vm.vcpu(0).set_initial_state(flat32(kCode));
  run_and_expect_pass();
  EXPECT_EQ(rbx(), 3u);
}

TEST_F(GuestTest, PitThroughTheIoapic) {
  route_vector(0x30);
  load(kCode, R"(
    mov al, 0xff                       # PIC masked
    out 0x21, al
    out 0xa1, al
    mov dword ptr [0xfee000f0], 0x1ff
    mov dword ptr [0xfec00000], 0x15   # pin 2, high dword: destination APIC 0
    mov dword ptr [0xfec00010], 0
    mov dword ptr [0xfec00000], 0x14   # pin 2, low dword: vector 0x30, fixed, edge, unmasked
    mov dword ptr [0xfec00010], 0x30
    mov al, 0x34
    out 0x43, al
    mov ax, 1193
    out 0x40, al
    mov al, ah
    out 0x40, al
    xor ebx, ebx
  1:
    sti                                # the STI shadow covers HLT: no tick is lost in between
    hlt
    cli                                # counted with interrupts off: the next tick waits
    cmp ebx, 2
    jb 1b
    mov al, 0x21
    out 0xf4, al
  .org 0x400
    inc ebx
    mov dword ptr [0xfee000b0], 0
    iretd
  )");
  vm.vcpu(0).set_initial_state(flat32(kCode));
  run_and_expect_pass();
  EXPECT_EQ(rbx(), 2u);
}

class SmpGuestTest : public GuestTest {
 protected:
  SmpGuestTest() : GuestTest(2) {}
};

// The BSP starts the AP with INIT-SIPI-SIPI; the AP (real mode at 0x8000) switches to protected
// mode, software-enables its APIC and sends the BSP an IPI; the BSP, halted, takes it.
TEST_F(SmpGuestTest, InitSipiSipiThenAnIpiBack) {
  route_vector(0x50);
  load(0x8000, R"(
  .code16
    cli
    xor ax, ax
    mov ds, ax
    lgdt [0x8100]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    .byte 0x66, 0xea
    .long pm32
    .word 0x08
  .code32
  pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov dword ptr [0xfee000f0], 0x1ff
    mov eax, [0xfee00020]              # our APIC ID, for the BSP to check
    mov [0x9004], eax
    mov byte ptr [0x9000], 1
    mov dword ptr [0xfee00310], 0      # to APIC 0
    mov dword ptr [0xfee00300], 0x4050 # fixed, assert, vector 0x50
  2:
    hlt
    jmp 2b
  .org 0x100
    .word 0x17
    .long 0x1000
  )", 16);
  load(kCode, R"(
    mov dword ptr [0xfee000f0], 0x1ff
    mov dword ptr [0xfee00310], 0x01000000
    mov dword ptr [0xfee00300], 0x4500 # INIT
    mov dword ptr [0xfee00300], 0x4608 # SIPI: 0x8000
    mov dword ptr [0xfee00300], 0x4608 # the second SIPI of the MP protocol
    xor ebx, ebx
    sti
  1:
    hlt
    cmp ebx, 1
    jb 1b
    mov al, 0x22
    cmp byte ptr [0x9000], 1
    jne fail
    mov al, 0x23
    cmp dword ptr [0x9004], 0x01000000
    jne fail
    mov al, 0x21
  fail:
    out 0xf4, al
  .org 0x400
    inc ebx
    mov dword ptr [0xfee000b0], 0
    iretd
  )");
  vm.vcpu(0).set_initial_state(flat32(kCode));
  run_and_expect_pass();
  EXPECT_EQ(rbx(), 1u);
}

}  // namespace
}  // namespace nestvm::test
