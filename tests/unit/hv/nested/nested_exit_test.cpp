// Exits from L2 routed by L1's vmcs12 controls: reflected to L1 when it asked (I/O and MSR
// bitmaps read from L1 memory, exception bitmap, CR0 mask and shadow, preemption timer, EPT12
// violations and misconfigurations with hardware's qualification), handled by L0 without L1
// seeing them otherwise (ports L1 lets through, EPT02 faults L0 fixes), and L2 without EPT12
// running on L1-physical memory.
#include <chrono>
#include <functional>
#include <thread>

#include "hv/irqchip/pc_irqchip.h"
#include "unit/hv/nested/nested_fixture.h"

namespace nestvm::test {
namespace {

using namespace arch;
using F = VmcsField;
namespace q = exit_qual::ept;

constexpr int kReflected = 0x21;

uint64_t l0(const hv::VcpuStats& s, ExitReason r) { return s.l2_exits_l0[unsigned(r)].load(); }
uint64_t l1(const hv::VcpuStats& s, ExitReason r) { return s.l2_exits_reflected[unsigned(r)].load(); }

TEST_F(NestedTest, IoBitmapsSendOnlyInterceptedPortsToL1) {
  w12(F::CPU_BASED_VM_EXEC_CONTROL, (r12(F::CPU_BASED_VM_EXEC_CONTROL) & ~uint64_t(proc::kUncondIoExiting)) | proc::kUseIoBitmaps);
  w12(F::IO_BITMAP_A, kIoBitmapA);
  w12(F::IO_BITMAP_B, kIoBitmapB);
  const uint8_t bit = 1u << (0x81 % 8);
  ASSERT_TRUE(vm.mem().write(kIoBitmapA + 0x81 / 8, &bit, 1));
  load_l2("mov al, 0x11\n out 0x80, al\n mov al, 0x22\n out 0x81, al\n hlt\n");
  EXPECT_EQ(run_l1(), kReflected);
  ASSERT_EQ(ports.writes.size(), 1u);  // port 0x80 reached L0's device straight from L2
  EXPECT_EQ(ports.writes[0].port, 0x80);
  EXPECT_EQ(ports.writes[0].value, 0x11u);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::IO_INSTRUCTION));
  EXPECT_EQ(r12(F::EXIT_QUALIFICATION), (0x81ull << 16) | (1u << 6));  // OUT imm8, 1 byte
  EXPECT_EQ(l0(stats(), ExitReason::IO_INSTRUCTION), 1u);
  EXPECT_EQ(l1(stats(), ExitReason::IO_INSTRUCTION), 1u);
}

TEST_F(NestedTest, UnconditionalIoExitingSendsEveryPortToL1) {
  load_l2("mov al, 0x11\n out 0x80, al\n hlt\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_TRUE(ports.writes.empty());
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::IO_INSTRUCTION));
}

TEST_F(NestedTest, MsrBitmapsMergedWithL0s) {
  w12(F::CPU_BASED_VM_EXEC_CONTROL, r12(F::CPU_BASED_VM_EXEC_CONTROL) | proc::kUseMsrBitmaps);
  w12(F::MSR_BITMAP, kMsrBitmap);
  const uint8_t bit = 1u << (0x174 % 8);
  ASSERT_TRUE(vm.mem().write(kMsrBitmap + 2048 + 0x174 / 8, &bit, 1));  // WRMSR SYSENTER_CS
  // RDMSR of the TSC and of SYSENTER_CS: neither level intercepts them, no exit at all; the
  // WRMSR L1 intercepts is reflected.
  load_l2("mov ecx, 0x10\n rdmsr\n mov ecx, 0x174\n rdmsr\n wrmsr\n hlt\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::MSR_WRITE));
  EXPECT_EQ(l0(stats(), ExitReason::MSR_READ) + l1(stats(), ExitReason::MSR_READ), 0u);
}

TEST_F(NestedTest, WithoutMsrBitmapsEveryMsrAccessExitsToL1) {
  load_l2("mov ecx, 0x10\n rdmsr\n hlt\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::MSR_READ));
}

TEST_F(NestedTest, ExceptionBitmap) {
  w12(F::EXCEPTION_BITMAP, 1u << unsigned(Vector::kUD));
  load_l2("ud2\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::EXCEPTION_NMI));
  EXPECT_EQ(r12(F::VM_EXIT_INTR_INFO), intr_info::make(6, unsigned(EventType::kHardwareException), false));
  EXPECT_EQ(r12(F::GUEST_RIP), kL2Code);
}

TEST_F(NestedTest, Cr0ShadowReadAndMaskedWrite) {
  // L1 owns CR0.TS and shows it set: L2 reads TS = 1, writing the same value back costs no
  // exit; clearing it exits to L1.
  w12(F::CR0_GUEST_HOST_MASK, cr0::kTS);
  w12(F::CR0_READ_SHADOW, cr0::kPE | cr0::kET | cr0::kTS);
  load_l2("mov eax, cr0\n mov ebx, eax\n mov cr0, eax\n and eax, ~8\n mov cr0, eax\n hlt\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_TRUE(vm.vcpu(0).core().state.gpr[cpu::kRbx] & cr0::kTS);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::CR_ACCESS));
  EXPECT_EQ(r12(F::EXIT_QUALIFICATION), exit_qual::cr::make(0, exit_qual::cr::kAccessMovTo, cpu::kRax));
  EXPECT_EQ(l0(stats(), ExitReason::CR_ACCESS), 0u);
}

TEST_F(NestedTest, PreemptionTimerOfZeroExitsBeforeL2Runs) {
  w12(F::PIN_BASED_VM_EXEC_CONTROL, r12(F::PIN_BASED_VM_EXEC_CONTROL) | pin::kPreemptionTimer);
  w12(F::VMX_PREEMPTION_TIMER_VALUE, 0);
  load_l2("cpuid\n hlt\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::PREEMPTION_TIMER));
  EXPECT_EQ(r12(F::GUEST_RIP), kL2Code);
}

TEST_F(NestedTest, Ept12NotMappedIsAnEptViolationForL1) {
  load_l2("mov eax, [0x300000]\n hlt\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::EPT_VIOLATION));
  EXPECT_EQ(r12(F::EXIT_QUALIFICATION), q::kRead | q::kGlaValid | q::kGlaTranslation);
  EXPECT_EQ(r12(F::GUEST_PHYSICAL_ADDRESS), 0x300000u);
  EXPECT_EQ(r12(F::GUEST_LINEAR_ADDRESS), 0x300000u);
  EXPECT_EQ(r12(F::GUEST_RIP), kL2Code);
  // L2's code page was mapped into EPT02 by L0 on the way, unseen by L1.
  EXPECT_GE(l0(stats(), ExitReason::EPT_VIOLATION), 1u);
  EXPECT_EQ(l1(stats(), ExitReason::EPT_VIOLATION), 1u);
  EXPECT_GE(vm.mmu_stats().ept02_mapped_pages.load(), 1u);
}

TEST_F(NestedTest, WriteToReadExecuteEpt12Page) {
  use_4k_ept12(ept::kRead | ept::kExec | kEptMemWb);
  load_l2("mov dword ptr [0x5000], 1\n hlt\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::EPT_VIOLATION));
  EXPECT_EQ(r12(F::EXIT_QUALIFICATION), q::kWrite | q::kReadable | q::kExecutable | q::kGlaValid | q::kGlaTranslation);
  EXPECT_EQ(r12(F::GUEST_PHYSICAL_ADDRESS), 0x5000u);
}

TEST_F(NestedTest, MalformedEpt12IsAMisconfigurationForL1) {
  write64(kEptPd + 8, (kL2Base + 0x200000) | ept::kWrite | kEptMemWb | ept::kLargePage);  // write without read
  load_l2("mov eax, [0x200010]\n hlt\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::EPT_MISCONFIG));
  EXPECT_EQ(r12(F::GUEST_PHYSICAL_ADDRESS), 0x200010u);
  EXPECT_EQ(r12(F::EXIT_QUALIFICATION), 0u);
}

TEST_F(NestedTest, Ept12AccessedAndDirtyFlags) {
  use_4k_ept12(ept::kRwxMask | kEptMemWb);
  w12(F::EPT_POINTER, r12(F::EPT_POINTER) | eptp::kAdEnable);
  load_l2("mov dword ptr [0x6000], 7\n mov eax, [0x7000]\n cpuid\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::CPUID));
  EXPECT_EQ(read64(kEptPt + 8 * 6) & (ept::kAccessed | ept::kDirty), ept::kAccessed | ept::kDirty);
  EXPECT_EQ(read64(kEptPt + 8 * 7) & (ept::kAccessed | ept::kDirty), ept::kAccessed);
  EXPECT_TRUE(read64(kEptPml4) & ept::kAccessed);
  uint32_t v = 0;
  ASSERT_TRUE(vm.mem().read(kL2Base + 0x6000, &v, 4));
  EXPECT_EQ(v, 7u);  // L2's write landed in L1's page
}

TEST_F(NestedTest, WithoutEpt12L2RunsOnL1PhysicalMemory) {
  // L1 without EPT: L2 pages with L1's own page directory (L1-physical = L2-physical).
  w12(F::SECONDARY_VM_EXEC_CONTROL, 0);
  w12(F::GUEST_CR0, cr0::kPE | cr0::kNE | cr0::kET | cr0::kPG);
  w12(F::GUEST_CR3, kPd);
  w12(F::GUEST_CR4, cr4::kPSE | cr4::kVMXE);
  w12(F::GUEST_RIP, 0x400000);
  load(0x400000, "mov dword ptr [0x500000], 0x55\n cpuid\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::CPUID));
  uint32_t v = 0;
  ASSERT_TRUE(vm.mem().read(0x500000, &v, 4));
  EXPECT_EQ(v, 0x55u);
  EXPECT_EQ(vm.mmu_stats().ept02_roots.load(), 0u);
}

}  // namespace
}  // namespace nestvm::test

namespace nestvm::test {
namespace {

using namespace arch;
using F = VmcsField;

// L2 programs the local APIC (L0's device, reached through an identity EPT12 mapping of its
// page, emulated by L0) and spins; the timer interrupt is L1's, which takes it as an
// external-interrupt exit from L2.
class NestedIrqTest : public NestedTest {
 protected:
  NestedIrqTest() : chip(vm) {
    vm.set_irqchip(&chip);
    // L2's memory identity-mapped too, as the minivisor's pass-through maps it: L0's
    // emulator works in L1-physical addresses.
    write64(kEptPd + 8 * (kL2Base >> 21), kL2Base | 7 | kEptMemWb | ept::kLargePage);
    w12(F::GUEST_RIP, kL2Base + kL2Code);
    w12(F::GUEST_RSP, kL2Base + 0x10000);
    write64(kEptPdpt + 8 * 3, 0x224000 | 7);
    write64(0x224000 + 8 * 0x1f7, 0xfee00000ull | 7 | kEptMemWb | ept::kLargePage);  // identity
    w12(F::PIN_BASED_VM_EXEC_CONTROL, r12(F::PIN_BASED_VM_EXEC_CONTROL) | pin::kExtIntExiting);
    load_l2(R"(
      mov dword ptr [0xfee000f0], 0x1ff
      mov dword ptr [0xfee003e0], 0xb
      mov dword ptr [0xfee00320], 0x40
      mov dword ptr [0xfee00380], 0x10000
    1:
      jmp 1b
    )");
  }
  hv::PcIrqChip chip;
};

TEST_F(NestedIrqTest, InterruptForL1ExitsL2WithTheVectorAcknowledged) {
  w12(F::VM_EXIT_CONTROLS, r12(F::VM_EXIT_CONTROLS) | exit_ctl::kAckIntrOnExit);
  EXPECT_EQ(run_l1(), 0x21);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::EXTERNAL_INTERRUPT));
  EXPECT_EQ(r12(F::VM_EXIT_INTR_INFO), intr_info::make(0x40, unsigned(EventType::kExternalInterrupt), false));
  EXPECT_GE(stats().l2_exits_l0[unsigned(ExitReason::EPT_VIOLATION)].load(), 4u);  // the APIC writes, in L0
  EXPECT_EQ(stats().l2_exits_reflected[unsigned(ExitReason::EXTERNAL_INTERRUPT)].load(), 1u);
}

TEST_F(NestedIrqTest, WithoutAcknowledgeTheInterruptStaysPending) {
  EXPECT_EQ(run_l1(), 0x21);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::EXTERNAL_INTERRUPT));
  EXPECT_EQ(r12(F::VM_EXIT_INTR_INFO), 0u);
  EXPECT_TRUE(chip.has_interrupt(0));
}

}  // namespace
}  // namespace nestvm::test

namespace nestvm::test {
namespace {

using namespace arch;
using F = VmcsField;

// L2 entered in the wait-for-SIPI activity state (as an L1 parks L2's application processors):
// INIT and SIPI for the vCPU are exits to L1, the SIPI's vector in the qualification.
class NestedWaitForSipiTest : public NestedTest {
 protected:
  NestedWaitForSipiTest() {
    w12(F::GUEST_ACTIVITY_STATE, 3);
    load_l2("hlt\n");
  }
  // Delivers the signal once L2 is parked (the test thread acts as another processor).
  int run_with(std::function<void(hv::Vcpu&)> signal) {
    std::thread t([&] {
      for (int i = 0; i < 2000 && stats().nested_entries.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      signal(vm.vcpu(0));
    });
    const int code = run_l1();
    t.join();
    return code;
  }
};

TEST_F(NestedWaitForSipiTest, SipiExitsToL1WithItsVector) {
  EXPECT_EQ(run_with([](hv::Vcpu& v) { v.deliver_sipi(0x9a); }), 0x21);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::SIPI));
  EXPECT_EQ(r12(F::EXIT_QUALIFICATION), 0x9au);
  EXPECT_EQ(r12(F::GUEST_ACTIVITY_STATE), 3u);
}

TEST_F(NestedWaitForSipiTest, InitExitsToL1) {
  EXPECT_EQ(run_with([](hv::Vcpu& v) { v.deliver_init(); }), 0x21);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::INIT_SIGNAL));
}

}  // namespace
}  // namespace nestvm::test

namespace nestvm::test {
namespace {

using namespace arch;
using F = VmcsField;

// WRMSR to a VMX capability MSR that L1 lets through its MSR bitmap: L0 keeps those MSRs and
// refuses the write with #GP, which L1's exception bitmap then claims as hardware would.
TEST_F(NestedTest, ExceptionL0RaisesForL2GoesToL1WhenItsBitmapSaysSo) {
  w12(F::CPU_BASED_VM_EXEC_CONTROL, r12(F::CPU_BASED_VM_EXEC_CONTROL) | proc::kUseMsrBitmaps);
  w12(F::MSR_BITMAP, kMsrBitmap);
  w12(F::EXCEPTION_BITMAP, 1u << unsigned(Vector::kGP));
  load_l2("mov ecx, 0x480\n wrmsr\n hlt\n");
  EXPECT_EQ(run_l1(), 0x21);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::EXCEPTION_NMI));
  EXPECT_EQ(r12(F::VM_EXIT_INTR_INFO), intr_info::make(13, unsigned(EventType::kHardwareException), true));
  EXPECT_EQ(r12(F::VM_EXIT_INTR_ERROR_CODE), 0u);
  EXPECT_EQ(r12(F::GUEST_RIP), kL2Code + 5);
  EXPECT_EQ(stats().l2_exits_l0[unsigned(ExitReason::MSR_WRITE)].load(), 1u);
}

TEST_F(NestedTest, ExceptionL0RaisesForL2IsL2sOtherwise) {
  w12(F::CPU_BASED_VM_EXEC_CONTROL, r12(F::CPU_BASED_VM_EXEC_CONTROL) | proc::kUseMsrBitmaps);
  w12(F::MSR_BITMAP, kMsrBitmap);
  load_l2("mov ecx, 0x480\n wrmsr\n hlt\n");
  EXPECT_EQ(run_l1(), 0x21);
  // L2 has no IDT: the #GP L0 injected becomes a triple fault, which exits to L1.
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::TRIPLE_FAULT));
}

}  // namespace
}  // namespace nestvm::test

namespace nestvm::test {
namespace {

using namespace arch;
using F = VmcsField;

// L1's VMX-preemption timer runs while L2 does; with "save VMX-preemption timer value" the exit
// stores what is left of it (SDM §28.3.3), and L0's own timer does not steal its exit.
TEST_F(NestedTest, PreemptionTimerValueSavedAtExit) {
  constexpr uint64_t kStart = 0xfffffff;
  w12(F::PIN_BASED_VM_EXEC_CONTROL, r12(F::PIN_BASED_VM_EXEC_CONTROL) | pin::kPreemptionTimer);
  w12(F::VM_EXIT_CONTROLS, r12(F::VM_EXIT_CONTROLS) | exit_ctl::kSavePreemptionTimer);
  w12(F::VMX_PREEMPTION_TIMER_VALUE, kStart);
  load_l2("mov ecx, 100000\n 1: loop 1b\n cpuid\n");
  EXPECT_EQ(run_l1(), 0x21);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::CPUID));
  EXPECT_LT(r12(F::VMX_PREEMPTION_TIMER_VALUE), kStart);
  EXPECT_GT(r12(F::VMX_PREEMPTION_TIMER_VALUE), 0u);
}

}  // namespace
}  // namespace nestvm::test

namespace nestvm::test {
namespace {

using namespace arch;
using F = VmcsField;

// L2 enters IA-32e mode by itself (PAE, LME, then paging, none of which L1 intercepts): the
// exit hands L1 a vmcs12 whose "IA-32e mode guest" control says so (SDM §28.3.1), so that the
// next VMRESUME keeps L2 in long mode.
TEST_F(NestedTest, L2EnteringLongModeUpdatesIa32eModeGuest) {
  w12(F::CPU_BASED_VM_EXEC_CONTROL, r12(F::CPU_BASED_VM_EXEC_CONTROL) | proc::kUseMsrBitmaps);
  w12(F::MSR_BITMAP, kMsrBitmap);
  write64(kL2Base + 0x10000, 0x11000 | 3);  // L2's PML4 -> PDPT -> PD, 2 MiB identity page
  write64(kL2Base + 0x11000, 0x12000 | 3);
  write64(kL2Base + 0x12000, 0x83);
  load_l2(R"(
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, 0x10000
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    cpuid
  )");
  EXPECT_EQ(run_l1(), 0x21);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::CPUID));
  EXPECT_TRUE(r12(F::GUEST_CR0) & cr0::kPG);
  EXPECT_TRUE(r12(F::VM_ENTRY_CONTROLS) & entry_ctl::kIa32eModeGuest);
}

}  // namespace
}  // namespace nestvm::test
