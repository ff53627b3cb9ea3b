// VMX non-root operation: control-register accesses (SDM Vol. 3 §26.1.3, §26.3): CR0/CR4
// guest/host masks and read shadows, CLTS, LMSW, SMSW, CR3-load/store exiting with CR3-target
// values, CR8 load/store exiting, the TPR shadow and the TPR threshold; the CR-access exit
// qualification (§28.2.1, Table 28-3).
#include <gtest/gtest.h>

#include "unit/cpu/vmx/nonroot_test_helpers.h"

namespace nestvm::test {
namespace {

using arch::ExitReason;
using arch::Vector;
using arch::VmcsField;
using namespace arch::proc;
namespace cr0 = arch::cr0;
namespace cr4 = arch::cr4;
namespace crq = arch::exit_qual::cr;

constexpr uint64_t kVirtualApic = 0xe000;

TEST(NonRootCr, ReadsOfCr0AndCr4TakeHostOwnedBitsFromTheShadows) {
  NonRootMachine m("mov rax, cr0\nsmsw rbx\nsmsw [0x200000]\nmov rcx, cr4\nvmcall");
  // TS host-owned and shadowed as 1, MP host-owned and shadowed as 0; VMXE host-owned, shadow 0.
  m.vmwrite(VmcsField::CR0_GUEST_HOST_MASK, cr0::kTS | cr0::kMP);
  m.vmwrite(VmcsField::CR0_READ_SHADOW, cr0::kTS);
  m.vmwrite(VmcsField::CR4_GUEST_HOST_MASK, cr4::kVMXE);
  m.vmwrite(VmcsField::CR4_READ_SHADOW, 0);
  const uint64_t cr0v = m.vmread(VmcsField::GUEST_CR0), cr4v = m.vmread(VmcsField::GUEST_CR4);
  m.expect_exit(ExitReason::VMCALL);
  const uint64_t seen = (cr0v & ~cr0::kMP) | cr0::kTS;
  EXPECT_EQ(m.reg(cpu::kRax), seen);
  EXPECT_EQ(m.reg(cpu::kRbx), seen);
  EXPECT_EQ(m.peek<uint16_t>(0x200000), uint16_t(seen));
  EXPECT_EQ(m.reg(cpu::kRcx), cr4v & ~cr4::kVMXE);
  EXPECT_EQ(m.vmread(VmcsField::GUEST_CR0), cr0v);  // reads change nothing
}

TEST(NonRootCr, MovToCr0ExitsWhenAHostOwnedBitDiffersFromTheShadow) {
  NonRootMachine m("mov r9, cr0\nbts r9, 3\nmov cr0, r9\nvmcall");
  m.vmwrite(VmcsField::CR0_GUEST_HOST_MASK, cr0::kTS);
  m.vmwrite(VmcsField::CR0_READ_SHADOW, 0);
  const uint64_t cr0v = m.vmread(VmcsField::GUEST_CR0);
  m.expect_exit(ExitReason::CR_ACCESS);
  EXPECT_EQ(m.exit_qualification(), crq::make(0, crq::kAccessMovTo, 9));
  EXPECT_EQ(m.insn_len(), encoded_length("mov cr0, r9"));
  EXPECT_EQ(m.vmread(VmcsField::GUEST_CR0), cr0v);
}

TEST(NonRootCr, MovToCr0MatchingTheShadowKeepsHostOwnedBitsAndWritesTheOthers) {
  // TS host-owned with shadow 1 (actual TS = 0): writing TS = 1 matches, no exit, TS stays 0;
  // MP is guest-owned and is cleared.
  NonRootMachine m("mov rax, cr0\nbts rax, 3\nbtr rax, 1\nmov cr0, rax\nvmcall");
  m.vmwrite(VmcsField::CR0_GUEST_HOST_MASK, cr0::kTS);
  m.vmwrite(VmcsField::CR0_READ_SHADOW, cr0::kTS);
  const uint64_t cr0v = m.vmread(VmcsField::GUEST_CR0);
  ASSERT_FALSE(cr0v & cr0::kTS);
  m.expect_exit(ExitReason::VMCALL);
  EXPECT_EQ(m.vmread(VmcsField::GUEST_CR0), cr0v & ~cr0::kMP);
}

TEST(NonRootCr, MovToCr0OfAValueVmxDoesNotSupportIsGp) {
  // NE is fixed to 1 in VMX operation (IA32_VMX_CR0_FIXED0); guest-owned, clearing it is #GP.
  NonRootMachine m("mov rax, cr0\nbtr rax, 5\nmov cr0, rax\nvmcall");
  m.expect_exception(Vector::kGP);
  // The same bit host-owned with shadow 0: the guest "clears" it without an exit or fault.
  NonRootMachine h("mov rax, cr0\nbtr rax, 5\nmov cr0, rax\nvmcall");
  h.vmwrite(VmcsField::CR0_GUEST_HOST_MASK, cr0::kNE);
  h.vmwrite(VmcsField::CR0_READ_SHADOW, 0);
  h.expect_exit(ExitReason::VMCALL);
  EXPECT_TRUE(h.vmread(VmcsField::GUEST_CR0) & cr0::kNE);
}

TEST(NonRootCr, MovToCr4FollowsTheMaskAndShadow) {
  // VMXE host-owned with shadow 0: the guest writes CR4 without VMXE; VMXE stays set. OSXSAVE is
  // guest-owned and is set.
  NonRootMachine m("mov rax, cr4\nbts rax, 18\nmov cr4, rax\nbts rax, 13\nmov cr4, rax\nvmcall");
  m.vmwrite(VmcsField::CR4_GUEST_HOST_MASK, cr4::kVMXE);
  m.vmwrite(VmcsField::CR4_READ_SHADOW, 0);
  const uint64_t cr4v = m.vmread(VmcsField::GUEST_CR4);
  m.expect_exit(ExitReason::CR_ACCESS);  // the second write sets VMXE, which the shadow has clear
  EXPECT_EQ(m.exit_qualification(), crq::make(4, crq::kAccessMovTo, 0));
  EXPECT_EQ(m.vmread(VmcsField::GUEST_CR4), cr4v | cr4::kOSXSAVE);
  // VMXE guest-owned: clearing it is #GP (IA32_VMX_CR4_FIXED0).
  NonRootMachine g("mov rax, cr4\nbtr rax, 13\nmov cr4, rax\nvmcall");
  g.expect_exception(Vector::kGP);
}

TEST(NonRootCr, CltsExitsOnlyWithTsHostOwnedAndShadowed) {
  NonRootMachine m("clts\nvmcall");
  m.vmwrite(VmcsField::CR0_GUEST_HOST_MASK, cr0::kTS);
  m.vmwrite(VmcsField::CR0_READ_SHADOW, cr0::kTS);
  m.expect_exit(ExitReason::CR_ACCESS);
  EXPECT_EQ(m.exit_qualification(), crq::make(0, crq::kAccessClts, 0));
  EXPECT_EQ(m.insn_len(), 2u);
  // Host-owned with shadow 0: CLTS completes and leaves CR0.TS (1 here) alone.
  NonRootMachine keep("clts\nvmcall");
  keep.vmwrite(VmcsField::GUEST_CR0, keep.vmread(VmcsField::GUEST_CR0) | cr0::kTS);
  keep.vmwrite(VmcsField::CR0_GUEST_HOST_MASK, cr0::kTS);
  keep.vmwrite(VmcsField::CR0_READ_SHADOW, 0);
  keep.expect_exit(ExitReason::VMCALL);
  EXPECT_TRUE(keep.vmread(VmcsField::GUEST_CR0) & cr0::kTS);
  // Guest-owned: TS is cleared.
  NonRootMachine clear("clts\nvmcall");
  clear.vmwrite(VmcsField::GUEST_CR0, clear.vmread(VmcsField::GUEST_CR0) | cr0::kTS);
  clear.expect_exit(ExitReason::VMCALL);
  EXPECT_FALSE(clear.vmread(VmcsField::GUEST_CR0) & cr0::kTS);
}

TEST(NonRootCr, LmswExitReportsSourceOperandTypeAndLinearAddress) {
  NonRootMachine r("mov dx, 0x9\nlmsw dx");
  r.vmwrite(VmcsField::CR0_GUEST_HOST_MASK, cr0::kTS);
  r.vmwrite(VmcsField::CR0_READ_SHADOW, 0);
  r.expect_exit(ExitReason::CR_ACCESS);
  EXPECT_EQ(r.exit_qualification(), crq::make(0, crq::kAccessLmsw, 0, false, 0x9));
  EXPECT_EQ(r.insn_len(), encoded_length("lmsw dx"));
  // Memory operand: bit 6, and the operand's linear address in GUEST_LINEAR_ADDRESS.
  NonRootMachine m("mov rbx, 0x200000\nlmsw [rbx + 0x10]");
  m.poke<uint16_t>(0x200010, 0xfff4);  // sets EM (host-owned, shadow 0)
  m.vmwrite(VmcsField::CR0_GUEST_HOST_MASK, cr0::kEM);
  m.vmwrite(VmcsField::CR0_READ_SHADOW, 0);
  m.expect_exit(ExitReason::CR_ACCESS);
  EXPECT_EQ(m.exit_qualification(), crq::make(0, crq::kAccessLmsw, 0, true, 0xfff4));
  EXPECT_EQ(m.guest_linear_address(), 0x200010u);
}

TEST(NonRootCr, LmswExitsToSetAShadowedPeButNeverToClearIt) {
  // PE host-owned, shadow PE = 0: a source with PE = 1 exits.
  NonRootMachine set("mov ax, 0x1\nlmsw ax\nvmcall");
  set.vmwrite(VmcsField::CR0_GUEST_HOST_MASK, cr0::kPE);
  set.vmwrite(VmcsField::CR0_READ_SHADOW, 0);
  set.expect_exit(ExitReason::CR_ACCESS);
  // PE host-owned, shadow PE = 1: a source with PE = 0 cannot clear PE, so no exit; MP (guest-
  // owned) is cleared by the source.
  NonRootMachine clear("xor eax, eax\nlmsw ax\nvmcall");
  clear.vmwrite(VmcsField::CR0_GUEST_HOST_MASK, cr0::kPE);
  clear.vmwrite(VmcsField::CR0_READ_SHADOW, cr0::kPE);
  const uint64_t cr0v = clear.vmread(VmcsField::GUEST_CR0);
  clear.expect_exit(ExitReason::VMCALL);
  EXPECT_EQ(clear.vmread(VmcsField::GUEST_CR0), cr0v & ~cr0::kMP);
}

TEST(NonRootCr, LmswOperandFaultComesBeforeTheExit) {
  NonRootMachine m("mov rbx, 0x8000000000000000\nlmsw [rbx]");
  m.vmwrite(VmcsField::CR0_GUEST_HOST_MASK, 0xf);
  m.vmwrite(VmcsField::CR0_READ_SHADOW, 0);
  m.expect_exception(Vector::kGP);  // non-canonical operand, fetched before the exit decision
}

TEST(NonRootCr, MovCrAtCpl3IsGpNotAnExit) {
  NonRootMachine m("mov rax, cr3\nmov cr3, rax");
  m.proc(kCr3LoadExiting | kCr3StoreExiting);
  m.guest_cpl3();
  m.expect_exception(Vector::kGP);
}

TEST(NonRootCr, Cr3LoadExitingHonoursTheTargetValues) {
  // Count 0: every MOV to CR3 exits, even of the current value.
  NonRootMachine m("mov rax, cr3\nmov cr3, rax\nvmcall");
  m.proc(kCr3LoadExiting);
  m.expect_exit(ExitReason::CR_ACCESS);
  EXPECT_EQ(m.exit_qualification(), crq::make(3, crq::kAccessMovTo, 0));
  // The value is the second of two targets: no exit, CR3 is written.
  NonRootMachine t("mov rdx, cr3\nmov cr3, rdx\nvmcall");
  t.proc(kCr3LoadExiting);
  const uint64_t cr3 = t.vmread(VmcsField::GUEST_CR3);
  t.vmwrite(VmcsField::CR3_TARGET_VALUE0, 0x5000);
  t.vmwrite(VmcsField::CR3_TARGET_VALUE1, cr3);
  t.vmwrite(VmcsField::CR3_TARGET_COUNT, 2);
  t.expect_exit(ExitReason::VMCALL);
  // The value is a target beyond the count: exit.
  NonRootMachine beyond("mov rdx, cr3\nmov cr3, rdx\nvmcall");
  beyond.proc(kCr3LoadExiting);
  beyond.vmwrite(VmcsField::CR3_TARGET_VALUE1, cr3);
  beyond.vmwrite(VmcsField::CR3_TARGET_COUNT, 1);
  beyond.expect_exit(ExitReason::CR_ACCESS);
  EXPECT_EQ(beyond.exit_qualification(), crq::make(3, crq::kAccessMovTo, 2));
  // Without the control, no exit.
  NonRootMachine off("mov rdx, cr3\nmov cr3, rdx\nvmcall");
  off.expect_exit(ExitReason::VMCALL);
}

TEST(NonRootCr, Cr3StoreExiting) {
  NonRootMachine m("xor r12, r12\nmov r12, cr3\nvmcall");
  m.proc(kCr3StoreExiting);
  m.expect_exit(ExitReason::CR_ACCESS);
  EXPECT_EQ(m.exit_qualification(), crq::make(3, crq::kAccessMovFrom, 12));
  EXPECT_EQ(m.reg(cpu::kR12), 0u);
  NonRootMachine off("mov r12, cr3\nvmcall");
  const uint64_t cr3 = off.vmread(VmcsField::GUEST_CR3);
  off.expect_exit(ExitReason::VMCALL);
  EXPECT_EQ(off.reg(cpu::kR12), cr3);
}

TEST(NonRootCr, Cr8LoadAndStoreExiting) {
  NonRootMachine load("mov esi, 3\nmov cr8, rsi\nvmcall");
  load.proc(kCr8LoadExiting);
  load.expect_exit(ExitReason::CR_ACCESS);
  EXPECT_EQ(load.exit_qualification(), crq::make(8, crq::kAccessMovTo, 6));
  EXPECT_EQ(load.insn_len(), encoded_length("mov cr8, rsi"));
  NonRootMachine store("mov rdi, cr8\nvmcall");
  store.proc(kCr8StoreExiting);
  store.expect_exit(ExitReason::CR_ACCESS);
  EXPECT_EQ(store.exit_qualification(), crq::make(8, crq::kAccessMovFrom, 7));
  // Neither control: CR8 itself is written and read.
  NonRootMachine off("mov esi, 3\nmov cr8, rsi\nmov rdi, cr8\nvmcall");
  off.expect_exit(ExitReason::VMCALL);
  EXPECT_EQ(off.reg(cpu::kRdi), 3u);
  EXPECT_EQ(off.cpu.state.cr8, 3u);
}

TEST(NonRootCr, TprShadowVirtualizesCr8) {
  NonRootMachine m("mov rax, cr8\nmov ebx, 9\nmov cr8, rbx\nvmcall");
  m.proc(kUseTprShadow);
  m.vmwrite(VmcsField::VIRTUAL_APIC_PAGE_ADDR, kVirtualApic);
  m.poke<uint32_t>(kVirtualApic + 0x80, 0x5a);
  m.poke<uint32_t>(kVirtualApic + 0x84, 0x12345678);
  m.expect_exit(ExitReason::VMCALL);
  EXPECT_EQ(m.reg(cpu::kRax), 5u);                            // VTPR[7:4]
  EXPECT_EQ(m.peek<uint32_t>(kVirtualApic + 0x80), 0x90u);    // bits 3:0 and 31:8 cleared
  EXPECT_EQ(m.peek<uint32_t>(kVirtualApic + 0x84), 0x12345678u);
  EXPECT_EQ(m.cpu.state.cr8, 0u);                             // CR8 untouched
  // Reserved source bits are still #GP(0).
  NonRootMachine bad("mov ebx, 0x10\nmov cr8, rbx");
  bad.proc(kUseTprShadow);
  bad.vmwrite(VmcsField::VIRTUAL_APIC_PAGE_ADDR, kVirtualApic);
  bad.expect_exception(Vector::kGP);
}

TEST(NonRootCr, MovToCr8BelowTheTprThresholdExitsAfterTheInstruction) {
  NonRootMachine m("mov ebx, 4\nmov cr8, rbx\nmov ebx, 3\nmov cr8, rbx\nmov eax, 1\nvmcall");
  m.proc(kUseTprShadow);
  m.vmwrite(VmcsField::VIRTUAL_APIC_PAGE_ADDR, kVirtualApic);
  m.vmwrite(VmcsField::TPR_THRESHOLD, 4);
  m.poke<uint32_t>(kVirtualApic + 0x80, 0x40);  // VM entry requires VTPR[7:4] >= the threshold
  m.expect_exit(ExitReason::TPR_BELOW_THRESHOLD);  // 4 is not below 4; 3 is
  const uint64_t after = 2 * encoded_length("mov ebx, 4") + 2 * encoded_length("mov cr8, rbx");
  EXPECT_EQ(m.rip_offset(), after);  // trap-like: RIP of the next instruction
  EXPECT_EQ(m.peek<uint32_t>(kVirtualApic + 0x80), 0x30u);
  EXPECT_NE(m.reg(cpu::kRax), 1u);
}

}  // namespace
}  // namespace nestvm::test
