// VMLAUNCH/VMRESUME from a real L1: L2 entered on vmcs02 and its exit seen by L1 in vmcs12, and
// every way the entry fails as hardware fails it (VMfailInvalid, VMfailValid 4/5/7/8/26,
// VM-entry failure with exit reason bit 31 and L1's host state loaded).
#include "unit/hv/nested/nested_fixture.h"

namespace nestvm::test {
namespace {

using namespace arch;
using F = VmcsField;

constexpr int kReflected = 0x21;
// EFLAGS low byte after VMfailValid (ZF, bit 1) and VMfailInvalid (CF, bit 1).
constexpr int kFailValid = 0x42, kFailInvalid = 0x03;

TEST_F(NestedTest, LaunchRunsL2AndCpuidExitReachesL1) {
  load_l2("mov eax, 1\n cpuid\n hlt\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::CPUID));
  EXPECT_EQ(r12(F::GUEST_RIP), kL2Code + 5);  // at the CPUID, after the 5-byte MOV
  EXPECT_EQ(r12(F::VM_EXIT_INSTRUCTION_LEN), 2u);
  EXPECT_TRUE(vmcs12().launched);
  EXPECT_FALSE(nested().guest_mode);
  EXPECT_EQ(stats().nested_entries.load(), 1u);
  EXPECT_EQ(stats().l2_exits_reflected[unsigned(ExitReason::CPUID)].load(), 1u);
  // L1 resumed at its host RIP with its host state: paged, CPL 0, flat.
  EXPECT_EQ(vm.vcpu(0).guest_cr3(), kPd);
  EXPECT_TRUE(vm.vcpu(0).guest_cr0() & cr0::kPG);
}

TEST_F(NestedTest, HltExitAndL2Registers) {
  load_l2("mov ebx, 0x1234\n hlt\n");
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::HLT));
  EXPECT_EQ(r12(F::GUEST_RIP), kL2Code + 5);
  EXPECT_EQ(r12(F::VM_EXIT_INSTRUCTION_LEN), 1u);
  // General registers are not switched by VM exits: L1 sees L2's EBX.
  EXPECT_EQ(vm.vcpu(0).core().state.gpr[cpu::kRbx] & 0xffffffff, 0x1234u);
}

TEST_F(NestedTest, ResumeOnClearVmcsFailsValid5) {
  load(kL1Code, "vmresume\n pushfd\n pop eax\n out 0xf4, al\n hlt\n");
  EXPECT_EQ(run_l1(), kFailValid);
  EXPECT_EQ(r12(F::VM_INSTRUCTION_ERROR), uint64_t(VmxError::VMRESUME_NONLAUNCHED_VMCS));
  EXPECT_EQ(stats().nested_entries.load(), 0u);
}

// SDM Vol. 2 VMLAUNCH: "events blocked by MOV SS" is VMfailValid(26), checked before the launch
// state; L0 sees the blocking in vmcs01's interruptibility state saved at the VMLAUNCH exit.
TEST_F(NestedTest, LaunchRightAfterMovSsFailsValid26) {
  load(kL1Code, "mov ax, ss\n mov ss, ax\n vmlaunch\n pushfd\n pop eax\n out 0xf4, al\n hlt\n");
  EXPECT_EQ(run_l1(), kFailValid);
  EXPECT_EQ(r12(F::VM_INSTRUCTION_ERROR), uint64_t(VmxError::ENTRY_EVENTS_BLOCKED_BY_MOV_SS));
  EXPECT_EQ(stats().nested_entries.load(), 0u);
}

TEST_F(NestedTest, LaunchOnLaunchedVmcsFailsValid4) {
  vmcs12().launched = true;
  EXPECT_EQ(run_l1(), kFailValid);
  EXPECT_EQ(r12(F::VM_INSTRUCTION_ERROR), uint64_t(VmxError::VMLAUNCH_NONCLEAR_VMCS));
}

TEST_F(NestedTest, NoCurrentVmcsFailsInvalid) {
  nested().current_vmptr = hv::nested::kInvalidGpa;
  EXPECT_EQ(run_l1(), kFailInvalid);
}

TEST_F(NestedTest, InvalidControlsFailValid7) {
  w12(F::PIN_BASED_VM_EXEC_CONTROL, 0);  // clears the default-1 bits
  EXPECT_EQ(run_l1(), kFailValid);
  EXPECT_EQ(r12(F::VM_INSTRUCTION_ERROR), uint64_t(VmxError::ENTRY_INVALID_CONTROL_FIELD));
}

TEST_F(NestedTest, UnrestrictedGuestWithoutEptFailsValid7) {
  w12(F::SECONDARY_VM_EXEC_CONTROL, proc2::kUnrestrictedGuest);
  EXPECT_EQ(run_l1(), kFailValid);
  EXPECT_EQ(r12(F::VM_INSTRUCTION_ERROR), uint64_t(VmxError::ENTRY_INVALID_CONTROL_FIELD));
}

TEST_F(NestedTest, InvalidHostStateFailsValid8) {
  w12(F::HOST_CR4, cr4::kPSE);  // VMXE is fixed to 1
  EXPECT_EQ(run_l1(), kFailValid);
  EXPECT_EQ(r12(F::VM_INSTRUCTION_ERROR), uint64_t(VmxError::ENTRY_INVALID_HOST_STATE_FIELD));
}

TEST_F(NestedTest, InvalidGuestStateIsAnEntryFailureSeenAtHostRip) {
  load_l2("hlt\n");
  w12(F::GUEST_CR0, cr0::kPE | cr0::kET);  // NE is fixed to 1
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::INVALID_STATE) | kExitReasonFailedEntry);
  EXPECT_FALSE(vmcs12().launched);  // the launch state does not change
  EXPECT_EQ(stats().nested_entries.load(), 0u);
}

TEST_F(NestedTest, MsrLoadFailureIsAnEntryFailureWithItsIndex) {
  load_l2("hlt\n");
  // Entry 2 of the VM-entry MSR-load list names an x2APIC MSR, which the list may not load.
  const uint64_t area = 0x230000;
  const uint64_t list[4] = {0x174, 0x10, 0x808, 0};
  ASSERT_TRUE(vm.mem().write(area, list, sizeof list));
  w12(F::VM_ENTRY_MSR_LOAD_ADDR, area);
  w12(F::VM_ENTRY_MSR_LOAD_COUNT, 2);
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::MSR_LOAD_FAIL) | kExitReasonFailedEntry);
  EXPECT_EQ(r12(F::EXIT_QUALIFICATION), 2u);
}

TEST_F(NestedTest, InjectedEventIsDeliveredToL2) {
  // L1 injects vector 0x30 into L2; L2's handler does CPUID, whose exit L1 sees at the handler.
  const uint64_t idt = 0x3000;  // L2-physical
  const uint64_t handler = 0x2000;
  const uint64_t gate = (handler & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | ((handler >> 16) << 48);
  write64(kL2Base + idt + 0x30 * 8, gate);
  load_l2("hlt\n");
  const auto h = assemble("cpuid\n", 32, handler);
  ASSERT_TRUE(vm.mem().write(kL2Base + handler, h.data(), h.size()));
  w12(F::GUEST_IDTR_BASE, idt);
  const uint64_t gdt[3] = {0, 0x00cf9b000000ffffull, 0x00cf93000000ffffull};  // delivery loads CS from it
  ASSERT_TRUE(vm.mem().write(kL2Base + 0x4000, gdt, sizeof gdt));
  w12(F::GUEST_GDTR_BASE, 0x4000);
  w12(F::GUEST_RFLAGS, 0x202);  // an external interrupt is injected only with IF = 1 (SDM §27.3.1.4)
  w12(F::VM_ENTRY_INTR_INFO_FIELD, intr_info::make(0x30, unsigned(EventType::kExternalInterrupt), false));
  EXPECT_EQ(run_l1(), kReflected);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::CPUID));
  EXPECT_EQ(r12(F::GUEST_RIP), handler);
  EXPECT_EQ(r12(F::GUEST_RSP), 0x8000u - 12);  // EFLAGS, CS, EIP pushed
  EXPECT_FALSE(r12(F::VM_ENTRY_INTR_INFO_FIELD) & intr_info::kValid);  // cleared by the exit
}

}  // namespace
}  // namespace nestvm::test

namespace nestvm::test {
namespace {

using namespace arch;
using F = VmcsField;

// L1 does it all with VMX instructions: FEATURE_CONTROL, VMXON, VMPTRLD of a vmcs12 it wrote
// in its memory, VMLAUNCH, then a loop that logs each exit reason (VMREAD), steps L2 past the
// instruction (VMREAD/VMWRITE of GUEST_RIP: a dirty field vmcs02 takes at the next entry) and
// VMRESUMEs, until L2's HLT.
TEST_F(NestedTest, L1HypervisorHandlesCpuidIoAndHlt) {
  constexpr uint64_t kLog = 0x240000, kLogPtr = 0x23fff0;
  // The vmcs12 page as L1 would have it after VMWRITEs and VMCLEAR (the layout is nestvm's own:
  // L1 software writes it only through VMWRITE, here the test lays it down for brevity).
  w12(F::HOST_RIP, kL1Code + 0x100);
  uint8_t page[4096] = {};
  vmcs12().to_page(page);
  ASSERT_TRUE(vm.mem().write(kVmcs12, page, sizeof page));
  write32(kVmxon, hv::nested::kVmcs12Revision);
  write32(kLogPtr, kLog);
  nested().vmxon = false;
  nested().current_vmptr = hv::nested::kInvalidGpa;
  load(kL1Code, R"(
    mov ecx, 0x3a
    mov eax, 5
    xor edx, edx
    wrmsr
    vmxon qword ptr [vmxon_ptr]
    vmptrld qword ptr [vmcs_ptr]
    vmlaunch
    mov al, 0xee
    out 0xf4, al
  vmxon_ptr: .quad 0x201000
  vmcs_ptr: .quad 0x200000
    .org 0x100
    mov ebx, 0x4402
    vmread eax, ebx
    mov edi, [0x23fff0]
    mov [edi], eax
    add dword ptr [0x23fff0], 4
    cmp eax, 12
    je 1f
    mov ebx, 0x681e
    vmread ecx, ebx
    mov ebx, 0x440c
    vmread edx, ebx
    add ecx, edx
    mov ebx, 0x681e
    vmwrite ebx, ecx
    vmresume
    mov al, 0xef
    out 0xf4, al
  1:
    mov al, 0x21
    out 0xf4, al
  )");
  load_l2("cpuid\n mov al, 0x42\n out 0x80, al\n hlt\n");
  EXPECT_EQ(run_l1(), 0x21);
  uint32_t log[4] = {};
  ASSERT_TRUE(vm.mem().read(kLog, log, sizeof log));
  EXPECT_EQ(log[0], uint32_t(ExitReason::CPUID));
  EXPECT_EQ(log[1], uint32_t(ExitReason::IO_INSTRUCTION));
  EXPECT_EQ(log[2], uint32_t(ExitReason::HLT));
  EXPECT_EQ(stats().nested_entries.load(), 3u);
  EXPECT_TRUE(ports.writes.empty());  // L1 intercepts every port
  EXPECT_EQ(stats().exits[unsigned(ExitReason::VMRESUME)].load(), 2u);
}

}  // namespace
}  // namespace nestvm::test

namespace nestvm::test {
namespace {

using namespace arch;
using F = VmcsField;

// Both levels in 64-bit mode (the minivisor's case): L1 with 4-level paging (1 GiB pages),
// L2 an IA-32e mode guest on the same tables behind an identity EPT12; the exit loads L1's
// 64-bit host state.
class Nested64Test : public NestedTest {
 protected:
  static constexpr uint64_t kPml4 = 0x4000, kPdpt = 0x5000, kL2Rip = 0x600000;
  Nested64Test() {
    write64(kPml4, kPdpt | 3);
    write64(kPdpt, 0x83);  // 1 GiB page at 0
    write64(kEptPdpt, 7 | kEptMemWb | ept::kLargePage);  // EPT12: identity 1 GiB
    const uint64_t gdt64[4] = {0, 0x00af9b000000ffffull, 0x00cf93000000ffffull, 0x00008b0050000067ull};
    EXPECT_TRUE(vm.mem().write(kGdt, gdt64, sizeof gdt64));
    load64(kL1Code, "vmlaunch\n pushfq\n pop rax\n out 0xf4, al\n hlt\n");
    load64(kHostCode, "mov rax, cr4\n mov rbx, rsp\n mov al, 0x21\n out 0xf4, al\n hlt\n");
    w12(F::VM_EXIT_CONTROLS, r12(F::VM_EXIT_CONTROLS) | exit_ctl::kHostAddrSpaceSize);
    w12(F::VM_ENTRY_CONTROLS, r12(F::VM_ENTRY_CONTROLS) | entry_ctl::kIa32eModeGuest);
    w12(F::HOST_CR3, kPml4);
    w12(F::HOST_CR4, cr4::kPAE | cr4::kVMXE);
    w12(F::HOST_RSP, 0x7fff0);
    w12(F::GUEST_CR0, cr0::kPE | cr0::kNE | cr0::kET | cr0::kPG);
    w12(F::GUEST_CR3, kPml4);
    w12(F::GUEST_CR4, cr4::kPAE | cr4::kVMXE);
    w12(F::GUEST_CS_AR_BYTES, 0xa09b);
    w12(F::GUEST_GDTR_BASE, kGdt);
    w12(F::GUEST_RIP, kL2Rip);
    w12(F::GUEST_RSP, 0x700000);
  }
  void load64(uint64_t pa, const std::string& src) {
    const auto code = assemble(src, 64, pa);
    ASSERT_FALSE(code.empty());
    ASSERT_TRUE(vm.mem().write(pa, code.data(), code.size()));
  }
  int run64() {
    cpu::CpuState s;
    s.cr0 = cr0::kPE | cr0::kET | cr0::kNE | cr0::kPG;
    s.cr3 = kPml4;
    s.cr4 = cr4::kPAE | cr4::kVMXE;
    s.msr.efer = efer::kLME | efer::kLMA;
    s.seg[unsigned(SegReg::kCS)] = {0x08, 0, 0xffffffff, 0xa09b};
    for (SegReg r : {SegReg::kSS, SegReg::kDS, SegReg::kES, SegReg::kFS, SegReg::kGS})
      s.seg[unsigned(r)] = {0x10, 0, 0xffffffff, 0xc093};
    s.tr = {0x18, 0x5000, 0x67, ar::kP | sys_type::kTss32Busy};
    s.ldtr = {0, 0, 0, ar::kUnusable};
    s.gdtr = {kGdt, 0x1f};
    s.idtr = {0x2000, 0xfff};
    s.rip = kL1Code;
    s.gpr[cpu::kRsp] = 0x80000;
    s.rflags = 2;
    vm.vcpu(0).set_initial_state(s);
    const hv::StopReason why = vm.run();
    EXPECT_EQ(why, hv::StopReason::kDebugExit) << vm.stop_message();
    return why == hv::StopReason::kDebugExit ? vm.exit_code() : -1;
  }
};

TEST_F(Nested64Test, LongModeL2ExitsToLongModeL1) {
  load64(kL2Rip, "mov rbx, 0x123456789\n cpuid\n hlt\n");
  EXPECT_EQ(run64(), 0x21);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::CPUID));
  EXPECT_EQ(r12(F::GUEST_RIP), kL2Rip + 10);
  EXPECT_TRUE(vm.vcpu(0).guest_efer() & efer::kLMA);
  const auto& gpr = vm.vcpu(0).core().state.gpr;
  EXPECT_EQ(gpr[cpu::kRbx], 0x7fff0u);  // L1's host RSP, read by its 64-bit host code
  EXPECT_TRUE(vm.vcpu(0).guest_cr4() & cr4::kPAE);
}

TEST_F(Nested64Test, HostAddressSpaceSizeMustMatchL1sMode) {
  // L1 in IA-32e mode with a 32-bit host-state area: VMfailValid(8) (SDM §27.2.4).
  w12(F::VM_EXIT_CONTROLS, r12(F::VM_EXIT_CONTROLS) & ~uint64_t(exit_ctl::kHostAddrSpaceSize));
  EXPECT_EQ(run64(), kFailValid);
  EXPECT_EQ(r12(F::VM_INSTRUCTION_ERROR), uint64_t(VmxError::ENTRY_INVALID_HOST_STATE_FIELD));
}

}  // namespace
}  // namespace nestvm::test

namespace nestvm::test {
namespace {

using namespace arch;
using F = VmcsField;

// vmcs02 as nested_vmx_run leaves it (checked on the test thread, without running): L1's
// controls merged with L0's, CR masks and shadows, the MSR bitmaps ORed, EPT02 and L2's VPID;
// then reuse: a second preparation copies only the vmcs12 fields L1 wrote since.
class Vmcs02Test : public NestedTest {
 protected:
  Vmcs02Test() {
    cpu::CpuState s;
    s.cr0 = cr0::kPE | cr0::kET | cr0::kNE | cr0::kPG;
    s.cr3 = kPd;
    s.cr4 = cr4::kPSE | cr4::kVMXE;
    s.seg[unsigned(SegReg::kCS)] = {0x08, 0, 0xffffffff, 0xc09b};
    for (SegReg r : {SegReg::kSS, SegReg::kDS, SegReg::kES, SegReg::kFS, SegReg::kGS})
      s.seg[unsigned(r)] = {0x10, 0, 0xffffffff, 0xc093};
    s.tr = {0x18, 0x5000, 0x67, ar::kP | sys_type::kTss32Busy};
    s.ldtr = {0, 0, 0, ar::kUnusable};
    s.rip = kL1Code;
    s.rflags = 2;
    vm.vcpu(0).set_initial_state(s);
  }
  uint64_t r02(F f) { return vm.vcpu(0).vmread(f); }
};

TEST_F(Vmcs02Test, ControlsMergedWithL0s) {
  w12(F::EXCEPTION_BITMAP, 1u << 6);
  w12(F::CR0_GUEST_HOST_MASK, cr0::kTS);
  w12(F::CR0_READ_SHADOW, cr0::kTS);
  w12(F::CPU_BASED_VM_EXEC_CONTROL, r12(F::CPU_BASED_VM_EXEC_CONTROL) | proc::kUseMsrBitmaps);
  w12(F::MSR_BITMAP, kMsrBitmap);
  const uint8_t bit = 1u << (0x174 % 8);
  ASSERT_TRUE(vm.mem().write(kMsrBitmap + 0x174 / 8, &bit, 1));
  ASSERT_TRUE(nested().nested_vmx_run(true));
  ASSERT_TRUE(nested().guest_mode);
  EXPECT_EQ(vm.vcpu(0).core().vmptrst(), nested().vmcs02_hpa);
  // L0 keeps its external-interrupt and NMI exits and its I/O; L1's HLT exiting stays.
  EXPECT_TRUE(r02(F::PIN_BASED_VM_EXEC_CONTROL) & pin::kExtIntExiting);
  EXPECT_TRUE(r02(F::PIN_BASED_VM_EXEC_CONTROL) & pin::kNmiExiting);
  EXPECT_TRUE(r02(F::CPU_BASED_VM_EXEC_CONTROL) & proc::kHltExiting);
  EXPECT_TRUE(r02(F::CPU_BASED_VM_EXEC_CONTROL) & proc::kUncondIoExiting);
  EXPECT_FALSE(r02(F::CPU_BASED_VM_EXEC_CONTROL) & proc::kUseIoBitmaps);
  EXPECT_EQ(r02(F::EXCEPTION_BITMAP), 1u << 6);
  EXPECT_EQ(r02(F::CR0_GUEST_HOST_MASK), cr0::kTS | hv::kL0OwnedCr0);
  // L2 reads TS from L1's shadow, NE (L0's alone) as it is.
  EXPECT_EQ(r02(F::CR0_READ_SHADOW) & (cr0::kTS | cr0::kNE), cr0::kTS | cr0::kNE);
  EXPECT_EQ(r02(F::VIRTUAL_PROCESSOR_ID), nested().vpid02);
  EXPECT_NE(r02(F::EPT_POINTER), vm.tdp().eptp());  // EPT02, not EPT01
  EXPECT_EQ(vm.mmu_stats().ept02_roots.load(), 1u);
  // MSR bitmap: L1's read intercept of SYSENTER_CS and L0's of the x2APIC range.
  const uint8_t* bm = vm.host().frame(r02(F::MSR_BITMAP));
  EXPECT_TRUE(bm[0x174 / 8] & bit);
  EXPECT_TRUE(bm[0x800 / 8] & 1);
  EXPECT_FALSE(bm[0x10 / 8] & (1u << (0x10 % 8)));  // the TSC passes through both levels
  EXPECT_EQ(r02(F::GUEST_RIP), kL2Code);
}

TEST_F(Vmcs02Test, ReusedWithOnlyDirtyFieldsCopied) {
  ASSERT_TRUE(nested().nested_vmx_run(true));
  EXPECT_FALSE(vmcs12().any_dirty());
  // A field vmcs02 holds that L1 did not write again keeps vmcs02's value: no full rebuild.
  vm.vcpu(0).vmwrite(F::GUEST_ES_BASE, 0x1234);
  w12(F::GUEST_RIP, kL2Code + 0x10);
  nested().prepare_vmcs02();
  EXPECT_EQ(r02(F::GUEST_RIP), kL2Code + 0x10);
  EXPECT_EQ(r02(F::GUEST_ES_BASE), 0x1234u);
  // Another vmcs12 (VMPTRLD of a different region) is copied whole.
  nested().current_vmptr = kVmcs12 + 0x1000;
  nested().prepare_vmcs02();
  EXPECT_EQ(r02(F::GUEST_ES_BASE), 0u);
}

}  // namespace
}  // namespace nestvm::test
