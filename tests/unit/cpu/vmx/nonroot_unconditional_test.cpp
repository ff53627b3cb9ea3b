// VMX non-root operation: instructions that exit unconditionally (SDM Vol. 3 §26.1.2) and the
// faults that come before their exits (§26.1.1, each VMX instruction's "Operation"), with the
// exit qualification and instruction information of §28.2.
#include <gtest/gtest.h>

#include "arch/vmx_insn_info.h"
#include "unit/cpu/vmx/nonroot_test_helpers.h"

namespace nestvm::test {
namespace {

using arch::ExitReason;
using arch::Vector;
using arch::VmcsField;

TEST(NonRootUnconditional, CpuidExitsAtCpl0AndCpl3WithoutExecuting) {
  for (bool user : {false, true}) {
    NonRootMachine m("mov eax, 0\ncpuid\nhlt");
    if (user) m.guest_cpl3();
    m.expect_exit(ExitReason::CPUID);
    EXPECT_EQ(m.insn_len(), encoded_length("cpuid"));
    EXPECT_EQ(m.rip_offset(), encoded_length("mov eax, 0"));
    EXPECT_EQ(m.reg(cpu::kRax), 0u);  // CPUID did not run
    EXPECT_EQ(m.exit_qualification(), 0u);
  }
}

TEST(NonRootUnconditional, AnExitWithTfSetLeavesNoSingleStepTrapInTheHost) {
  // The instruction did not complete: no single-step #DB, in the guest or in the host.
  NonRootMachine m("cpuid");
  m.vmwrite(VmcsField::GUEST_RFLAGS, 0x102);
  m.expect_exit(ExitReason::CPUID);
  EXPECT_FALSE(m.cpu.has_pending_event());
  EXPECT_EQ(m.vmread(VmcsField::GUEST_RIP), vmx_layout::kGuestCode);
}

TEST(NonRootUnconditional, InvdExitsAtCpl0AndFaultsAtCpl3) {
  NonRootMachine m("invd");
  m.expect_exit(ExitReason::INVD);
  EXPECT_EQ(m.insn_len(), 2u);
  NonRootMachine u("invd");
  u.guest_cpl3();
  u.expect_exception(Vector::kGP);  // the CPL check comes before the exit
}

TEST(NonRootUnconditional, XsetbvExitsBeforeCheckingEcxButAfterCplAndOsxsave) {
  // ECX = 1 would be #GP(0) in root operation: the exit comes first.
  NonRootMachine m("mov rax, cr4\nbts rax, 18\nmov cr4, rax\nmov ecx, 1\nxor eax, eax\nxor edx, edx\nxsetbv");
  m.expect_exit(ExitReason::XSETBV);
  EXPECT_EQ(m.insn_len(), 3u);
  NonRootMachine no_osxsave("xor ecx, ecx\nmov eax, 1\nxor edx, edx\nxsetbv");
  no_osxsave.expect_exception(Vector::kUD);
  NonRootMachine user("xor ecx, ecx\nmov eax, 1\nxor edx, edx\nxsetbv");
  user.vmwrite(VmcsField::GUEST_CR4, user.vmread(VmcsField::GUEST_CR4) | arch::cr4::kOSXSAVE);
  user.guest_cpl3();
  user.expect_exception(Vector::kGP);
}

TEST(NonRootUnconditional, VmcallExitsAtAnyCplAndInCompatibilityMode) {
  NonRootMachine m("vmcall");
  m.expect_exit(ExitReason::VMCALL);
  EXPECT_EQ(m.insn_len(), 3u);
  NonRootMachine user("vmcall");
  user.guest_cpl3();
  user.expect_exit(ExitReason::VMCALL);
  NonRootMachine compat("vmcall", 32);
  compat.guest_compat();
  compat.expect_exit(ExitReason::VMCALL);
}

TEST(NonRootUnconditional, VmxInstructionsWithoutOperandExit) {
  const std::pair<const char*, ExitReason> cases[] = {
      {"vmlaunch", ExitReason::VMLAUNCH}, {"vmresume", ExitReason::VMRESUME}, {"vmxoff", ExitReason::VMXOFF}};
  for (const auto& [text, reason] : cases) {
    NonRootMachine m(text);
    m.expect_exit(reason);
    EXPECT_EQ(m.insn_len(), 3u) << text;
    EXPECT_EQ(m.insn_info(), 0u) << text;
    EXPECT_EQ(m.exit_qualification(), 0u) << text;
  }
}

TEST(NonRootUnconditional, VmxMemoryInstructionsReportDisplacementAndAddressing) {
  // [rax + rbx*8 + 0x1234] in DS with a 64-bit address: scaling 3, address size 2, segment 3,
  // index RBX (3), base RAX (0).
  const uint32_t info = 3 | (2u << 7) | (3u << 15) | (3u << 18) | (0u << 23);
  const std::pair<const char*, ExitReason> cases[] = {
      {"vmclear [rax + rbx*8 + 0x1234]", ExitReason::VMCLEAR},
      {"vmptrld [rax + rbx*8 + 0x1234]", ExitReason::VMPTRLD},
      {"vmptrst [rax + rbx*8 + 0x1234]", ExitReason::VMPTRST},
      {"vmxon [rax + rbx*8 + 0x1234]", ExitReason::VMXON}};
  for (const auto& [text, reason] : cases) {
    NonRootMachine m(text);
    m.expect_exit(reason);
    EXPECT_EQ(m.exit_qualification(), 0x1234u) << text;
    EXPECT_EQ(m.insn_info(), info) << text;
    EXPECT_EQ(m.insn_len(), encoded_length(text)) << text;
  }
  // No base, no index, FS override, negative displacement: both invalid bits, segment 4.
  NonRootMachine fs("vmptrld fs:[-8]");
  fs.expect_exit(ExitReason::VMPTRLD);
  EXPECT_EQ(fs.exit_qualification(), ~0ull - 7);
  EXPECT_EQ(fs.insn_info(), (2u << 7) | (4u << 15) | (1u << 22) | (1u << 27));
  // RIP-relative: the qualification is displacement + the next instruction's RIP.
  NonRootMachine rip("vmptrst [rip + 0x40]");
  rip.expect_exit(ExitReason::VMPTRST);
  EXPECT_EQ(rip.exit_qualification(), vmx_layout::kGuestCode + rip.insn_len() + 0x40);
  EXPECT_EQ(rip.insn_info(), (2u << 7) | (3u << 15) | (1u << 22) | (1u << 27));
}

TEST(NonRootUnconditional, VmxInstructionExitsPrecedeTheCplCheckAndOperandAccess) {
  // At CPL 3 VMPTRLD exits (its CPL check comes after the exit); the operand is never read, so a
  // non-canonical address does not fault either.
  NonRootMachine m("mov rax, 0x8000000000000000\nvmptrld [rax]");
  m.guest_cpl3();
  m.expect_exit(ExitReason::VMPTRLD);
}

TEST(NonRootUnconditional, VmxInstructionsAreUndefinedInCompatibilityMode) {
  for (const char* text : {"vmclear [eax]", "vmptrld [eax]", "vmxon [eax]", "vmlaunch", "vmxoff", "invept eax, [eax]"}) {
    NonRootMachine m(text, 32);
    m.guest_compat();
    m.expect_exception(Vector::kUD);
  }
}

TEST(NonRootUnconditional, InveptAndInvvpidReportTheTypeRegister) {
  NonRootMachine m("invept r10, [rsi + 0x20]");
  m.expect_exit(ExitReason::INVEPT);
  EXPECT_EQ(m.exit_qualification(), 0x20u);
  EXPECT_EQ(m.insn_info(), (2u << 7) | (3u << 15) | (1u << 22) | (6u << 23) | (10u << 28));
  NonRootMachine v("invvpid rcx, [rdi + r9*2]");
  v.expect_exit(ExitReason::INVVPID);
  EXPECT_EQ(v.exit_qualification(), 0u);
  EXPECT_EQ(v.insn_info(), 1 | (2u << 7) | (3u << 15) | (9u << 18) | (7u << 23) | (1u << 28));
}

TEST(NonRootUnconditional, VmxInstructionsAreUndefinedOutsideVmxOperation) {
  // The bare core runs no guest code in VMX root operation: every VMX instruction is #UD.
  for (const char* text : {"vmcall", "vmxoff", "vmclear [rax]", "vmxon [rax]", "invvpid rax, [rax]"}) {
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, text, 64);
    ASSERT_EQ(m.run(), cpu::RunExit::kException) << text;
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kUD)) << text;
  }
}

TEST(NonRootUnconditional, GetsecIsUndefinedWithoutSmx) {
  NonRootMachine m("getsec");
  m.expect_exception(Vector::kUD);
}

}  // namespace
}  // namespace nestvm::test
