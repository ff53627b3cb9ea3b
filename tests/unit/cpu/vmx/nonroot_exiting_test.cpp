// VMX non-root operation: instructions that exit by the primary and secondary processor-based
// controls (SDM Vol. 3 §26.1.3), their changed behaviours (§26.3: TSC offsetting, "enable RDTSCP",
// "enable INVPCID", PAUSE-loop exiting) and the priority of faults over exits (§26.1.1), with the
// exit qualification, instruction length and instruction information of §28.2.
#include <gtest/gtest.h>
#include <x86intrin.h>

#include "arch/vmx_insn_info.h"
#include "unit/cpu/vmx/nonroot_test_helpers.h"

namespace nestvm::test {
namespace {

using arch::ExitReason;
using arch::Vector;
using arch::VmcsField;
using namespace arch::proc;
namespace proc2 = arch::proc2;
namespace cr4 = arch::cr4;

void set_guest_cr4(NonRootMachine& m, uint64_t bits) {
  m.vmwrite(VmcsField::GUEST_CR4, m.vmread(VmcsField::GUEST_CR4) | bits);
}

TEST(NonRootExiting, HltExitsWithTheControlAndHaltsWithout) {
  NonRootMachine m("hlt");
  m.proc(kHltExiting);
  m.expect_exit(ExitReason::HLT);
  EXPECT_EQ(m.insn_len(), 1u);
  EXPECT_EQ(m.rip_offset(), 0u);
  NonRootMachine off("hlt");
  EXPECT_EQ(off.launch_and_run(), cpu::RunExit::kHalted);
  NonRootMachine user("hlt");
  user.proc(kHltExiting);
  user.guest_cpl3();
  user.expect_exception(Vector::kGP);
}

TEST(NonRootExiting, InvlpgReportsTheLinearAddress) {
  NonRootMachine m("mov rax, 0x123000\ninvlpg [rax + 0x10]");
  m.proc(kInvlpgExiting);
  m.expect_exit(ExitReason::INVLPG);
  EXPECT_EQ(m.exit_qualification(), 0x123010u);
  EXPECT_EQ(m.insn_len(), encoded_length("invlpg [rax + 0x10]"));
  // A non-canonical operand, which INVLPG ignores, exits with its address too.
  NonRootMachine nc("mov rax, 0x8000000000001000\ninvlpg [rax]");
  nc.proc(kInvlpgExiting);
  nc.expect_exit(ExitReason::INVLPG);
  EXPECT_EQ(nc.exit_qualification(), 0x8000000000001000u);
  // In compatibility mode the segment base is added and bits 63:32 are clear.
  NonRootMachine compat("mov eax, 0xfffff000\ninvlpg fs:[eax + 0x20]", 32);
  compat.guest_compat();
  compat.vmwrite(VmcsField::GUEST_FS_BASE, 0x2000);
  compat.proc(kInvlpgExiting);
  compat.expect_exit(ExitReason::INVLPG);
  EXPECT_EQ(compat.exit_qualification(), 0x1020u);
  NonRootMachine off("invlpg [rax]\nvmcall");
  off.expect_exit(ExitReason::VMCALL);
}

TEST(NonRootExiting, MwaitReportsWhetherTheMonitorIsArmed) {
  const char* armed = "mov rax, 0x200000\nxor ecx, ecx\nxor edx, edx\nmonitor\nmwait";
  NonRootMachine m(armed, 64, model_with_monitor());
  m.proc(kMwaitExiting);
  m.expect_exit(ExitReason::MWAIT_INSTRUCTION);
  EXPECT_EQ(m.exit_qualification(), 1u);
  EXPECT_EQ(m.insn_len(), 3u);
  NonRootMachine idle("xor ecx, ecx\nmwait", 64, model_with_monitor());
  idle.proc(kMwaitExiting);
  idle.expect_exit(ExitReason::MWAIT_INSTRUCTION);
  EXPECT_EQ(idle.exit_qualification(), 0u);
  NonRootMachine off(armed, 64, model_with_monitor());
  EXPECT_EQ(off.launch_and_run(), cpu::RunExit::kHalted);
}

TEST(NonRootExiting, MonitorExitsBeforeItsOperandChecks) {
  NonRootMachine m("mov rax, 0x8000000000000000\nmov ecx, 1\nmonitor", 64, model_with_monitor());
  m.proc(kMonitorExiting);
  m.expect_exit(ExitReason::MONITOR_INSTRUCTION);
  EXPECT_EQ(m.insn_len(), 3u);
  NonRootMachine off("mov rax, 0x200000\nxor ecx, ecx\nxor edx, edx\nmonitor\nvmcall", 64, model_with_monitor());
  off.expect_exit(ExitReason::VMCALL);
  EXPECT_TRUE(off.cpu.state.monitor_armed);
}

TEST(NonRootExiting, RdpmcExitsAfterThePrivilegeCheck) {
  NonRootMachine m("xor ecx, ecx\nrdpmc");
  m.proc(kRdpmcExiting);
  m.expect_exit(ExitReason::RDPMC);
  EXPECT_EQ(m.insn_len(), 2u);
  NonRootMachine off("xor ecx, ecx\nrdpmc");
  off.expect_exception(Vector::kGP);  // no counter exists
  NonRootMachine user("xor ecx, ecx\nrdpmc");
  user.proc(kRdpmcExiting);
  user.guest_cpl3();
  user.expect_exception(Vector::kGP);  // CR4.PCE = 0 at CPL 3
  NonRootMachine pce("xor ecx, ecx\nrdpmc");
  pce.proc(kRdpmcExiting);
  pce.guest_cpl3();
  set_guest_cr4(pce, cr4::kPCE);
  pce.expect_exit(ExitReason::RDPMC);
}

TEST(NonRootExiting, RdtscExitingAndItsPriorityBelowCr4Tsd) {
  NonRootMachine m("rdtsc");
  m.proc(kRdtscExiting);
  m.guest_cpl3();
  m.expect_exit(ExitReason::RDTSC);
  EXPECT_EQ(m.insn_len(), 2u);
  NonRootMachine tsd("rdtsc");
  tsd.proc(kRdtscExiting);
  tsd.guest_cpl3();
  set_guest_cr4(tsd, cr4::kTSD);
  tsd.expect_exception(Vector::kGP);
}

TEST(NonRootExiting, RdtscpNeedsEnableRdtscpAndExitsWithItsOwnReason) {
  NonRootMachine ud("rdtscp");
  ud.proc(kRdtscExiting);
  ud.expect_exception(Vector::kUD);  // "enable RDTSCP" = 0: #UD before anything else
  NonRootMachine m("rdtscp");
  m.proc(kRdtscExiting);
  m.proc2(proc2::kEnableRdtscp);
  m.expect_exit(ExitReason::RDTSCP);
  EXPECT_EQ(m.insn_len(), 3u);
  NonRootMachine rdpid("rdpid rax");
  rdpid.expect_exception(Vector::kUD);
  NonRootMachine ok("mov ecx, 0xc0000103\nmov eax, 7\nxor edx, edx\nwrmsr\nrdtscp\nmov rbx, rcx\nrdpid rax\nvmcall");
  ok.proc2(proc2::kEnableRdtscp);
  ok.proc(kUseMsrBitmaps);
  ok.vmwrite(VmcsField::MSR_BITMAP, vmx_layout::kMsrBitmap);
  ok.expect_exit(ExitReason::VMCALL);
  EXPECT_EQ(ok.reg(cpu::kRbx), 7u);
  EXPECT_EQ(ok.reg(cpu::kRax), 7u);
}

TEST(NonRootExiting, TscOffsettingAppliesToRdtscRdtscpAndRdmsr) {
  constexpr uint64_t kOffset = 1ull << 62;
  const char* code =
      "rdtsc\nshl rdx, 32\nor rax, rdx\nmov r8, rax\n"
      "rdtscp\nshl rdx, 32\nor rax, rdx\nmov r9, rax\n"
      "mov ecx, 0x10\nrdmsr\nshl rdx, 32\nor rax, rdx\nmov r10, rax\nvmcall";
  NonRootMachine m(code);
  m.proc(kUseTscOffsetting | kUseMsrBitmaps);
  m.proc2(proc2::kEnableRdtscp);
  m.vmwrite(VmcsField::MSR_BITMAP, vmx_layout::kMsrBitmap);
  m.vmwrite(VmcsField::TSC_OFFSET, kOffset);
  const uint64_t before = __rdtsc();
  m.expect_exit(ExitReason::VMCALL);
  const uint64_t after = __rdtsc();
  for (cpu::Gpr r : {cpu::kR8, cpu::kR9, cpu::kR10}) {
    EXPECT_GE(m.reg(r), before + kOffset);
    EXPECT_LE(m.reg(r), after + kOffset);
  }
  EXPECT_LE(m.reg(cpu::kR8), m.reg(cpu::kR9));
  EXPECT_LE(m.reg(cpu::kR9), m.reg(cpu::kR10));
  // The offset field is ignored without the control.
  NonRootMachine off("rdtsc\nshl rdx, 32\nor rax, rdx\nvmcall");
  off.vmwrite(VmcsField::TSC_OFFSET, kOffset);
  off.expect_exit(ExitReason::VMCALL);
  EXPECT_LT(off.reg(cpu::kRax), kOffset);
}

TEST(NonRootExiting, MovDrExitingTakesPriorityOverCplAndDeFaults) {
  NonRootMachine m("mov rax, dr7");
  m.proc(kMovDrExiting);
  m.expect_exit(ExitReason::DR_ACCESS);
  EXPECT_EQ(m.exit_qualification(), arch::exit_qual::dr::make(7, true, 0));
  EXPECT_EQ(m.insn_len(), 3u);
  NonRootMachine to("mov dr3, r11");
  to.proc(kMovDrExiting);
  to.guest_cpl3();  // #GP in root operation; the exit comes first
  to.expect_exit(ExitReason::DR_ACCESS);
  EXPECT_EQ(to.exit_qualification(), arch::exit_qual::dr::make(3, false, 11));
  NonRootMachine de("mov rax, dr4");
  de.proc(kMovDrExiting);
  set_guest_cr4(de, cr4::kDE);  // #UD in root operation
  de.expect_exit(ExitReason::DR_ACCESS);
  EXPECT_EQ(de.exit_qualification(), arch::exit_qual::dr::make(4, true, 0));
  NonRootMachine off("mov rax, 0x1\nmov dr0, rax\nmov rbx, dr0\nvmcall");
  off.expect_exit(ExitReason::VMCALL);
  EXPECT_EQ(off.reg(cpu::kRbx), 1u);
  NonRootMachine user("mov rax, dr7");
  user.guest_cpl3();
  user.expect_exception(Vector::kGP);
}

TEST(NonRootExiting, PauseExitingAtAnyCpl) {
  NonRootMachine m("pause");
  m.proc(kPauseExiting);
  m.guest_cpl3();
  m.expect_exit(ExitReason::PAUSE_INSTRUCTION);
  EXPECT_EQ(m.insn_len(), 2u);
  NonRootMachine off("pause\nvmcall");
  off.expect_exit(ExitReason::VMCALL);
}

TEST(NonRootExiting, PauseLoopExitingMeasuresGapAndWindowInTscTicks) {
  // Gap huge, window 0: the first PAUSE after entry starts the loop, the second is past the window.
  NonRootMachine m("pause\nmov eax, 1\npause\nmov eax, 2\nvmcall");
  m.proc2(proc2::kPauseLoopExiting);
  m.vmwrite(VmcsField::PLE_GAP, 0xffffffff);
  m.vmwrite(VmcsField::PLE_WINDOW, 0);
  m.expect_exit(ExitReason::PAUSE_INSTRUCTION);
  EXPECT_EQ(m.reg(cpu::kRax), 1u);
  // Entry restarts the measurement: the first PAUSE after VM entry does not exit.
  m.skip_instruction();
  ASSERT_EQ(m.resume_and_run(), cpu::RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), uint32_t(ExitReason::VMCALL));
  // Gap 0: every PAUSE starts a new loop, so none is past the window.
  NonRootMachine gap("mov ecx, 50\n1: pause\ndec ecx\njnz 1b\nvmcall");
  gap.proc2(proc2::kPauseLoopExiting);
  gap.vmwrite(VmcsField::PLE_GAP, 0);
  gap.vmwrite(VmcsField::PLE_WINDOW, 0);
  gap.expect_exit(ExitReason::VMCALL);
  // At CPL 3 PAUSE-loop exiting is ignored.
  NonRootMachine user("pause\npause\npause\nvmcall");
  user.proc2(proc2::kPauseLoopExiting);
  user.vmwrite(VmcsField::PLE_GAP, 0xffffffff);
  user.guest_cpl3();
  user.expect_exit(ExitReason::VMCALL);
  // A window no loop reaches: no exit.
  NonRootMachine wide("mov ecx, 50\n1: pause\ndec ecx\njnz 1b\nvmcall");
  wide.proc2(proc2::kPauseLoopExiting);
  wide.vmwrite(VmcsField::PLE_GAP, 0xffffffff);
  wide.vmwrite(VmcsField::PLE_WINDOW, 0xffffffff);
  wide.expect_exit(ExitReason::VMCALL);
}

TEST(NonRootExiting, DescriptorTableExitingForGdtrAndIdtr) {
  namespace ii = arch::insn_info;
  // [rax + rbx*4 + 0x10]: scaling 2, 64-bit addresses, DS, index RBX, base RAX.
  const uint32_t mem = 2 | (2u << 7) | (3u << 15) | (3u << 18) | (0u << 23);
  const std::pair<const char*, ii::DescriptorTableInsn> cases[] = {
      {"lgdt [rax + rbx*4 + 0x10]", ii::DescriptorTableInsn::kLgdt},
      {"lidt [rax + rbx*4 + 0x10]", ii::DescriptorTableInsn::kLidt},
      {"sgdt [rax + rbx*4 + 0x10]", ii::DescriptorTableInsn::kSgdt},
      {"sidt [rax + rbx*4 + 0x10]", ii::DescriptorTableInsn::kSidt}};
  for (const auto& [text, id] : cases) {
    NonRootMachine m(text);
    m.proc2(proc2::kDescriptorTableExiting);
    m.expect_exit(ExitReason::GDTR_IDTR);
    EXPECT_EQ(m.exit_qualification(), 0x10u) << text;
    EXPECT_EQ(m.insn_info() & ~ii::kOperandSize32, mem | ii::identity(id)) << text;  // bit 11 undefined in 64-bit mode
    EXPECT_EQ(m.insn_len(), encoded_length(text)) << text;
  }
  // Compatibility mode: the operand size is reported (bit 11).
  NonRootMachine o32("lgdt [eax]", 32);
  o32.guest_compat();
  o32.proc2(proc2::kDescriptorTableExiting);
  o32.expect_exit(ExitReason::GDTR_IDTR);
  EXPECT_EQ(o32.insn_info(), (1u << 7) | (3u << 15) | (1u << 22) | (0u << 23) | ii::kOperandSize32 |
                                 ii::identity(ii::DescriptorTableInsn::kLgdt));
  NonRootMachine o16(".byte 0x66\nsidt [eax]", 32);
  o16.guest_compat();
  o16.proc2(proc2::kDescriptorTableExiting);
  o16.expect_exit(ExitReason::GDTR_IDTR);
  EXPECT_EQ(o16.insn_info() & ii::kOperandSize32, 0u);
  // Without the control SGDT stores.
  NonRootMachine off("sgdt [0x200000]\nvmcall");
  off.expect_exit(ExitReason::VMCALL);
  EXPECT_EQ(off.peek<uint16_t>(0x200000), uint16_t(off.vmread(VmcsField::GUEST_GDTR_LIMIT)));
}

TEST(NonRootExiting, DescriptorTableExitingForLdtrAndTr) {
  namespace ii = arch::insn_info;
  NonRootMachine sldt("sldt eax");
  sldt.proc2(proc2::kDescriptorTableExiting);
  sldt.expect_exit(ExitReason::LDTR_TR);
  EXPECT_EQ(sldt.exit_qualification(), 0u);
  EXPECT_EQ(sldt.insn_info(), ii::kRegisterOperand | ii::reg1(0) | ii::identity(ii::SystemSelectorInsn::kSldt));
  NonRootMachine str("str r11");
  str.proc2(proc2::kDescriptorTableExiting);
  str.expect_exit(ExitReason::LDTR_TR);
  EXPECT_EQ(str.insn_info(), ii::kRegisterOperand | ii::reg1(11) | ii::identity(ii::SystemSelectorInsn::kStr));
  NonRootMachine ltr("ltr word ptr [rcx - 4]");
  ltr.proc2(proc2::kDescriptorTableExiting);
  ltr.expect_exit(ExitReason::LDTR_TR);
  EXPECT_EQ(ltr.exit_qualification(), ~0ull - 3);
  EXPECT_EQ(ltr.insn_info(), (2u << 7) | (3u << 15) | (1u << 22) | (1u << 23) |
                                 ii::identity(ii::SystemSelectorInsn::kLtr));
  NonRootMachine lldt("lldt dx");
  lldt.proc2(proc2::kDescriptorTableExiting);
  lldt.expect_exit(ExitReason::LDTR_TR);
  EXPECT_EQ(lldt.insn_info(), ii::kRegisterOperand | ii::reg1(2) | ii::identity(ii::SystemSelectorInsn::kLldt));
  // Faults based on privilege come first: LLDT at CPL 3, SLDT with CR4.UMIP at CPL 3.
  NonRootMachine user("lldt dx");
  user.proc2(proc2::kDescriptorTableExiting);
  user.guest_cpl3();
  user.expect_exception(Vector::kGP);
  NonRootMachine umip("sldt eax");
  umip.proc2(proc2::kDescriptorTableExiting);
  umip.guest_cpl3();
  set_guest_cr4(umip, cr4::kUMIP);
  umip.expect_exception(Vector::kGP);
  NonRootMachine open("sldt eax");
  open.proc2(proc2::kDescriptorTableExiting);
  open.guest_cpl3();
  open.expect_exit(ExitReason::LDTR_TR);
}

TEST(NonRootExiting, WbinvdExiting) {
  NonRootMachine m("wbinvd");
  m.proc2(proc2::kWbinvdExiting);
  m.expect_exit(ExitReason::WBINVD);
  EXPECT_EQ(m.insn_len(), 2u);
  NonRootMachine off("wbinvd\nvmcall");
  off.expect_exit(ExitReason::VMCALL);
}

TEST(NonRootExiting, RdrandAndRdseedExitingReportDestinationAndSize) {
  namespace ii = arch::insn_info;
  NonRootMachine r("rdrand r10d");
  r.proc2(proc2::kRdrandExiting);
  r.expect_exit(ExitReason::RDRAND);
  EXPECT_EQ(r.insn_info(), ii::rdrand(10, 4));
  EXPECT_EQ(r.insn_len(), encoded_length("rdrand r10d"));
  NonRootMachine s("rdseed ax\nrdseed rbx");
  s.proc2(proc2::kRdseedExiting);
  s.expect_exit(ExitReason::RDSEED);
  EXPECT_EQ(s.insn_info(), ii::rdrand(0, 2));
  NonRootMachine off("rdrand rax\nsetc bl\nvmcall");
  off.proc2(proc2::kRdseedExiting);  // RDSEED exiting does not affect RDRAND
  off.expect_exit(ExitReason::VMCALL);
  EXPECT_EQ(off.reg(cpu::kRbx) & 0xff, 1u);
}

TEST(NonRootExiting, InvpcidNeedsEnableInvpcidAndExitsWithInvlpgExiting) {
  const char* code = "mov eax, 2\ninvpcid rax, [rsp + 0x40]\nvmcall";
  NonRootMachine ud(code);
  ud.proc(kInvlpgExiting);
  ud.guest_cpl3();  // the #UD comes even before the CPL check
  ud.expect_exception(Vector::kUD);
  NonRootMachine m(code);
  m.proc(kInvlpgExiting);
  m.proc2(proc2::kEnableInvpcid);
  m.expect_exit(ExitReason::INVPCID);
  EXPECT_EQ(m.exit_qualification(), 0x40u);
  // [rsp + 0x40] in SS: base RSP, no index; Reg2 = RAX.
  EXPECT_EQ(m.insn_info(), (2u << 7) | (2u << 15) | (1u << 22) | (4u << 23) | arch::insn_info::reg2(0));
  EXPECT_EQ(m.insn_len(), encoded_length("invpcid rax, [rsp + 0x40]"));
  NonRootMachine run(code);
  run.proc2(proc2::kEnableInvpcid);
  run.expect_exit(ExitReason::VMCALL);
  NonRootMachine user(code);
  user.proc(kInvlpgExiting);
  user.proc2(proc2::kEnableInvpcid);
  user.guest_cpl3();
  user.expect_exception(Vector::kGP);
}

}  // namespace
}  // namespace nestvm::test
